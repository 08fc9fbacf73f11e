using StrapVit.Core.Attacks;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Numerics;

namespace StrapVit.Core.Evaluation;

/// <summary>What one defense configuration did on one set of images.</summary>
/// <param name="Accuracy">Share of images whose top-1 equals the label.</param>
/// <param name="Flagged">Share of images with at least one token over its threshold (on clean images: the false-positive rate).</param>
/// <param name="Coverage">Mean share of the true patch area covered by flagged tokens (patched images only).</param>
public sealed record DefenseScore(double Accuracy, double Flagged, double? Coverage);

/// <summary>Runs a defense (or none) over an evaluation set and scores it.</summary>
public static class DefenseScoring
{
    private const int Batch = 50;

    public static DefenseScore Undefended(VitClassifier classifier, EvaluationSet set)
    {
        var logits = classifier.Logits(set.Pixels, set.Count);
        return new DefenseScore(Accuracy(logits, set.Labels, classifier.ClassCount), 0, null);
    }

    /// <summary>Scores <paramref name="defense"/> in <paramref name="mode"/>; image i uses seed <c>seed + i</c>.</summary>
    public static DefenseScore Defended(IPatchDefense defense, EvaluationSet set, DefenseMode mode, int seed, IReadOnlyList<PatchPlacement>? patches = null, int patchSize = 0)
    {
        var results = new List<DefendedLogits>(set.Count);
        for (var start = 0; start < set.Count; start += Batch)
        {
            var n = Math.Min(Batch, set.Count - start);
            var seeds = Enumerable.Range(seed + start, n).ToArray();
            results.AddRange(defense.Run(set.Pixels.AsSpan(start * set.SampleSize, n * set.SampleSize), n, mode, seeds));
        }

        var classes = results[0].Logits.Length;
        var all = results.SelectMany(r => r.Logits).ToArray();
        double? coverage = patches is null ? null
            : results.Select((r, i) => Coverage(r.Report.FlaggedTokens, patches[i], patchSize)).Average();
        return new DefenseScore(
            Accuracy(all, set.Labels, classes),
            results.Count(r => r.Report.FlaggedAboveThreshold > 0) / (double)results.Count,
            coverage);
    }

    /// <summary>Share of the patch's pixels that lie in flagged token cells.</summary>
    public static double Coverage(IReadOnlyList<FlaggedToken> flagged, PatchPlacement patch, int tokenSize)
    {
        if (patch.Size == 0)
        {
            return 0;
        }

        var covered = 0;
        for (var y = patch.Y; y < patch.Y + patch.Size; y++)
        {
            for (var x = patch.X; x < patch.X + patch.Size; x++)
            {
                int row = y / tokenSize, col = x / tokenSize;
                if (flagged.Any(f => f.Row == row && f.Col == col))
                {
                    covered++;
                }
            }
        }

        return covered / (double)(patch.Size * patch.Size);
    }

    public static double Accuracy(ReadOnlySpan<float> logits, IReadOnlyList<int> labels, int classes)
    {
        var correct = 0;
        for (var i = 0; i < labels.Count; i++)
        {
            if (Probabilities.ArgMax(logits.Slice(i * classes, classes)) == labels[i])
            {
                correct++;
            }
        }

        return correct / (double)labels.Count;
    }
}
