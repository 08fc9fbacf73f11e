using StrapVit.Core.Certification;

namespace StrapVit.Core.Tests.Certification;

/// <summary>
/// PatchCleanser's double masking (Algorithm 1 and Theorem 1 of arXiv 2108.09135) against a fake classifier whose
/// answer for every (mask, mask) view is written by hand: one case per branch, forwards counted by hand.
/// </summary>
public sealed class PatchCleanserTests
{
    private const int K = 6;

    /// <summary>Answers <c>label(i, j)</c> for the view hiding masks i and j (symmetric), counting views.</summary>
    private sealed class FakePredictor(Func<int, int, int> label) : IMaskedPredictor
    {
        public int Views { get; private set; }

        public List<MaskPair> Seen { get; } = [];

        public int[] Predict(IReadOnlyList<MaskPair> views)
        {
            Views += views.Count;
            Seen.AddRange(views);
            return views.Select(v => label(Math.Min(v.First, v.Second), Math.Max(v.First, v.Second))).ToArray();
        }
    }

    [Fact]
    public void Unanimous_one_and_two_mask_views_are_certified_after_every_pair()
    {
        var fake = new FakePredictor((_, _) => 3);

        var result = PatchCleanser.Run(fake, K);

        Assert.Equal(3, result.Label);
        Assert.True(result.Certified);
        Assert.Equal(CleanserCase.Agreement, result.Case);
        // 6 one-mask views plus the 15 pairs i < j.
        Assert.Equal(6 + 15, result.Forwards);
        Assert.Equal(21, fake.Views);
        Assert.Equal(15, fake.Seen.Count(v => v.First != v.Second));
    }

    [Fact]
    public void Unanimous_first_round_with_one_disagreeing_pair_answers_the_label_uncertified()
    {
        var fake = new FakePredictor((i, j) => (i, j) == (2, 5) ? 8 : 3);

        var result = PatchCleanser.Run(fake, K);

        Assert.Equal(3, result.Label);
        Assert.False(result.Certified);
        Assert.Equal(CleanserCase.Agreement, result.Case);
        Assert.Equal(21, result.Forwards); // all 15 pairs fit in the first batch of 32
    }

    [Fact]
    public void A_minority_label_whose_two_mask_views_all_agree_wins_the_second_round()
    {
        // The patched-image picture: only mask 4 hides the patch, so every view hiding mask 4 sees the true class 7,
        // every other one-mask view sees the patch's class 1.
        var fake = new FakePredictor((i, j) => i == 4 || j == 4 ? 7 : 1);

        var result = PatchCleanser.Run(fake, K);

        Assert.Equal(7, result.Label);
        Assert.False(result.Certified);
        Assert.Equal(CleanserCase.SecondRound, result.Case);
        Assert.Equal(6 + 5, result.Forwards);
        Assert.Equal([1, 1, 1, 1, 7, 1], result.FirstRound);
        Assert.All(fake.Seen.Skip(K), v => Assert.Equal(4, v.First));
    }

    [Fact]
    public void A_minority_label_that_fails_its_second_round_leaves_the_majority()
    {
        // Mask 4 disagrees in the first round, but the view hiding masks 4 and 0 goes back to the majority.
        var fake = new FakePredictor((i, j) => (i, j) == (0, 4) ? 1 : i == 4 || j == 4 ? 7 : 1);

        var result = PatchCleanser.Run(fake, K);

        Assert.Equal(1, result.Label);
        Assert.False(result.Certified);
        Assert.Equal(CleanserCase.Majority, result.Case);
        Assert.Equal(6 + 5, result.Forwards);
    }

    [Fact]
    public void Minority_masks_are_tried_in_order_and_the_first_that_survives_answers()
    {
        // Masks 1 and 3 disagree with the majority 0; mask 1's second round fails (its pair with 2 says 0), mask 3's holds.
        var fake = new FakePredictor((i, j) =>
            i == 3 || j == 3 ? 5 : (i, j) == (1, 2) ? 0 : i == 1 || j == 1 ? 9 : 0);

        var result = PatchCleanser.Run(fake, K);

        Assert.Equal(5, result.Label);
        Assert.Equal(CleanserCase.SecondRound, result.Case);
        Assert.False(result.Certified);
        Assert.Equal(6 + 5 + 5, result.Forwards);
    }

    [Fact]
    public void The_certificate_check_stops_after_the_batch_holding_the_first_disagreement()
    {
        // 10 masks, 45 pairs in batches of 32 then 64. Row-major, pair (8, 9) comes last: every pair is run.
        // Visited first, it ends the check after the first batch. The answer is the same either way.
        var fake = new FakePredictor((i, j) => (i, j) == (8, 9) ? 1 : 0);
        var order = new[] { new MaskPair(8, 9) }.Concat(PatchCleanser.AllPairs(10).Where(p => p != new MaskPair(8, 9))).ToArray();

        var rowMajor = PatchCleanser.Run(fake, 10);
        var ordered = PatchCleanser.Run(new FakePredictor((i, j) => (i, j) == (8, 9) ? 1 : 0), 10, order);

        Assert.Equal(10 + 45, rowMajor.Forwards);
        Assert.Equal(10 + 32, ordered.Forwards);
        Assert.Equal((0, false), (rowMajor.Label, rowMajor.Certified));
        Assert.Equal((0, false), (ordered.Label, ordered.Certified));
    }

    [Fact]
    public void Majority_breaks_ties_toward_the_smallest_label()
    {
        Assert.Equal(2, PatchCleanser.Majority([5, 2, 5, 2, 9]));
        Assert.Equal(5, PatchCleanser.Majority([5, 5, 2]));
    }

    [Fact]
    public void A_single_mask_is_its_own_certificate()
    {
        var fake = new FakePredictor((_, _) => 4);

        var result = PatchCleanser.Run(fake, 1);

        Assert.Equal((4, true, 1), (result.Label, result.Certified, result.Forwards));
    }

    [Fact]
    public void Theorem_1_a_certified_label_survives_any_patch_inside_one_mask()
    {
        // Certified clean image: every view says 2. A patch inside mask p can change any view that does not hide p,
        // arbitrarily; the algorithm must still answer 2. 2000 random adversaries over every p.
        var rng = new Random(7);
        for (var trial = 0; trial < 2000; trial++)
        {
            var p = trial % K;
            var table = new int[K, K];
            for (var i = 0; i < K; i++)
            {
                for (var j = i; j < K; j++)
                {
                    table[i, j] = i == p || j == p ? 2 : rng.Next(4);
                }
            }

            var result = PatchCleanser.Run(new FakePredictor((i, j) => table[i, j]), K);

            Assert.Equal(2, result.Label);
        }
    }

    [Fact]
    public void Worst_case_forwards_counts_every_branch()
    {
        // k = 25: first round 25, then either all 300 pairs or 24 minority masks x 24 pairs.
        Assert.Equal(25 + (24 * 24), PatchCleanser.WorstCaseForwards(25));
        Assert.Equal(1, PatchCleanser.WorstCaseForwards(1));
        Assert.Equal(2 + 1, PatchCleanser.WorstCaseForwards(2));
    }
}
