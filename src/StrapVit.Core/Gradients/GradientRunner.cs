using System.Buffers;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Core.Gradients;

/// <summary>
/// Runs the gradient graphs of one model: one ONNX Runtime session per objective, created eagerly. Every call is
/// one fused forward + backward run. Thread-safe (like <see cref="InferenceSession.Run(RunOptions, IReadOnlyCollection{string}, IReadOnlyCollection{OrtValue}, IReadOnlyCollection{string})"/>);
/// dispose it once, when no run is in flight. All pixels are in [0, 1] space, row-major [N, C, H, W].
/// </summary>
public sealed class GradientRunner : IDisposable
{
    private static readonly string[] CrossEntropyInputs = [GradientGraphNames.PixelValues, GradientGraphNames.Labels];
    private static readonly string[] CrossEntropyOutputs = [GradientGraphNames.Logits, GradientGraphNames.Loss, GradientGraphNames.PixelGrad];
    private static readonly string[] VjpInputs = [GradientGraphNames.PixelValues, GradientGraphNames.LogitsGrad];
    private static readonly string[] VjpOutputs = [GradientGraphNames.Logits, GradientGraphNames.PixelGrad];

    private readonly OrtSession crossEntropy;
    private readonly OrtSession vjp;

    private GradientRunner(OrtSession crossEntropy, OrtSession vjp)
    {
        this.crossEntropy = crossEntropy;
        this.vjp = vjp;
        var dims = crossEntropy.Session.InputMetadata[GradientGraphNames.PixelValues].Dimensions;
        if (dims.Length != 4 || dims.Skip(1).Any(d => d <= 0))
        {
            throw new GradientGraphException($"'{GradientGraphNames.PixelValues}' must be [N, C, H, W] with static C, H, W.");
        }

        (Channels, Height, Width) = (dims[1], dims[2], dims[3]);
        Classes = crossEntropy.Session.OutputMetadata[GradientGraphNames.Logits].Dimensions[1];
        ExecutionProvider = crossEntropy.ExecutionProvider;
    }

    public int Channels { get; }

    public int Height { get; }

    public int Width { get; }

    /// <summary>Number of classes K.</summary>
    public int Classes { get; }

    /// <summary>Values in one image: C·H·W.</summary>
    public int SampleSize => Channels * Height * Width;

    /// <summary>The execution provider the sessions really run on.</summary>
    public string ExecutionProvider { get; }

    /// <summary>Builds (or loads from <paramref name="graphs"/>' cache) both gradient graphs of a package and opens their sessions.</summary>
    /// <exception cref="GradientGraphException">The package's graph cannot be differentiated.</exception>
    public static GradientRunner Create(ModelPackage package, GradientGraphs graphs, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(graphs);
        return Create(graphs.Get(package, GradientObjective.CrossEntropy), graphs.Get(package, GradientObjective.Vjp), sessions);
    }

