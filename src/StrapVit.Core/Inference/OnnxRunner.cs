using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace StrapVit.Core.Inference;

/// <summary>
/// One ONNX Runtime session and the one place that runs it. Inputs are <see cref="OrtValue"/>s over the caller's
/// pinned memory and outputs over caller-owned buffers that ONNX Runtime writes into, so a run copies no tensor on the
/// managed side. Cancellation enters as a <see cref="CancellationToken"/> and becomes <see cref="RunOptions.Terminate"/>
/// here only; a run stopped that way surfaces as <see cref="OperationCanceledException"/>. Thread-safe like
/// <see cref="InferenceSession"/>.
/// </summary>
public sealed class OnnxRunner : IDisposable
{
    // Never terminated, so concurrent runs may share it: ONNX Runtime only reads run options.
    private static readonly RunOptions Uncancellable = new();

    public OnnxRunner(InferenceSession session, string executionProvider)
    {
        Session = session ?? throw new ArgumentNullException(nameof(session));
        ExecutionProvider = executionProvider;
    }

    public InferenceSession Session { get; }

    /// <summary>The execution provider the session really runs on.</summary>
    public string ExecutionProvider { get; }

    /// <summary>Runs the session; ONNX Runtime writes the outputs into <paramref name="outputs"/>' memory.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled, before or during the run.</exception>
    public void Run(string[] inputNames, OrtValue[] inputs, string[] outputNames, OrtValue[] outputs, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (!cancellationToken.CanBeCanceled)
        {
            Session.Run(Uncancellable, inputNames, inputs, outputNames, outputs);
            return;
        }

        using var options = new RunOptions();
        using var registration = cancellationToken.Register(static o => ((RunOptions)o!).Terminate = true, options);
        try
        {
            Session.Run(options, inputNames, inputs, outputNames, outputs);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(cancellationToken);
        }
    }

    /// <summary>
    /// Runs the session and lets ONNX Runtime allocate the outputs, for the rare run whose output shapes are not known
    /// beforehand (warm-up and probes). The caller disposes the result.
    /// </summary>
    public IDisposableReadOnlyCollection<OrtValue> RunAllocated(string[] inputNames, OrtValue[] inputs, string[] outputNames, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Session.Run(Uncancellable, inputNames, inputs, outputNames);
    }

    /// <summary>A float tensor over pinned memory the caller keeps pinned (a <c>fixed</c> block) while the value lives.</summary>
    public static unsafe OrtValue Pinned(float* data, int length, long[] shape) =>
        OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, shape, (IntPtr)data, (long)length * sizeof(float));

    /// <summary>An int64 tensor over pinned memory the caller keeps pinned while the value lives.</summary>
    public static unsafe OrtValue Pinned(long* data, int length, long[] shape) =>
        OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64, shape, (IntPtr)data, (long)length * sizeof(long));

    /// <summary>An output tensor over <paramref name="buffer"/>, which it pins until disposed.</summary>
    public static OrtValue Output(Memory<float> buffer, long[] shape) =>
        OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, buffer, shape);

    public void Dispose() => Session.Dispose();
}
