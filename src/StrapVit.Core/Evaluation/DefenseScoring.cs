using StrapVit.Core.Attacks;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Numerics;

namespace StrapVit.Core.Evaluation;

/// <summary>What one defense configuration did on one set of images.</summary>
/// <param name="Accuracy">Share of images whose top-1 equals the label.</param>
/// <param name="Flagged">Share of images with at least one token over its threshold (on clean images: the false-positive rate).</param>
/// <param name="Coverage">Mean share of the true patch area covered by flagged tokens (patched images only).</param>
/// <param name="Correct">Per image: whether the defended top-1 equals the label.</param>
public sealed record DefenseScore(double Accuracy, double Flagged, double? Coverage, bool[] Correct)
{
    /// <summary>Median share of the true patch area covered by flagged tokens.</summary>
    public double? MedianCoverage { get; init; }

    /// <summary>Share of images whose highest score-to-threshold token lies on the patch.</summary>
    public double? TopInPatch { get; init; }

    /// <summary>Mean number of tokens flagged per image.</summary>
    public double TokensFlagged { get; init; }

    /// <summary>Images whose answer the masking check replaced (outcome <c>recovered</c> or <c>completed</c>); null without a check.</summary>
    public int? CheckRecovered { get; init; }

    /// <summary>Of <see cref="CheckRecovered"/>, those whose new answer is right (the defended answer before it was wrong).</summary>
    public int? CheckRecoveredCorrect { get; init; }

    /// <summary>Mean masked encoder runs of the masking check per image (its cost in classifications); null without a check.</summary>
    public double? CheckForwards { get; init; }

    /// <summary>Per image: what the defense saw and did (empty for the undefended and fixed-flag scores).</summary>
    public IReadOnlyList<ImageOutcome> Images { get; init; } = [];

    /// <summary>Accuracy over the images selected by <paramref name="include"/>; null when it selects none (no NaN: the results are written as JSON).</summary>
    public double? AccuracyOn(IReadOnlyList<bool> include)
    {
        var n = include.Count(x => x);
        return n == 0 ? null : Enumerable.Range(0, Correct.Length).Count(i => include[i] && Correct[i]) / (double)n;
    }
}

/// <summary>One image under the defense: the share of its patch covered by flagged tokens (null when clean), tokens over threshold, and the masking check's outcome (null without a check).</summary>
public sealed record ImageOutcome(double? Coverage, int Above, string? Check)
{
    /// <summary>Token cells the patch shares a pixel with (null when clean): how the patch sits on the token grid.</summary>
    public int? PatchTokens { get; init; }

    /// <summary>
    /// On a patched image with a masking check: what its first round saw of the patch. The checked window that covers most
    /// of the patch's pixels, whether it covers all of them, and whether hiding it gave the true label ("its view right"),
    /// or hiding it with the rest of its group kept a wrong answer ("its group's view wrong"); or that no checked window
    /// touched the patch. Null when clean or unchecked.
    /// </summary>
    public string? PatchView { get; init; }
}

/// <summary>Runs a defense (or none) over an evaluation set and scores it.</summary>
public static class DefenseScoring
{
    private const int Batch = 50;

    public static DefenseScore Undefended(VitClassifier classifier, EvaluationSet set)
    {
        var logits = classifier.Logits(set.Pixels, set.Count);
        var correct = CorrectOf(logits, set.Labels, classifier.ClassCount);
        return new DefenseScore(correct.Average(c => c ? 1.0 : 0.0), 0, null, correct);
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
        var correct = CorrectOf(results.SelectMany(r => r.Logits).ToArray(), set.Labels, classes);
        var coverage = patches is null ? null : results.Select((r, i) => Coverage(r.Report.FlaggedTokens, patches[i], patchSize)).ToArray();
        double? top = null;
        if (patches is not null)
        {
            var cols = Cols(results[0]);
            top = results.Select((r, i) =>
            {
                var best = Enumerable.Range(0, r.Scores.Length).MaxBy(k => r.Scores[k] / Math.Max(r.Thresholds[k], 1e-12));
                return Overlaps(best / cols, best % cols, patches[i], patchSize) ? 1.0 : 0.0;
            }).Average();
        }

        var checkedAny = results.Any(r => r.Report.Verification is not null);
        var recovered = Enumerable.Range(0, results.Count).Where(i => results[i].Report.Verification?.Outcome is "recovered" or "completed").ToArray();
        return new DefenseScore(
            correct.Average(c => c ? 1.0 : 0.0),
            results.Count(r => r.Report.FlaggedAboveThreshold > 0) / (double)results.Count,
            coverage?.Average(),
            correct)
        {
            CheckRecovered = checkedAny ? recovered.Length : null,
            CheckRecoveredCorrect = checkedAny ? recovered.Count(i => correct[i]) : null,
            CheckForwards = checkedAny ? results.Average(r => r.Report.Verification?.Forwards ?? 0) : null,
            MedianCoverage = coverage is null ? null : Median(coverage),
            TopInPatch = top,
            TokensFlagged = results.Average(r => r.Report.FlaggedTokens.Count),
            Images = results.Select((r, i) => new ImageOutcome(coverage?[i], r.Report.FlaggedAboveThreshold, r.Report.Verification?.Outcome)
            {
                PatchTokens = patches is null ? null : Enumerable.Range(0, r.Scores.Length).Count(k => Overlaps(k / Cols(r), k % Cols(r), patches[i], patchSize)),
                PatchView = patches is null ? null : PatchView(r.Report.Verification?.FirstRound, patches[i], patchSize, Cols(r), set.Labels[i]),
            }).ToArray(),
        };
    }

