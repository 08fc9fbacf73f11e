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

/// <summary>How masked views (certified mode, the defense's masking check) leave their hidden tokens out of the encoder.</summary>
public enum ViewMasking
{
    /// <summary>Hidden tokens are cut from the sequence; views of each length run as their own batch.</summary>
    Drop,

    /// <summary>
    /// The sequence stays whole and a key mask keeps hidden tokens out of every attention (<see cref="Onnx.KeyMask"/>):
    /// the same logits up to float rounding (about 1e-5, and which views share a batch can move them that much), all
    /// views in one batch, and the defended view shares it with the masking check's first round. Needs fused attention
    /// and a class-token readout, else views drop their tokens.
    /// </summary>
    KeyMask,
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
    /// session embeds and prepacks its own copy (fastest, several times the memory). CPU sessions only: the shared copy
    /// is host memory, so CUDA sessions always hold their own weights on the device.
    /// </summary>
    public bool ShareWeights { get; set; } = true;

    /// <summary>
    /// Whether the inference graphs run each recognised self-attention block as ONNX Runtime's fused
    /// <c>com.microsoft.Attention</c> operator (<see cref="Onnx.AttentionFusion"/>) and compute the last block for the
    /// class token only (<see cref="Onnx.ClassTokenReadout"/>): the same function, less work. The gradient graphs always
    /// use the standard ops.
    /// </summary>
    public bool FuseAttention { get; set; } = true;

    /// <summary>
    /// Whether idle intra-op threads spin waiting for work (ONNX Runtime's default) instead of sleeping. Spinning saves
    /// a wake-up per parallel op but keeps a core busy after every run, which on a small machine takes that core from
    /// the concurrent runs of other requests and of masked views: off by default.
    /// </summary>
    public bool AllowSpinning { get; set; }

    /// <summary>
    /// On CPU, masked views (certified mode, the defense's masking check) run as this many concurrent single-threaded
    /// ONNX Runtime runs instead of one run on the intra-op pool: small ops parallelise poorly across threads, whole
    /// runs well. 0 = automatic: one per processor for an encoder narrower than 256 channels, else 1 (a wide encoder's
    /// ops fill the pool); 1 = one run on the pool. Ignored on CUDA.
    /// </summary>
    public int ViewParallelism { get; set; }

    /// <summary>
    /// How masked views hide tokens. <see cref="ViewMasking.Drop"/> by default: on CPU the shorter sequences are less
    /// work. <see cref="ViewMasking.KeyMask"/> is meant for CUDA, where a run's cost follows the number of runs more than
    /// their size; it becomes CUDA's default once a GPU sitting has measured it (docs/BENCHMARKS.md, session 22).
    /// </summary>
    public ViewMasking ViewMasking { get; set; } = ViewMasking.Drop;
}
