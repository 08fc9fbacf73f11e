namespace StrapVit.Core.Inference;

/// <summary>Which execution provider the ONNX Runtime sessions use.</summary>
public enum InferenceDevice
{
    /// <summary>Try CUDA, fall back to CPU with a warning.</summary>
    Auto,

    /// <summary>CUDA only: start-up fails if it cannot load.</summary>
    Cuda,

    /// <summary>CPU only.</summary>
    Cpu,
}

/// <summary>Configuration section <c>Inference</c>.</summary>
public sealed class InferenceOptions
{
    public const string SectionName = "Inference";

    public InferenceDevice Device { get; set; } = InferenceDevice.Auto;

    /// <summary>CUDA device ordinal.</summary>
    public int DeviceId { get; set; }

    /// <summary>Intra-op threads for the CPU provider; 0 lets ONNX Runtime choose.</summary>
    public int IntraOpThreads { get; set; }

    /// <summary>Largest batch a single ONNX Runtime run may take.</summary>
    public int MaxBatchSize { get; set; } = 64;

    /// <summary>
    /// Whether the model's sessions (forward, token split, gradients) share one copy of the weights. On: memory close
    /// to one plain ONNX Runtime session; weights are not prepacked, which costs large models some speed. Off: every
    /// session embeds and prepacks its own copy (fastest, several times the memory).
    /// </summary>
    public bool ShareWeights { get; set; } = true;
}
