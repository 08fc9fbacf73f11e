namespace StrapVit.Core.Defense;

/// <summary>
/// "Threshold, at least K": every token whose score exceeds <c>scale x threshold</c> of its position is flagged,
/// and the K tokens with the highest score-to-threshold ratio always are. Ranking by the ratio rather than the raw
/// score matters: background positions are near-constant on clean images and have tiny thresholds, so a patch
/// there stands out even when its raw score is modest.
/// </summary>
public static class TokenSelection
{
    /// <summary>
    /// Flagged positions among <paramref name="candidates"/>, most anomalous first, and how many passed the threshold:
    /// the first AboveThreshold of them are exactly the tokens over threshold (the masking check's completion relies on it).
    /// </summary>
    public static (int[] Flagged, int AboveThreshold) Select(
        ReadOnlySpan<double> scores, ReadOnlySpan<float> thresholds, IReadOnlyList<int> candidates, int minTokens, double scale) =>
        Select(Ratios(scores, thresholds, candidates, scale), candidates, minTokens);

    private static (int[] Flagged, int AboveThreshold) Select(double[] ratios, IReadOnlyList<int> candidates, int minTokens)
    {
        var order = Enumerable.Range(0, candidates.Count).OrderByDescending(i => ratios[i]).ThenBy(i => candidates[i]).ToArray();
        var above = ratios.Count(r => r > 1.0);
        var take = Math.Min(candidates.Count, Math.Max(above, minTokens));
        return (order.Take(take).Select(i => candidates[i]).ToArray(), above);
    }

    /// <summary>
    /// Region-aware flagging: as <see cref="Select(ReadOnlySpan{double}, ReadOnlySpan{float}, IReadOnlyList{int}, int, double)"/>,
    /// and, whenever that flags anything (a token over its threshold, or K &gt; 0; only the former with
    /// <paramref name="onlyOverThreshold"/>), also every token of the <paramref name="window"/> x
    /// <paramref name="window"/> square on the <paramref name="rows"/> x <paramref name="cols"/> grid with the largest
    /// sum of score-to-threshold ratios. A patch covers a block of neighbouring tokens, some of them only a little
    /// over or under threshold; flagging the block around the strongest evidence covers them. Candidates are the
    /// grid's cells in row-major order (candidate i is cell i). With <paramref name="growRatio"/> above 0 the window
    /// then grows by each token of the ring around it (its 8-neighbours outside it) whose score-to-threshold ratio is
    /// at least <paramref name="growRatio"/>: hysteresis, as an edge detector keeps weak edges next to strong ones. A
    /// patch that straddles one more token than the window is wide leaves a strip in that ring whose ratio is raised
    /// without crossing the threshold. With <paramref name="minRatioSum"/> above 0 and no token over its threshold, the
    /// window is flagged only if its ratios add up to at least that.
    /// </summary>
    public static (int[] Flagged, int AboveThreshold) Select(
        ReadOnlySpan<double> scores, ReadOnlySpan<float> thresholds, IReadOnlyList<int> candidates, int minTokens, double scale,
        int window, int rows, int cols, bool onlyOverThreshold = false, double growRatio = 0, double minRatioSum = 0)
    {
        var ratios = Ratios(scores, thresholds, candidates, scale);
        var (flagged, above) = Select(ratios, candidates, minTokens);
        if (window <= 0 || flagged.Length == 0 || (onlyOverThreshold && above == 0) || candidates.Count != rows * cols)
        {
            return (flagged, above);
        }

        var w = Math.Min(window, Math.Min(rows, cols));
        var strongest = WindowVerification.Candidates(ratios, rows, cols, w, w, 1)[0];
        if (above == 0 && minRatioSum > 0 && strongest.Sum(cell => ratios[cell]) < minRatioSum)
        {
            return (flagged, above);
        }

        var set = new HashSet<int>(flagged);
        var result = new List<int>(flagged);
        foreach (var cell in strongest)
        {
            if (set.Add(candidates[cell])) result.Add(candidates[cell]);
        }

        if (growRatio > 0)
        {
            foreach (var cell in Ring(strongest, rows, cols).Where(c => ratios[c] >= growRatio).OrderByDescending(c => ratios[c]).ThenBy(c => c))
            {
                if (set.Add(candidates[cell])) result.Add(candidates[cell]);
            }
        }

        return (result.ToArray(), above);
    }

    /// <summary>The cells 8-adjacent to <paramref name="window"/> on a <paramref name="rows"/> x <paramref name="cols"/> grid and not in it, row-major.</summary>
    internal static int[] Ring(IReadOnlyCollection<int> window, int rows, int cols)
    {
        var inside = window.ToHashSet();
        var ring = new SortedSet<int>();
        foreach (var cell in window)
        {
            int r = cell / cols, c = cell % cols;
            for (var dr = -1; dr <= 1; dr++)
            {
                for (var dc = -1; dc <= 1; dc++)
                {
                    int rr = r + dr, cc = c + dc;
                    if (rr < 0 || rr >= rows || cc < 0 || cc >= cols || inside.Contains((rr * cols) + cc)) continue;
                    ring.Add((rr * cols) + cc);
                }
            }
        }

        return ring.ToArray();
    }

    /// <summary>Each candidate's score over its scaled threshold.</summary>
    internal static double[] Ratios(ReadOnlySpan<double> scores, ReadOnlySpan<float> thresholds, IReadOnlyList<int> candidates, double scale)
    {
        var ratios = new double[candidates.Count];
        for (var i = 0; i < candidates.Count; i++)
        {
            var k = candidates[i];
            ratios[i] = scores[k] / Math.Max(thresholds[k] * scale, 1e-12);
        }

        return ratios;
    }
}
