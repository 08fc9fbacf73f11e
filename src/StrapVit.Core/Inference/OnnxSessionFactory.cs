using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace StrapVit.Core.Inference;

/// <summary>A created session and the execution provider it really runs on.</summary>
public sealed record OrtSession(InferenceSession Session, string ExecutionProvider) : IDisposable
{
    public void Dispose() => Session.Dispose();
}

/// <summary>
/// Creates ONNX Runtime sessions on the configured device. <see cref="InferenceDevice.Auto"/> tries CUDA and falls back
/// to CPU: appending the CUDA provider throws when its libraries cannot load, and that is the only reliable probe
/// (<c>GetAvailableProviders()</c> lists CUDA even when it cannot load).
/// </summary>
public sealed partial class OnnxSessionFactory(InferenceOptions options, ILogger<OnnxSessionFactory> logger)
{
    public const string Cuda = "CUDAExecutionProvider";
    public const string Cpu = "CPUExecutionProvider";

    public OrtSession Create(byte[] model, string purpose)
    {
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (options.IntraOpThreads > 0)
        {
            so.IntraOpNumThreads = options.IntraOpThreads;
        }

        var provider = Cpu;
        if (options.Device is InferenceDevice.Auto or InferenceDevice.Cuda)
        {
            try
            {
                so.AppendExecutionProvider_CUDA(options.DeviceId);
                provider = Cuda;
            }
            catch (OnnxRuntimeException ex) when (options.Device == InferenceDevice.Auto)
            {
                LogCudaFallback(logger, purpose, ex.Message.Split('\n')[0]);
            }
        }

        var session = new InferenceSession(model, so);
        LogSessionCreated(logger, purpose, provider);
        return new OrtSession(session, provider);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "CUDA execution provider unavailable for {Purpose}; falling back to CPU: {Reason}")]
    private static partial void LogCudaFallback(ILogger logger, string purpose, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "ONNX Runtime session for {Purpose} created on {ExecutionProvider}")]
    private static partial void LogSessionCreated(ILogger logger, string purpose, string executionProvider);
}
