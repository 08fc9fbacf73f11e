namespace StrapVit.Core.Defense;

/// <summary>
/// "Threshold, at least K": every token whose score exceeds <c>scale x threshold</c> of its position is flagged,
/// and the K tokens with the highest score-to-threshold ratio always are. Ranking by the ratio rather than the raw
/// score matters: background positions are near-constant on clean images and have tiny thresholds, so a patch
/// there stands out even when its raw score is modest.
/// </summary>
public static class TokenSelection
{
    /// <summary>Flagged positions among <paramref name="candidates"/>, most anomalous first, and how many passed the threshold.</summary>
    public static (int[] Flagged, int AboveThreshold) Select(
        ReadOnlySpan<double> scores, ReadOnlySpan<float> thresholds, IReadOnlyList<int> candidates, int minTokens, double scale)
    {
        var ratios = new double[candidates.Count];
        for (var i = 0; i < candidates.Count; i++)
        {
            var k = candidates[i];
            ratios[i] = scores[k] / Math.Max(thresholds[k] * scale, 1e-12);
        }

        var order = Enumerable.Range(0, candidates.Count).OrderByDescending(i => ratios[i]).ThenBy(i => candidates[i]).ToArray();
        var above = ratios.Count(r => r > 1.0);
        var take = Math.Min(candidates.Count, Math.Max(above, minTokens));
        return (order.Take(take).Select(i => candidates[i]).ToArray(), above);
    }
}