    /// <summary>Opens sessions on already serialized gradient models (cross-entropy and vjp objectives).</summary>
    public static GradientRunner Create(byte[] crossEntropyModel, byte[] vjpModel, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        var ce = sessions.Create(crossEntropyModel, "gradient (cross-entropy)");
        try
        {
            return new GradientRunner(ce, sessions.Create(vjpModel, "gradient (vjp)"));
        }
        catch
        {
            ce.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A runner of a VJP graph alone, for a sub-graph without classes (e.g. the defense's embedding): one session,
    /// and <see cref="CrossEntropy"/> is not available.
    /// </summary>
    public static GradientRunner CreateVjpOnly(byte[] vjpModel, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        var session = sessions.Create(vjpModel, "gradient (vjp)");
        try
        {
            return new GradientRunner(session, session);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Logits, per-sample cross-entropy against <paramref name="labels"/> and d(Σ loss)/d pixels.</summary>
    /// <param name="pixels">[N, C, H, W] in [0, 1], N = <paramref name="batch"/>.</param>
    /// <param name="labels">[N] class indices in [0, K).</param>
    /// <param name="batch">N, at least 1.</param>
    /// <param name="runOptions">Per-call options, e.g. wired to a request's cancellation; null for defaults.</param>
    public GradientResult CrossEntropy(ReadOnlySpan<float> pixels, ReadOnlySpan<long> labels, int batch, RunOptions? runOptions = null)
    {
        if (ReferenceEquals(crossEntropy, vjp)) throw new InvalidOperationException("This runner has only a VJP graph.");
        CheckPixels(pixels, batch);
        if (labels.Length != batch) throw new ArgumentException($"Expected {batch} labels, got {labels.Length}.", nameof(labels));
        foreach (var label in labels)
        {
            if (label < 0 || label >= Classes) throw new ArgumentOutOfRangeException(nameof(labels), label, $"Labels must be in [0, {Classes}).");
        }

        var outputs = Run(crossEntropy, CrossEntropyInputs, CrossEntropyOutputs, pixels, batch, labels, default, runOptions);
        return new GradientResult(batch, Classes, outputs[0], outputs[1], outputs[2]);
    }

    /// <summary>Logits and the vector-Jacobian product Jᵀ·<paramref name="logitsGrad"/> with respect to the pixels.</summary>
    /// <param name="pixels">[N, C, H, W] in [0, 1], N = <paramref name="batch"/>.</param>
    /// <param name="logitsGrad">[N, K] cotangent of the logits (e.g. a one-hot row picks one class's gradient).</param>
    /// <param name="batch">N, at least 1.</param>
    /// <param name="runOptions">Per-call options; null for defaults.</param>
    public GradientResult Vjp(ReadOnlySpan<float> pixels, ReadOnlySpan<float> logitsGrad, int batch, RunOptions? runOptions = null)
    {
        CheckPixels(pixels, batch);
        if (logitsGrad.Length != batch * Classes)
        {
            throw new ArgumentException($"Expected {batch}x{Classes} logit cotangents, got {logitsGrad.Length}.", nameof(logitsGrad));
        }

        var outputs = Run(vjp, VjpInputs, VjpOutputs, pixels, batch, default, logitsGrad, runOptions);
        return new GradientResult(batch, Classes, outputs[0], null, outputs[1]);
    }

    public void Dispose()
    {
        crossEntropy.Dispose();
        if (!ReferenceEquals(vjp, crossEntropy)) vjp.Dispose();
    }

    private void CheckPixels(ReadOnlySpan<float> pixels, int batch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        if (pixels.Length != batch * SampleSize)
        {
            throw new ArgumentException($"Expected {batch}x{Channels}x{Height}x{Width} = {batch * SampleSize} pixel values, got {pixels.Length}.", nameof(pixels));
        }
    }

    private float[][] Run(OrtSession session, string[] inputNames, string[] outputNames, ReadOnlySpan<float> pixels, int batch,
        ReadOnlySpan<long> labels, ReadOnlySpan<float> logitsGrad, RunOptions? runOptions)
    {
        // The spans are copied into pooled arrays because ORT needs pinned memory that outlives this frame's spans.
        var pixelBuffer = ArrayPool<float>.Shared.Rent(pixels.Length);
        var labelBuffer = labels.IsEmpty ? null : ArrayPool<long>.Shared.Rent(labels.Length);
        var gradBuffer = logitsGrad.IsEmpty ? null : ArrayPool<float>.Shared.Rent(logitsGrad.Length);
        RunOptions? ownOptions = runOptions is null ? new RunOptions() : null;
        try
        {
            pixels.CopyTo(pixelBuffer);
            using var pixelValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
                new Memory<float>(pixelBuffer, 0, pixels.Length), [batch, Channels, Height, Width]);
            OrtValue second;
            if (labelBuffer is not null)
            {
                labels.CopyTo(labelBuffer);
                second = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<long>(labelBuffer, 0, labels.Length), [batch]);
            }
            else
            {
                logitsGrad.CopyTo(gradBuffer!);
                second = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(gradBuffer, 0, logitsGrad.Length), [batch, Classes]);
            }

            using (second)
            {
                using var activity = CoreActivities.OnnxRun("gradient", batch, session.ExecutionProvider);
                using var results = session.Session.Run(runOptions ?? ownOptions!, inputNames, [pixelValue, second], outputNames);
                return results.Select(r => r.GetTensorDataAsSpan<float>().ToArray()).ToArray();
            }
        }
        finally
        {
            ownOptions?.Dispose();
            ArrayPool<float>.Shared.Return(pixelBuffer);
            if (labelBuffer is not null) ArrayPool<long>.Shared.Return(labelBuffer);
            if (gradBuffer is not null) ArrayPool<float>.Shared.Return(gradBuffer);
        }
    }
}
