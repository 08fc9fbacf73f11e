using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace StrapVit.Core.Inference;

/// <summary>
/// One ONNX Runtime session and the one place that runs it. Inputs are <see cref="OrtValue"/>s over the caller's
/// pinned memory and outputs over caller-owned buffers that ONNX Runtime writes into, so a run copies no tensor on the
/// managed side. Cancellation enters as a <see cref="CancellationToken"/> and becomes <see cref="RunOptions.Terminate"/>
/// here only; a run stopped that way surfaces as <see cref="OperationCanceledException"/>. Thread-safe like
/// <see cref="InferenceSession"/>, and safe to dispose while runs are in flight: disposing terminates them, waits for
/// them to leave the native session and only then frees it (a session freed under a running call crashes the process),
/// and a run that starts afterwards gets <see cref="ObjectDisposedException"/>.
/// </summary>
public sealed class OnnxRunner : IDisposable
{
    private readonly object gate = new();
    private readonly CancellationTokenSource closing = new();
    private int running;
    private bool closed;

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
    /// <exception cref="ObjectDisposedException">The runner was disposed before or during the run.</exception>
    public void Run(string[] inputNames, OrtValue[] inputs, string[] outputNames, OrtValue[] outputs, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Enter();
        try
        {
            using var options = new RunOptions();
            using var cancelled = cancellationToken.Register(static o => ((RunOptions)o!).Terminate = true, options);
            using var disposing = closing.Token.Register(static o => ((RunOptions)o!).Terminate = true, options);
            try
            {
                Session.Run(options, inputNames, inputs, outputNames, outputs);
            }
            catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancellationToken);
            }
            catch (OnnxRuntimeException) when (closing.IsCancellationRequested)
            {
                throw new ObjectDisposedException(nameof(OnnxRunner), "The model is being unloaded.");
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>
    /// Runs the session and lets ONNX Runtime allocate the outputs, for the rare run whose output shapes are not known
    /// beforehand (warm-up and probes). The caller disposes the result.
    /// </summary>
    public IDisposableReadOnlyCollection<OrtValue> RunAllocated(string[] inputNames, OrtValue[] inputs, string[] outputNames, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Enter();
        try
        {
            using var options = new RunOptions();
            return Session.Run(options, inputNames, inputs, outputNames);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>A float tensor over pinned memory the caller keeps pinned (a <c>fixed</c> block) while the value lives.</summary>
    public static unsafe OrtValue Pinned(float* data, int length, long[] shape) =>
        OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, shape, (IntPtr)data, (long)length * sizeof(float));

    /// <summary>An int64 tensor over pinned memory the caller keeps pinned while the value lives.</summary>
    public static unsafe OrtValue Pinned(long* data, int length, long[] shape) =>
        OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64, shape, (IntPtr)data, (long)length * sizeof(long));

    /// <summary>An int32 tensor over pinned memory the caller keeps pinned while the value lives.</summary>
    public static unsafe OrtValue Pinned(int* data, int length, long[] shape) =>
        OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int32, shape, (IntPtr)data, (long)length * sizeof(int));

    /// <summary>An output tensor over <paramref name="buffer"/>, which it pins until disposed.</summary>
    public static OrtValue Output(Memory<float> buffer, long[] shape) =>
        OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, buffer, shape);

    /// <summary>Terminates the runs in flight, waits until none is inside the session, then frees it.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (closed) return;
            closed = true;
        }

        closing.Cancel();
        lock (gate)
        {
            while (running > 0) Monitor.Wait(gate);
        }

        Session.Dispose();
        closing.Dispose();
    }

    private void Enter()
    {
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(closed, this);
            running++;
        }
    }

    private void Exit()
    {
        lock (gate)
        {
            if (--running == 0 && closed) Monitor.PulseAll(gate);
        }
    }
}
