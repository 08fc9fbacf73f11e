using System.Diagnostics;
using StrapVit.Api.Hosting;
using StrapVit.Api.Observability;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Defense;

/// <summary>One classification through the selected defense (or straight to the classifier when it is off).</summary>
public sealed record DefendedResult(IReadOnlyList<Prediction> Predictions, DefendedLogits? Defense, double InferenceMs, double DefenseMs)
{
    /// <summary>The certificate, when the request asked for defense=certify.</summary>
    public CertifyReport? Certify { get; init; }

    /// <summary>The response's <c>defense</c> object: the certificate, the defense's report, or null when off.</summary>
    public object? Report => (object?)Certify ?? Defense?.Report;
}

internal static class DefendedClassification
{
    public static DefendedResult Run(ModelRuntime runtime, ServiceMetrics metrics, ImageTensor image, int topK, DefenseSelection selection, CancellationToken cancellationToken)
    {
        var classifier = runtime.Classifier;
        if (selection.Mode == DefenseMode.Certify)
        {
            return Certify(runtime, metrics, image, topK, selection.PatchSize, cancellationToken);
        }

        if (selection.Mode == DefenseMode.Off || runtime.Defense is not { } defense)
        {
            var plain = classifier.Classify(image, topK, cancellationToken);
            metrics.ObserveInference("forward", TimeSpan.FromMilliseconds(plain.InferenceMs));
            return new DefendedResult(plain.Predictions, null, plain.InferenceMs, 0);
        }

        var sw = Stopwatch.StartNew();
        var defended = defense.Run(image.Data, 1, selection.Mode, [selection.Seed], cancellationToken)[0];
        var elapsed = sw.Elapsed;
        var report = defended.Report;
        metrics.ObserveDefense(report.Mode, elapsed, report.FlaggedTokens.Count, report.FlaggedAboveThreshold > 0);
        metrics.ObserveInference(defense.Variant == "token" ? "token_split" : "forward", elapsed);
        return new DefendedResult(classifier.Rank(defended.Logits, topK), defended, elapsed.TotalMilliseconds, elapsed.TotalMilliseconds);
    }

    /// <summary>
    /// PatchCleanser's answer as predictions: its label first, then the other classes by one-mask votes; a class's
    /// <c>probability</c> is the share of one-mask views that voted for it (the label may hold fewer votes than
    /// another class when the second round overturned the majority).
    /// </summary>
    private static DefendedResult Certify(ModelRuntime runtime, ServiceMetrics metrics, ImageTensor image, int topK, int patchSize, CancellationToken cancellationToken)
    {
        var certifier = runtime.Certifier ?? throw new InvalidOperationException("PatchDefenseFilter lets defense=certify through only with a certifier.");
        var sw = Stopwatch.StartNew();
        var result = certifier.Certify(image.Data, patchSize, cancellationToken);
        var elapsed = sw.Elapsed;
        metrics.ObserveDefense("certify", elapsed, 0, false);
        metrics.ObserveInference("certify", elapsed);
        var labels = runtime.Classifier.Manifest.Labels;
        var masks = (float)result.Report.Masks.Count;
        var predictions = Enumerable.Range(0, labels.Count)
            .OrderByDescending(c => c == result.Label)
            .ThenByDescending(c => result.Votes[c])
            .ThenBy(c => c)
            .Take(topK)
            .Select(c => new Prediction(c, labels[c], result.Votes[c] / masks))
            .ToArray();
        return new DefendedResult(predictions, null, elapsed.TotalMilliseconds, elapsed.TotalMilliseconds) { Certify = result.Report };
    }
}
