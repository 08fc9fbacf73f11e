using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Api.Hosting;
using StrapVit.Api.Observability;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Defense;

/// <summary>One classification through the selected defense (or straight to the classifier when it is off).</summary>
public sealed record DefendedResult(IReadOnlyList<Prediction> Predictions, DefendedLogits? Defense, double InferenceMs, double DefenseMs);

internal static class DefendedClassification
{
    public static DefendedResult Run(ModelRuntime runtime, ServiceMetrics metrics, ImageTensor image, int topK, DefenseSelection selection, RunOptions runOptions)
    {
        var classifier = runtime.Classifier;
        if (selection.Mode == DefenseMode.Off || runtime.Defense is not { } defense)
        {
            var plain = classifier.Classify(image, topK, runOptions);
            metrics.ObserveInference("forward", TimeSpan.FromMilliseconds(plain.InferenceMs));
            return new DefendedResult(plain.Predictions, null, plain.InferenceMs, 0);
        }

        var sw = Stopwatch.StartNew();
        var defended = defense.Run(image.Data, 1, selection.Mode, [selection.Seed], runOptions)[0];
        var elapsed = sw.Elapsed;
        var report = defended.Report;
        metrics.ObserveDefense(report.Mode, elapsed, report.FlaggedTokens.Count, report.FlaggedAboveThreshold > 0);
        metrics.ObserveInference(defense.Variant == "token" ? "token_split" : "forward", elapsed);
        return new DefendedResult(classifier.Rank(defended.Logits, topK), defended, elapsed.TotalMilliseconds, elapsed.TotalMilliseconds);
    }
}