    /// <summary>The patch grid's columns, from one image's scores (the grids of the models here are square).</summary>
    private static int Cols(DefendedLogits r) => (int)Math.Round(Math.Sqrt(r.Scores.Length));

    /// <summary>Scores the token defense's neutralisation on tokens chosen by <paramref name="flagsOf"/> (oracle and random baselines).</summary>
    public static DefenseScore WithFlags(TokenPatchDefense defense, EvaluationSet set, Func<int, IReadOnlyList<int>> flagsOf, int seed, int classes)
    {
        var logits = new List<float>(set.Count * classes);
        for (var start = 0; start < set.Count; start += Batch)
        {
            var n = Math.Min(Batch, set.Count - start);
            var offset = start;
            logits.AddRange(defense.RunWithFlags(set.Pixels.AsSpan(start * set.SampleSize, n * set.SampleSize), n, i => flagsOf(offset + i),
                Enumerable.Range(seed + start, n).ToArray()));
        }

        var correct = CorrectOf(logits.ToArray(), set.Labels, classes);
        return new DefenseScore(correct.Average(c => c ? 1.0 : 0.0), 0, null, correct);
    }

    /// <summary>Whether the token cell at (<paramref name="row"/>, <paramref name="col"/>) shares a pixel with the patch.</summary>
    public static bool Overlaps(int row, int col, PatchPlacement patch, int tokenSize) => OverlapPixels(row, col, patch, tokenSize) > 0;

    /// <summary>
    /// <see cref="ImageOutcome.PatchView"/>: among the check's first-round windows (<paramref name="firstRound"/>: cells of a
    /// grid <paramref name="cols"/> wide, and each view's answer), the one over most of the patch's pixels (the first such).
    /// </summary>
    internal static string? PatchView(IReadOnlyList<(int[] Cells, int Answer, bool Alone)>? firstRound, PatchPlacement patch, int tokenSize, int cols, int label)
    {
        if (firstRound is null || patch.Size == 0) return null;
        int best = -1, bestPixels = 0;
        for (var m = 0; m < firstRound.Count; m++)
        {
            var pixels = firstRound[m].Cells.Sum(c => OverlapPixels(c / cols, c % cols, patch, tokenSize));
            if (pixels > bestPixels) (best, bestPixels) = (m, pixels);
        }

        if (best < 0) return "no checked window on the patch";
        var over = bestPixels == patch.Size * patch.Size ? "all" : "part";
        var (_, answer, alone) = firstRound[best];
        return $"a checked window over {over} of the patch, its {(alone ? "" : "group's ")}view {(answer == label ? "right" : "wrong")}";
    }

    /// <summary>Pixels the patch shares with the token cell at (<paramref name="row"/>, <paramref name="col"/>).</summary>
    private static int OverlapPixels(int row, int col, PatchPlacement patch, int tokenSize)
    {
        var w = Math.Min((col + 1) * tokenSize, patch.X + patch.Size) - Math.Max(col * tokenSize, patch.X);
        var h = Math.Min((row + 1) * tokenSize, patch.Y + patch.Size) - Math.Max(row * tokenSize, patch.Y);
        return Math.Max(0, w) * Math.Max(0, h);
    }

    /// <summary>Share of the patch's pixels that lie in flagged token cells.</summary>
    public static double Coverage(IReadOnlyList<FlaggedToken> flagged, PatchPlacement patch, int tokenSize) =>
        patch.Size == 0
            ? 0
            : flagged.Select(f => (f.Row, f.Col)).Distinct().Sum(c => OverlapPixels(c.Row, c.Col, patch, tokenSize)) / (double)(patch.Size * patch.Size);

    public static double Accuracy(ReadOnlySpan<float> logits, IReadOnlyList<int> labels, int classes) =>
        CorrectOf(logits, labels, classes).Average(c => c ? 1.0 : 0.0);

    private static bool[] CorrectOf(ReadOnlySpan<float> logits, IReadOnlyList<int> labels, int classes)
    {
        var correct = new bool[labels.Count];
        for (var i = 0; i < labels.Count; i++)
        {
            correct[i] = Probabilities.ArgMax(logits.Slice(i * classes, classes)) == labels[i];
        }

        return correct;
    }

    /// <summary>The median of <paramref name="values"/> (the mean of the two middle ones for an even count).</summary>
    internal static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
