using System.Diagnostics;
using StrapVit.Api.Observability;
using StrapVit.Api.Serving;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Numerics;

namespace StrapVit.Api.Defense;

/// <summary>One classification through the selected defense (or straight to the classifier when it is off).</summary>
public sealed record DefendedResult(IReadOnlyList<Prediction> Predictions, DefendedLogits? Defense, double InferenceMs, double DefenseMs)
{
    /// <summary>The certificate, when the request asked for defense=certify.</summary>
    public CertifyReport? Certify { get; init; }

    /// <summary>The response's <c>defense</c> object: the certificate, the defense's report, or null when off.</summary>
    public object? Report => (object?)Certify ?? Defense?.Report;
}

/// <summary>
/// One image of a batch through the selected defense: its logits (null under certify, which answers by votes), its
/// class probabilities (under certify, each class's share of the one-mask votes), the predicted class, and the
/// defense's report or the certificate.
/// </summary>
public sealed record DefendedImage(float[]? Logits, float[] Probabilities, int Label, DefendedLogits? Defense, CertifiedClassification? Certified);

/// <summary>A batch's answers, and the wall time of the classifier or defense runs for the whole batch.</summary>
public sealed record DefendedBatch(IReadOnlyList<DefendedImage> Images, double InferenceMs, double DefenseMs);

internal static class DefendedClassification
{
    public static DefendedResult Run(ModelRuntime runtime, ServiceMetrics metrics, ImageTensor image, int topK, DefenseSelection selection, CancellationToken cancellationToken) =>
        Single(runtime, RunBatch(runtime, metrics, image.Data, 1, selection, cancellationToken), topK);

    /// <summary>A one-image batch's answer as predictions: the top-K classes, the defense's report or the certificate.</summary>
    public static DefendedResult Single(ModelRuntime runtime, DefendedBatch batch, int topK)
    {
        var one = batch.Images[0];
        return one switch
        {
            { Certified: { } certified } =>
                new DefendedResult(CertifiedPredictions(runtime, certified, topK), null, batch.InferenceMs, batch.DefenseMs) { Certify = certified.Report },
            { Logits: { } logits } => new DefendedResult(runtime.Classifier.Rank(logits, topK), one.Defense, batch.InferenceMs, batch.DefenseMs),
            _ => throw new InvalidOperationException("Every image the classifier or the defense ran has logits."),
        };
    }

    /// <summary>
    /// <paramref name="batch"/> images laid out back to back in <paramref name="pixels"/>, each classified as
    /// <see cref="Run"/> classifies it alone with the same selection (and seed): one classifier or defense run for the
    /// whole batch; certified mode, which has no batched form, image by image. <paramref name="seeds"/>, when given,
    /// are the images' own seeds (the dynamic batcher's requests each keep theirs), else every image has the selection's.
    /// </summary>
    public static DefendedBatch RunBatch(ModelRuntime runtime, ServiceMetrics metrics, float[] pixels, int batch, DefenseSelection selection, CancellationToken cancellationToken,
        IReadOnlyList<int>? seeds = null)
    {
        if (selection.Mode == DefenseMode.Certify)
        {
            return Certify(runtime, metrics, pixels, batch, selection.PatchSize, cancellationToken);
        }

        var classifier = runtime.Classifier;
        var k = classifier.ClassCount;
        var sw = Stopwatch.StartNew();
        if (selection.Mode == DefenseMode.Off || runtime.Defense is not { } defense)
        {
            var logits = classifier.Logits(pixels, batch, cancellationToken);
            var forward = sw.Elapsed;
            metrics.ObserveInference("forward", forward);
            var plain = Enumerable.Range(0, batch).Select(i => Plain(logits.AsSpan(i * k, k).ToArray(), null)).ToArray();
            return new DefendedBatch(plain, forward.TotalMilliseconds, 0);
        }

        var defended = defense.Run(pixels, batch, selection.Mode, seeds ?? Enumerable.Repeat(selection.Seed, batch).ToArray(), cancellationToken);
        var elapsed = sw.Elapsed;
        foreach (var report in defended.Select(d => d.Report))
        {
            // The defense's duration histogram is per image: each gets its share of the batch's run.
            metrics.ObserveDefense(report.Mode, elapsed / batch, report.FlaggedTokens.Count, report.FlaggedAboveThreshold > 0);
        }

        metrics.ObserveInference(defense.Variant == "token" ? "token_split" : "forward", elapsed);
        return new DefendedBatch(defended.Select(d => Plain(d.Logits, d)).ToArray(), elapsed.TotalMilliseconds, elapsed.TotalMilliseconds);
    }

    private static DefendedImage Plain(float[] logits, DefendedLogits? defense) =>
        new(logits, Probabilities.Softmax(logits), Probabilities.ArgMax(logits), defense, null);

    /// <summary>PatchCleanser on each image; a class's probability is the share of one-mask views that voted for it.</summary>
    private static DefendedBatch Certify(ModelRuntime runtime, ServiceMetrics metrics, float[] pixels, int batch, int patchSize, CancellationToken cancellationToken)
    {
        var certifier = runtime.Certifier ?? throw new InvalidOperationException("DefenseSelector selects defense=certify only with a certifier.");
        var size = runtime.Classifier.Manifest.Input.Size;
        var images = new DefendedImage[batch];
        var total = TimeSpan.Zero;
        for (var i = 0; i < batch; i++)
        {
            var sw = Stopwatch.StartNew();
            var result = certifier.Certify(pixels.AsSpan(i * size, size), patchSize, cancellationToken);
            var elapsed = sw.Elapsed;
            total += elapsed;
            metrics.ObserveDefense("certify", elapsed, 0, false);
            metrics.ObserveInference("certify", elapsed);
            var masks = (float)result.Report.Masks.Count;
            images[i] = new DefendedImage(null, result.Votes.Select(v => v / masks).ToArray(), result.Label, null, result);
        }

        return new DefendedBatch(images, total.TotalMilliseconds, total.TotalMilliseconds);
    }

    /// <summary>
    /// PatchCleanser's answer as predictions: its label first, then the other classes by one-mask votes; a class's
    /// <c>probability</c> is the share of one-mask views that voted for it (the label may hold fewer votes than
    /// another class when the second round overturned the majority).
    /// </summary>
    private static Prediction[] CertifiedPredictions(ModelRuntime runtime, CertifiedClassification result, int topK)
    {
        var labels = runtime.Classifier.Manifest.Labels;
        var masks = (float)result.Report.Masks.Count;
        return Enumerable.Range(0, labels.Count)
            .OrderByDescending(c => c == result.Label)
            .ThenByDescending(c => result.Votes[c])
            .ThenBy(c => c)
            .Take(topK)
            .Select(c => new Prediction(c, labels[c], result.Votes[c] / masks))
            .ToArray();
    }
}
