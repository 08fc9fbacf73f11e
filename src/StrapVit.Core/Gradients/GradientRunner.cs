using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using Onnx;

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

    private readonly OnnxRunner crossEntropy;
    private readonly OnnxRunner vjp;

    private GradientRunner(OnnxRunner crossEntropy, OnnxRunner vjp)
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

    /// <summary>
    /// Builds (or loads from <paramref name="graphs"/>' cache) both gradient graphs of a package and opens their
    /// sessions, over the factory's shared weights when it has them.
    /// </summary>
    /// <exception cref="GradientGraphException">The package's graph cannot be differentiated.</exception>
    public static GradientRunner Create(ModelPackage package, GradientGraphs graphs, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(graphs);
        ArgumentNullException.ThrowIfNull(sessions);
        if (sessions.Weights is { } weights)
        {
            return Create(graphs.Get(package, GradientObjective.CrossEntropy, weights), graphs.Get(package, GradientObjective.Vjp, weights), sessions);
        }

        return Create(graphs.Get(package, GradientObjective.CrossEntropy), graphs.Get(package, GradientObjective.Vjp), sessions);
    }

    /// <summary>Opens sessions on already serialized, self-contained gradient models (cross-entropy and vjp objectives).</summary>
    public static GradientRunner Create(byte[] crossEntropyModel, byte[] vjpModel, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        return Create(() => sessions.Create(crossEntropyModel, "gradient (cross-entropy)"), () => sessions.Create(vjpModel, "gradient (vjp)"));
    }

    /// <summary>Opens sessions on gradient models, over the factory's shared weights when it has them (the models may be rewritten in place).</summary>
    public static GradientRunner Create(ModelProto crossEntropyModel, ModelProto vjpModel, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        return Create(
            () => sessions.Create(crossEntropyModel, "gradient (cross-entropy)", gradient: true),
            () => sessions.Create(vjpModel, "gradient (vjp)", gradient: true));
    }

    /// <summary>
    /// A runner of a VJP graph alone, for a sub-graph without classes (e.g. the defense's embedding): one session,
    /// and <see cref="CrossEntropy"/> is not available.
    /// </summary>
    public static GradientRunner CreateVjpOnly(ModelProto vjpModel, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        var session = sessions.Create(vjpModel, "gradient (vjp)", gradient: true);
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

    private static GradientRunner Create(Func<OnnxRunner> crossEntropy, Func<OnnxRunner> vjp)
    {
        var ce = crossEntropy();
        try
        {
            return new GradientRunner(ce, vjp());
        }
        catch
        {
            ce.Dispose();
            throw;
        }
    }

    /// <summary>Logits, per-sample cross-entropy against <paramref name="labels"/> and d(Σ loss)/d pixels.</summary>
    /// <param name="pixels">[N, C, H, W] in [0, 1], N = <paramref name="batch"/>.</param>
    /// <param name="labels">[N] class indices in [0, K).</param>
    /// <param name="batch">N, at least 1.</param>
    /// <param name="cancellationToken">Stops the run, e.g. when a request is aborted.</param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public GradientResult CrossEntropy(ReadOnlySpan<float> pixels, ReadOnlySpan<long> labels, int batch, CancellationToken cancellationToken = default)
    {
        if (ReferenceEquals(crossEntropy, vjp)) throw new InvalidOperationException("This runner has only a VJP graph.");
        CheckPixels(pixels, batch);
        if (labels.Length != batch) throw new ArgumentException($"Expected {batch} labels, got {labels.Length}.", nameof(labels));
        foreach (var label in labels)
        {
            if (label < 0 || label >= Classes) throw new ArgumentOutOfRangeException(nameof(labels), label, $"Labels must be in [0, {Classes}).");
        }

        var result = new GradientResult(batch, Classes, new float[batch * Classes], new float[batch], new float[batch * SampleSize]);
        Run(crossEntropy, CrossEntropyInputs, CrossEntropyOutputs, pixels, batch, labels, default, result, cancellationToken);
        return result;
    }

    /// <summary>Logits and the vector-Jacobian product Jᵀ·<paramref name="logitsGrad"/> with respect to the pixels.</summary>
    /// <param name="pixels">[N, C, H, W] in [0, 1], N = <paramref name="batch"/>.</param>
    /// <param name="logitsGrad">[N, K] cotangent of the logits (e.g. a one-hot row picks one class's gradient).</param>
    /// <param name="batch">N, at least 1.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public GradientResult Vjp(ReadOnlySpan<float> pixels, ReadOnlySpan<float> logitsGrad, int batch, CancellationToken cancellationToken = default)
    {
        CheckPixels(pixels, batch);
        if (logitsGrad.Length != batch * Classes)
        {
            throw new ArgumentException($"Expected {batch}x{Classes} logit cotangents, got {logitsGrad.Length}.", nameof(logitsGrad));
        }

        var result = new GradientResult(batch, Classes, new float[batch * Classes], null, new float[batch * SampleSize]);
        Run(vjp, VjpInputs, VjpOutputs, pixels, batch, default, logitsGrad, result, cancellationToken);
        return result;
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

    /// <summary>One fused forward + backward run; ONNX Runtime reads the pinned inputs and writes into <paramref name="result"/>'s arrays.</summary>
    private unsafe void Run(OnnxRunner session, string[] inputNames, string[] outputNames, ReadOnlySpan<float> pixels, int batch,
        ReadOnlySpan<long> labels, ReadOnlySpan<float> logitsGrad, GradientResult result, CancellationToken cancellationToken)
    {
        fixed (float* pixelData = pixels)
        fixed (long* labelData = labels)
        fixed (float* gradData = logitsGrad)
        {
            using var pixelValue = OnnxRunner.Pinned(pixelData, pixels.Length, [batch, Channels, Height, Width]);
            using var second = labels.IsEmpty
                ? OnnxRunner.Pinned(gradData, logitsGrad.Length, [batch, Classes])
                : OnnxRunner.Pinned(labelData, labels.Length, [batch]);
            using var logits = OnnxRunner.Output(result.Logits, [batch, Classes]);
            using var loss = result.Loss is null ? null : OnnxRunner.Output(result.Loss, [batch]);
            using var pixelGrad = OnnxRunner.Output(result.PixelGrad, [batch, Channels, Height, Width]);
            OrtValue[] outputs = loss is null ? [logits, pixelGrad] : [logits, loss, pixelGrad];
            using var activity = CoreActivities.OnnxRun("gradient", batch, session.ExecutionProvider);
            session.Run(inputNames, [pixelValue, second], outputNames, outputs, cancellationToken);
        }
    }
}
