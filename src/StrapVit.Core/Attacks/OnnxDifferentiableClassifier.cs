using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Attacks;

/// <summary>
/// The served model as an <see cref="IDifferentiableClassifier"/>: gradients from the <see cref="GradientRunner"/>
/// (fused forward + backward), plain logits from the forward <see cref="VitClassifier"/> when one is given (so an
/// attack's verdict is exactly what <c>/v1/classify</c> would answer), else from a vjp run with a zero cotangent.
/// Batches larger than <paramref name="maxBatch"/> are split into several runs.
/// </summary>
public sealed class OnnxDifferentiableClassifier(GradientRunner runner, VitClassifier? forward = null, int maxBatch = 64)
    : IDifferentiableClassifier
{
    private readonly GradientRunner runner = runner ?? throw new ArgumentNullException(nameof(runner));
    private readonly int maxBatch = Math.Max(1, maxBatch);

    public int Channels => runner.Channels;

    public int Height => runner.Height;

    public int Width => runner.Width;

    public int Classes => runner.Classes;

    public float[] Logits(ReadOnlySpan<float> pixels, int batch, CancellationToken cancellationToken)
    {
        if (forward is not null)
        {
            return forward.Logits(pixels, batch, cancellationToken);
        }

        return Vjp(pixels, new float[batch * Classes], batch, cancellationToken).Logits;
    }

    public GradientResult CrossEntropy(ReadOnlySpan<float> pixels, ReadOnlySpan<long> labels, int batch, CancellationToken cancellationToken)
    {
        if (batch <= maxBatch)
        {
            return runner.CrossEntropy(pixels, labels, batch, cancellationToken);
        }

        var size = runner.SampleSize;
        var parts = new List<GradientResult>();
        for (var start = 0; start < batch; start += maxBatch)
        {
            var n = Math.Min(maxBatch, batch - start);
            parts.Add(runner.CrossEntropy(pixels.Slice(start * size, n * size), labels.Slice(start, n), n, cancellationToken));
        }

        return Concat(parts, batch, withLoss: true);
    }

    public GradientResult Vjp(ReadOnlySpan<float> pixels, ReadOnlySpan<float> logitsGrad, int batch, CancellationToken cancellationToken)
    {
        if (batch <= maxBatch)
        {
            return runner.Vjp(pixels, logitsGrad, batch, cancellationToken);
        }

        var size = runner.SampleSize;
        var k = runner.Classes;
        var parts = new List<GradientResult>();
        for (var start = 0; start < batch; start += maxBatch)
        {
            var n = Math.Min(maxBatch, batch - start);
            parts.Add(runner.Vjp(pixels.Slice(start * size, n * size), logitsGrad.Slice(start * k, n * k), n, cancellationToken));
        }

        return Concat(parts, batch, withLoss: false);
    }

    private GradientResult Concat(List<GradientResult> parts, int batch, bool withLoss) => new(
        batch,
        runner.Classes,
        [.. parts.SelectMany(p => p.Logits)],
        withLoss ? [.. parts.SelectMany(p => p.Loss!)] : null,
        [.. parts.SelectMany(p => p.PixelGrad)]);
}
