using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace StrapVit.Core.Inference;

/// <summary>
/// Creates ONNX Runtime sessions on the configured device. <see cref="InferenceDevice.Auto"/> tries CUDA and falls back
/// to CPU: appending the CUDA provider throws when its libraries cannot load, and that is the only reliable probe
/// (<c>GetAvailableProviders()</c> lists CUDA even when it cannot load). With <see cref="Weights"/>, sessions created
/// from a <see cref="ModelProto"/> take the model's weights from that one shared copy instead of embedding their own
/// (<see cref="Runtime.ModelRuntimeFactory"/> makes one only for the CPU: a CUDA session would copy host weights to the device
/// regardless, with one ONNX Runtime warning per weight).
/// </summary>
public sealed partial class OnnxSessionFactory(InferenceOptions options, ILogger<OnnxSessionFactory> logger, SharedWeights? weights = null)
{
    public const string Cuda = "CUDAExecutionProvider";
    public const string Cpu = "CPUExecutionProvider";

    /// <summary>The weights every session of this factory shares, or null when each session embeds its own.</summary>
    public SharedWeights? Weights => weights;

    /// <summary>A session on a serialized, self-contained model.</summary>
    /// <param name="model">The model.</param>
    /// <param name="purpose">For logs.</param>
    /// <param name="exactFloat32">
    /// On CUDA, keep matrix products in full float32 (<c>use_tf32</c> off): for a small graph whose results must match
    /// the CPU's, e.g. distances computed as |x|² − 2x·b + |b|², which TF32's 10-bit mantissa would cancel away.
    /// </param>
    public OnnxRunner Create(byte[] model, string purpose, bool exactFloat32 = false) =>
        Create(so => (new InferenceSession(model, so), false), purpose, intraOpThreads: null, exactFloat32);

    /// <summary>
    /// The execution provider sessions of <paramref name="options"/> will run on: CUDA when the device allows it and its
    /// provider loads here, else the CPU (for <see cref="InferenceDevice.Cuda"/> a session then fails to open).
    /// </summary>
    public static string Probe(InferenceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Device == InferenceDevice.Cpu) return Cpu;
        try
        {
            using var so = new SessionOptions();
            AppendCuda(so, options.DeviceId, exactFloat32: false);
            return Cuda;
        }
        catch (OnnxRuntimeException)
        {
            return Cpu;
        }
    }

    /// <summary>The configured inference options.</summary>
    public InferenceOptions Options => options;

    /// <summary>
    /// A session on <paramref name="model"/>, over the shared weights when the factory has them: the model's copies
    /// of those weights are replaced by references in place, so pass a graph you no longer need whole.
    /// </summary>
    /// <param name="model">The graph.</param>
    /// <param name="purpose">For logs.</param>
    /// <param name="gradient">
    /// A gradient graph: over shared weights its constant folding is off, because folding the backward pass's
    /// <c>Transpose(W)</c> would give every gradient session a private transposed copy of the weights; unfolded,
    /// ONNX Runtime fuses each into a MatMul that reads W transposed.
    /// </param>
    /// <param name="intraOpThreads">Overrides <see cref="InferenceOptions.IntraOpThreads"/> for this session.</param>
    public OnnxRunner Create(ModelProto model, string purpose, bool gradient = false, int? intraOpThreads = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Create(so =>
        {
            var names = weights?.Detach(model) ?? [];
            var bytes = model.ToByteArray();
            if (names.Count == 0) return (new InferenceSession(bytes, so), false);
            so.AddSessionConfigEntry("session.disable_prepacking", "1");
            if (gradient) so.AddSessionConfigEntry("optimization.disable_specified_optimizers", "ConstantFolding");
            weights!.AddTo(so, names);
            return (new InferenceSession(bytes, so), true);
        }, purpose, intraOpThreads);
    }

    private OnnxRunner Create(Func<SessionOptions, (InferenceSession Session, bool Shared)> open, string purpose, int? intraOpThreads, bool exactFloat32 = false)
    {
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        var threads = intraOpThreads ?? options.IntraOpThreads;
        if (threads > 0)
        {
            so.IntraOpNumThreads = threads;
        }

        so.AddSessionConfigEntry("session.intra_op.allow_spinning", options.AllowSpinning ? "1" : "0");

        var provider = Cpu;
        if (options.Device is InferenceDevice.Auto or InferenceDevice.Cuda)
        {
            try
            {
                AppendCuda(so, options.DeviceId, exactFloat32);
                provider = Cuda;
            }
            catch (OnnxRuntimeException ex) when (options.Device == InferenceDevice.Auto)
            {
                LogCudaFallback(logger, purpose, ex.Message.Split('\n')[0]);
            }
        }

        var (session, shared) = open(so);
        LogSessionCreated(logger, purpose, provider, shared);
        return new OnnxRunner(session, provider);
    }

    /// <summary>Appends the CUDA provider; throws <see cref="OnnxRuntimeException"/> when its libraries cannot load.</summary>
    private static void AppendCuda(SessionOptions so, int deviceId, bool exactFloat32)
    {
        if (!exactFloat32)
        {
            so.AppendExecutionProvider_CUDA(deviceId);
            return;
        }

        using var cuda = new OrtCUDAProviderOptions();
        cuda.UpdateOptions(new Dictionary<string, string>
        {
            ["device_id"] = deviceId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["use_tf32"] = "0",
        });
        so.AppendExecutionProvider_CUDA(cuda);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "CUDA execution provider unavailable for {Purpose}; falling back to CPU: {Reason}")]
    private static partial void LogCudaFallback(ILogger logger, string purpose, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "ONNX Runtime session for {Purpose} created on {ExecutionProvider} (shared weights: {Shared})")]
    private static partial void LogSessionCreated(ILogger logger, string purpose, string executionProvider, bool shared);
}
