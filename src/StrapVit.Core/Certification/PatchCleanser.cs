namespace StrapVit.Core.Certification;

/// <summary>A masked view of one image: masks <see cref="First"/> and <see cref="Second"/> of a <see cref="MaskSet"/> hidden together (equal for a one-mask view).</summary>
public readonly record struct MaskPair(int First, int Second);

/// <summary>The classifier PatchCleanser queries: the predicted label of one image under each masked view.</summary>
public interface IMaskedPredictor
{
    /// <summary>One label per view, in order. Implementations run the views batched.</summary>
    int[] Predict(IReadOnlyList<MaskPair> views);
}

/// <summary>How the double-masking algorithm reached its answer (the three cases of the paper's Algorithm 1).</summary>
public enum CleanserCase
{
    /// <summary>Case I: every one-mask prediction agrees.</summary>
    Agreement,

    /// <summary>Case II: a minority one-mask label whose two-mask predictions all agree with it.</summary>
    SecondRound,

    /// <summary>Case III: no minority label survived its second round; the majority label.</summary>
    Majority,
}

/// <summary>PatchCleanser's answer for one image.</summary>
/// <param name="Label">The prediction.</param>
/// <param name="Certified">Every two-mask prediction (one-mask ones included) equals <paramref name="Label"/>: no patch inside the mask set's cover can change it.</param>
/// <param name="Case">Which branch of the algorithm answered.</param>
/// <param name="Forwards">Masked views classified.</param>
/// <param name="FirstRound">The one-mask predictions, in mask order.</param>
public sealed record CleanserResult(int Label, bool Certified, CleanserCase Case, int Forwards, IReadOnlyList<int> FirstRound);

/// <summary>
/// PatchCleanser's double masking (Xiang et al., USENIX Security 2022, arXiv 2108.09135): Algorithm 1 for the
/// prediction and Theorem 1 for the certificate. With a mask set R such that every patch placement lies inside
/// some mask, if F(M_i ⊙ M_j ⊙ x) = y for all i, j, then Algorithm 1 answers y on x with any patch covered by R.
/// </summary>
public static class PatchCleanser
{
    /// <summary>
    /// Two-mask views in the first batch of the certificate check; each further batch is twice the last. A
    /// disagreement ends the check, so uncertified images stop after a few small batches while certified ones
    /// (which need every pair) pay for few runs.
    /// </summary>
    public const int FirstPairChunk = 32;

    /// <summary>Masked views the worst case needs for <paramref name="masks"/> masks: one round, then k − 1 more per minority mask (at most k − 1 of them), or all pairs when the first round agrees.</summary>
    public static long WorstCaseForwards(int masks) => masks + Math.Max((long)(masks - 1) * (masks - 1), (long)masks * (masks - 1) / 2);

    /// <summary>Algorithm 1 plus the certificate check.</summary>
    /// <param name="predictor">The masked classifier of one image.</param>
    /// <param name="masks">Number of masks k.</param>
    /// <param name="pairOrder">
    /// The order in which the certificate check visits the pairs i &lt; j (e.g. the pairs hiding the most first,
    /// likeliest to disagree); null for row-major. Only the number of forwards depends on it.
    /// </param>
    public static CleanserResult Run(IMaskedPredictor predictor, int masks, IReadOnlyList<MaskPair>? pairOrder = null) =>
        Run(predictor, masks, pairOrder is null ? null : () => pairOrder);

    /// <summary>Algorithm 1 plus the certificate check, the pair order asked for only once the first round has run (so it can use what that round saw).</summary>
    public static CleanserResult Run(IMaskedPredictor predictor, int masks, Func<IReadOnlyList<MaskPair>>? pairOrder)
    {
        ArgumentNullException.ThrowIfNull(predictor);
        ArgumentOutOfRangeException.ThrowIfLessThan(masks, 1);
        var first = predictor.Predict(Enumerable.Range(0, masks).Select(i => new MaskPair(i, i)).ToArray());
        var forwards = masks;
        var majority = Majority(first);
        if (first.All(l => l == majority))
        {
            // Case I answers the majority; certified only if every two-mask view agrees too.
            var certified = true;
            var pairs = pairOrder?.Invoke() ?? AllPairs(masks).ToArray();
            for (int start = 0, size = FirstPairChunk; start < pairs.Count; start += size, size *= 2)
            {
                var chunk = pairs.Skip(start).Take(size).ToArray();
                forwards += chunk.Length;
                if (predictor.Predict(chunk).Any(l => l != majority))
                {
                    certified = false;
                    break;
                }
            }

            return new CleanserResult(majority, certified, CleanserCase.Agreement, forwards, first);
        }

        // A one-mask disagreement means some one-mask (= two-mask with i = j) view differs from any answer: not certified.
        for (var i = 0; i < masks; i++)
        {
            if (first[i] == majority)
            {
                continue;
            }

            var views = Enumerable.Range(0, masks).Where(j => j != i).Select(j => new MaskPair(i, j)).ToArray();
            forwards += views.Length;
            if (predictor.Predict(views).All(l => l == first[i]))
            {
                return new CleanserResult(first[i], false, CleanserCase.SecondRound, forwards, first);
            }
        }

        return new CleanserResult(majority, false, CleanserCase.Majority, forwards, first);
    }

    /// <summary>The most frequent label; the smallest label among equally frequent ones (as PatchCleanser's reference code's bincount/argmax).</summary>
    public static int Majority(IReadOnlyList<int> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        return labels.GroupBy(l => l).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;
    }

    /// <summary>Every pair i &lt; j of <paramref name="masks"/> masks, row-major.</summary>
    public static IEnumerable<MaskPair> AllPairs(int masks)
    {
        for (var i = 0; i < masks; i++)
        {
            for (var j = i + 1; j < masks; j++)
            {
                yield return new MaskPair(i, j);
            }
        }
    }
}
