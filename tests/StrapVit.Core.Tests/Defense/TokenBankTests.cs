using System.Text.Json;
using StrapVit.Core.Defense;

namespace StrapVit.Core.Tests.Defense;

/// <summary>The clean-token bank: kNN score, coreset, score gradient, storage; window flagging; replacement.</summary>
public sealed class TokenBankTests
{
    private const int Dim = 5;

    /// <summary>A bank of uniform random entries and offsets (<paramref name="dim"/> channels); also BankSearchTests'.</summary>
    internal static TokenBank RandomBank(int entries, int positions, int neighbors, int seed, int dim = Dim)
    {
        var rng = new Random(seed);
        return new TokenBank
        {
            Dim = dim,
            Neighbors = neighbors,
            Offset = Enumerable.Range(0, positions).Select(_ => Enumerable.Range(0, dim).Select(_ => (float)rng.NextDouble()).ToArray()).ToArray(),
            Vectors = Enumerable.Range(0, entries * dim).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray(),
        };
    }

    /// <summary>Brute force in double precision: every distance, sorted.</summary>
    internal static (double Score, int[] Nearest) Reference(TokenBank bank, ReadOnlySpan<float> token, int position)
    {
        var distances = new (double Distance, int Index)[bank.Count];
        for (var j = 0; j < bank.Count; j++)
        {
            double sq = 0;
            for (var c = 0; c < bank.Dim; c++)
            {
                var diff = token[c] - (double)bank.Offset[position][c] - bank.Vectors[(j * bank.Dim) + c];
                sq += diff * diff;
            }

            distances[j] = (Math.Sqrt(sq), j);
        }

        var nearest = distances.OrderBy(x => x.Distance).Take(bank.Neighbors).ToArray();
        return (nearest.Average(x => x.Distance), nearest.Select(x => x.Index).ToArray());
    }

    [Fact]
    public void Knn_score_is_the_mean_distance_to_the_k_nearest_entries_after_the_position_offset()
    {
        var bank = RandomBank(entries: 200, positions: 3, neighbors: 4, seed: 1);
        var rng = new Random(2);
        for (var trial = 0; trial < 50; trial++)
        {
            var token = Enumerable.Range(0, Dim).Select(_ => (float)((rng.NextDouble() * 3) - 1)).ToArray();
            var position = trial % 3;
            var nearest = new int[4];

            var score = bank.Score(token, position, nearest);

            var (expected, expectedNearest) = Reference(bank, token, position);
            Assert.Equal(expected, score, 4);
            Assert.Equal(expectedNearest, nearest);
        }
    }

    [Theory]
    [InlineData(7, 203, 3)]   // tokens not a multiple of the 4-token block, entries not of the vector width
    [InlineData(9, 256, 1)]
    [InlineData(2, 64, 5)]    // fewer tokens than a block: the per-token path
    public void Scoring_a_whole_image_gives_the_per_token_scores_bit_for_bit_and_the_brute_force_neighbours(int positions, int entries, int neighbors)
    {
        var bank = RandomBank(entries, positions + 1, neighbors, seed: 11);
        var rng = new Random(12);
        var tokens = Enumerable.Range(0, (positions + 1) * Dim).Select(_ => (float)((rng.NextDouble() * 3) - 1.5)).ToArray();
        var scores = new double[positions + 1];
        var nearest = new int[(positions + 1) * neighbors];

        bank.ScoreImage(tokens, 1, scores, nearest);

        Assert.Equal(0, scores[0]); // the class token is not scored
        for (var t = 1; t <= positions; t++)
        {
            var token = tokens.AsSpan(t * Dim, Dim).ToArray();
            var single = new int[neighbors];
            Assert.Equal(bank.Score(token, t, single), scores[t]);
            Assert.Equal(single, nearest.AsSpan(t * neighbors, neighbors).ToArray());
            var (expected, indices) = Reference(bank, token, t);
            Assert.Equal(expected, scores[t], 4);
            Assert.Equal(indices, single);
        }
    }

    [Fact]
    public void A_per_position_bank_searches_only_the_entries_of_the_tokens_own_position()
    {
        // Positions 1-3 own entries 0-39, 40-99 and 100-159; position 0 (the class token) owns none.
        var pooled = RandomBank(entries: 160, positions: 4, neighbors: 3, seed: 21);
        var bank = pooled with { PositionStarts = [0, 0, 40, 100, 160] };
        var rng = new Random(22);
        var tokens = Enumerable.Range(0, 4 * Dim).Select(_ => (float)((rng.NextDouble() * 3) - 1.5)).ToArray();
        var scores = new double[4];
        var nearest = new int[4 * 3];

        bank.ScoreImage(tokens, 1, scores, nearest);

        int[] from = [0, 0, 40, 100], to = [0, 40, 100, 160];
        for (var t = 1; t < 4; t++)
        {
            // Brute force over the position's own entries only, as a bank of just those.
            var own = pooled with { Vectors = pooled.Vectors[(from[t] * Dim)..(to[t] * Dim)] };
            var (expected, indices) = Reference(own, tokens.AsSpan(t * Dim, Dim), t);
            Assert.Equal(expected, scores[t], 4);
            Assert.Equal(indices.Select(i => i + from[t]), nearest.AsSpan(t * 3, 3).ToArray());
            var single = new int[3];
            Assert.Equal(bank.Score(tokens.AsSpan(t * Dim, Dim), t, single), scores[t]);
            Assert.Equal(single, nearest.AsSpan(t * 3, 3).ToArray());
        }

        // Leave-one-out works in the bank's indices: excluding a position's nearest entry moves to the next.
        var first = nearest[3];
        var withoutIt = new int[3];
        bank.Score(tokens.AsSpan(Dim, Dim), 1, withoutIt, j => j == first);
        Assert.Equal(nearest.AsSpan(4, 2).ToArray(), withoutIt[..2]);
    }

    [Fact]
    public void Excluded_entries_are_skipped_so_a_bank_member_is_not_its_own_neighbour()
    {
        var bank = RandomBank(entries: 50, positions: 1, neighbors: 1, seed: 3);
        var member = bank.Vectors.AsSpan(7 * Dim, Dim).ToArray();
        var token = member.Select((v, c) => v + bank.Offset[0][c]).ToArray();

        Assert.Equal(0, bank.Score(token, 0), 5);
        var nearest = new int[1];
        var loo = bank.Score(token, 0, nearest, j => j == 7);

        Assert.NotEqual(7, nearest[0]);
        Assert.True(loo > 0);
    }

    [Fact]
    public void Greedy_coreset_takes_one_point_per_separated_cluster_before_any_second()
    {
        // Three tight clusters far apart: k-center with three picks must hit each cluster once.
        var rng = new Random(4);
        float[][] centers = [[0, 0], [100, 0], [0, 100]];
        var points = Enumerable.Range(0, 90).SelectMany(i => new[]
        {
            centers[i % 3][0] + (float)rng.NextDouble(), centers[i % 3][1] + (float)rng.NextDouble(),
        }).ToArray();

        var chosen = TokenBank.Coreset(points, 2, 3, seed: 0);

        Assert.Equal(3, chosen.Distinct().Count());
        Assert.Equal([0, 1, 2], chosen.Select(i => i % 3).Order().ToArray());
    }

    [Theory]
    [InlineData(64, 8192)] // the embedded model: 8,192 entries, 524,288 values
    [InlineData(128, 8192)] // the widest that still gets all 8,192
    [InlineData(192, 5461)] // ViT-Tiny: floor(1,048,576 / 192)
    [InlineData(768, 1365)] // ViT-B/16: about 4 MB of float32
    [InlineData(1 << 17, 16)] // never fewer than 16
    public void The_automatic_bank_size_keeps_8192_entries_or_a_million_values(int dim, int entries)
    {
        Assert.Equal(entries, new BankSettings().EntriesFor(dim));
        Assert.Equal(300, new BankSettings(Size: 300).EntriesFor(dim)); // a size given is kept as given
    }

    [Fact]
    public void Coreset_of_wide_tokens_through_a_random_projection_still_separates_clusters()
    {
        const int Wide = 300;
        var rng = new Random(5);
        var points = new float[60 * Wide];
        for (var i = 0; i < 60; i++)
        {
            for (var c = 0; c < Wide; c++)
            {
                points[(i * Wide) + c] = (float)rng.NextDouble() * 0.01f + (c == i % 4 ? 50f : 0f);
            }
        }

        var chosen = TokenBank.Coreset(points, Wide, 4, seed: 1);

        Assert.Equal([0, 1, 2, 3], chosen.Select(i => i % 4).Order().ToArray());
    }

    [Fact]
    public void Score_gradient_matches_finite_differences_with_neighbours_held()
    {
        var bank = RandomBank(entries: 60, positions: 2, neighbors: 3, seed: 6);
        var token = new float[] { 0.3f, -0.2f, 0.9f, 0.1f, -0.5f };
        var nearest = new int[3];
        bank.Score(token, 1, nearest);
        var gradient = new float[Dim];

        bank.ScoreGradient(token, 1, nearest, gradient);

        double Held(float[] z) => nearest.Average(j =>
            Math.Sqrt(Enumerable.Range(0, Dim).Sum(c => Math.Pow(z[c] - bank.Offset[1][c] - bank.Vectors[(j * Dim) + c], 2))));
        const float H = 1e-3f;
        for (var c = 0; c < Dim; c++)
        {
            var plus = (float[])token.Clone();
            var minus = (float[])token.Clone();
            plus[c] += H;
            minus[c] -= H;
            Assert.Equal((Held(plus) - Held(minus)) / (2 * H), gradient[c], 3);
        }
    }

    [Fact]
    public void Bank_round_trips_through_json_as_base64_floats()
    {
        var bank = RandomBank(entries: 10, positions: 2, neighbors: 2, seed: 7);
        var options = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

        var json = JsonSerializer.Serialize(bank, options);
        var back = JsonSerializer.Deserialize<TokenBank>(json, options)!;

        Assert.Contains("\"vectors\":\"", json, StringComparison.Ordinal);
        Assert.Equal(bank.Vectors, back.Vectors);
        Assert.Equal(bank.Offset[1], back.Offset[1]);
        Assert.Equal(10, back.Count);
        Assert.Null(back.PositionStarts);
        var perPosition = JsonSerializer.Deserialize<TokenBank>(JsonSerializer.Serialize(bank with { PositionStarts = [0, 4, 10] }, options), options)!;
        Assert.Equal([0, 4, 10], perPosition.PositionStarts!);
    }

    [Fact]
    public void Window_flagging_adds_the_square_with_the_largest_ratio_sum_when_any_token_is_over_threshold()
    {
        // A 4x4 grid after a class token at index 0; thresholds 1, so scores are ratios.
        var scores = new double[17];
        scores[1 + 5] = 3.0;  // (1,1): over threshold
        scores[1 + 6] = 0.9;  // (1,2)
        scores[1 + 10] = 0.8; // (2,2)
        scores[1 + 0] = 0.95; // (0,0)
        var thresholds = Enumerable.Repeat(1f, 17).ToArray();
        var candidates = Enumerable.Range(1, 16).ToArray();

        var (flagged, above) = TokenSelection.Select(scores, thresholds, candidates, minTokens: 0, scale: 1, window: 2, rows: 4, cols: 4);

        Assert.Equal(1, above);
        // (1,1)-(2,2) sums 3.0 + 0.9 + 0.8 = 4.7, more than (0,0)-(1,1)'s 3.95.
        Assert.Equal([6, 7, 10, 11], flagged.Order().ToArray());
    }

    [Fact]
    public void Window_flagging_adds_nothing_when_nothing_is_flagged_and_grows_the_k_minimum_otherwise()
    {
        var scores = Enumerable.Repeat(0.5, 17).ToArray();
        scores[16] = 0.9; // (3,3), the most anomalous, still under threshold
        var thresholds = Enumerable.Repeat(1f, 17).ToArray();
        var candidates = Enumerable.Range(1, 16).ToArray();

        var (none, above) = TokenSelection.Select(scores, thresholds, candidates, minTokens: 0, scale: 1, window: 3, rows: 4, cols: 4);
        var (grown, _) = TokenSelection.Select(scores, thresholds, candidates, minTokens: 1, scale: 1, window: 2, rows: 4, cols: 4);

        Assert.Equal(0, above);
        Assert.Empty(none);
        Assert.Equal([11, 12, 15, 16], grown.Order().ToArray());
    }

    [Fact]
    public void A_window_only_over_threshold_leaves_the_k_minimum_alone_and_still_grows_a_token_over_threshold()
    {
        var thresholds = Enumerable.Repeat(1f, 17).ToArray();
        var candidates = Enumerable.Range(1, 16).ToArray();
        var quiet = Enumerable.Repeat(0.5, 17).ToArray();
        quiet[16] = 0.9; // (3,3), the most anomalous, under threshold
        var loud = (double[])quiet.Clone();
        loud[16] = 1.5; // now over threshold

        var (kOnly, aboveQuiet) = TokenSelection.Select(quiet, thresholds, candidates, minTokens: 1, scale: 1, window: 2, rows: 4, cols: 4, onlyOverThreshold: true);
        var (grown, aboveLoud) = TokenSelection.Select(loud, thresholds, candidates, minTokens: 1, scale: 1, window: 2, rows: 4, cols: 4, onlyOverThreshold: true);

        Assert.Equal((0, 1), (aboveQuiet, aboveLoud));
        Assert.Equal([16], kOnly);
        // Over threshold: the bottom-right 2x2 square, as without the option.
        Assert.Equal([11, 12, 15, 16], grown.Order().ToArray());
    }

    [Fact]
    public void The_ring_of_a_window_is_its_eight_neighbours_inside_the_grid()
    {
        // 2x2 window at the top-left of a 4x4 grid: cells 0,1,4,5. Its ring, written out by hand: (0,2) (1,2) (2,0) (2,1) (2,2).
        Assert.Equal([2, 6, 8, 9, 10], TokenSelection.Ring([0, 1, 4, 5], 4, 4));
        // In the middle of a 5x5 grid the ring of a 2x2 window at (1,1) has 4 * 3 = 12 cells: rows 0-3, cols 0-3, less the window.
        int[] ring = TokenSelection.Ring([6, 7, 11, 12], 5, 5);
        Assert.Equal(12, ring.Length);
        Assert.All(ring, c => Assert.True(c / 5 <= 3 && c % 5 <= 3 && !new[] { 6, 7, 11, 12 }.Contains(c)));
    }

    [Theory]
    [InlineData(0.0, new[] { 7, 8, 12, 13 })]          // no growth: the window alone
    [InlineData(0.55, new[] { 7, 8, 9, 12, 13, 19 })]  // (1,3) at 0.8 and (3,3) at 0.6 join
    [InlineData(0.7, new[] { 7, 8, 9, 12, 13 })]       // only (1,3); (1,4) at 0.85 is two cells away and never joins
    [InlineData(0.9, new[] { 7, 8, 12, 13 })]          // nothing in the ring reaches 0.9
    public void A_grown_window_takes_the_neighbours_over_the_growth_ratio_and_nothing_further(double grow, int[] expected)
    {
        // A 5x5 grid after a class token at index 0 (candidate = cell + 1); thresholds 1, so scores are ratios.
        var scores = new double[26];
        scores[1 + 6] = 3.0;   // (1,1), over threshold
        scores[1 + 7] = 0.9;   // (1,2)
        scores[1 + 11] = 0.6;  // (2,1)
        scores[1 + 12] = 0.8;  // (2,2): the window is (1,1)-(2,2), ratio sum 5.3
        scores[1 + 8] = 0.8;   // (1,3): in its ring
        scores[1 + 18] = 0.6;  // (3,3): in its ring, diagonally
        scores[1 + 9] = 0.85;  // (1,4): outside the ring
        var thresholds = Enumerable.Repeat(1f, 26).ToArray();
        var candidates = Enumerable.Range(1, 25).ToArray();

        var (flagged, above) = TokenSelection.Select(scores, thresholds, candidates, minTokens: 0, scale: 1, window: 2, rows: 5, cols: 5, growRatio: grow);

        Assert.Equal(1, above);
        Assert.Equal(expected, flagged.Order().ToArray());
    }

    [Theory]
    [InlineData(0.0, true)]   // 0: the window whenever the K minimum flags anything
    [InlineData(2.0, true)]   // the strongest window (1,1)-(2,2) adds up to 0.9 + 0.6 + 0.7 + 0.3 = 2.5
    [InlineData(2.45, true)]  // just under the sum: flagged
    [InlineData(2.6, false)]  // over it: only the K = 2 strongest tokens, (1,1) at 0.9 and (2,2) at 0.7
    public void Under_threshold_the_window_is_flagged_only_when_its_ratios_add_up(double minSum, bool window)
    {
        // A 4x4 grid after a class token (candidate = cell + 1); thresholds 2, so each ratio is half the score.
        var scores = new double[17];
        scores[1 + 5] = 1.8;   // (1,1): ratio 0.9
        scores[1 + 6] = 1.2;   // (1,2): 0.6
        scores[1 + 9] = 0.6;   // (2,1): 0.3
        scores[1 + 10] = 1.4;  // (2,2): 0.7
        scores[1 + 15] = 1.0;  // (3,3): 0.5, in no window with the others
        var thresholds = Enumerable.Repeat(2f, 17).ToArray();
        var candidates = Enumerable.Range(1, 16).ToArray();

        var (flagged, above) = TokenSelection.Select(scores, thresholds, candidates, minTokens: 2, scale: 1, window: 2, rows: 4, cols: 4, minRatioSum: minSum);

        Assert.Equal(0, above);
        Assert.Equal(window ? new[] { 6, 7, 10, 11 } : [6, 11], flagged.Order().ToArray());
    }

    [Fact]
    public void A_token_over_threshold_flags_the_window_whatever_its_sum()
    {
        // One token at ratio 1.5 on a 3x3 grid, the rest 0: every window holding it sums to 1.5, under a required 10.
        var scores = new double[10];
        scores[1 + 4] = 3.0;
        var thresholds = Enumerable.Repeat(2f, 10).ToArray();

        var (flagged, above) = TokenSelection.Select(scores, thresholds, Enumerable.Range(1, 9).ToArray(), minTokens: 0, scale: 1, window: 2, rows: 3, cols: 3, minRatioSum: 10);

        Assert.Equal(1, above);
        Assert.Equal(4, flagged.Length);
        Assert.Contains(5, flagged);
    }

    [Fact]
    public void Replacement_neutralisations_write_a_clean_token_and_cut_the_gradient()
    {
        var bank = RandomBank(entries: 30, positions: 3, neighbors: 2, seed: 8);
        var center = Enumerable.Range(0, 3).Select(p => Enumerable.Range(0, Dim).Select(c => (float)(p + c)).ToArray()).ToArray();
        var reference = new TokenReference
        {
            Temperature = 1, TokenCount = 3, Dim = Dim, Distribution = center, Center = center, Norm = [1, 1, 1], Threshold = [1, 1, 1],
            Bank = bank, BankThreshold = [1, 1, 1],
        };
        var image = Enumerable.Range(0, 3 * Dim).Select(i => 10f + i).ToArray();
        var grid = new TokenGrid(Dim, 1, 1, 2);

        var mean = (float[])image.Clone();
        var steps = TokenPatchDefense.Neutralize(mean, grid, reference, new DefenseOptions { Neutralization = Neutralization.Mean }, [2], null, new Random(1));
        Assert.Equal(center[2], mean.AsSpan(2 * Dim, Dim).ToArray());
        Assert.Equal(image.AsSpan(0, 2 * Dim).ToArray(), mean.AsSpan(0, 2 * Dim).ToArray());

        var fromBank = (float[])image.Clone();
        var bankSteps = TokenPatchDefense.Neutralize(fromBank, grid, reference, new DefenseOptions { Neutralization = Neutralization.Bank }, [1], null, new Random(1));
        var pick = (int)bankSteps[0][0].Parameter;
        Assert.Contains(pick, Reference(bank, image.AsSpan(Dim, Dim).ToArray(), 1).Nearest);
        Assert.Equal(bank.Vectors.AsSpan(pick * Dim, Dim).ToArray().Select((v, c) => v + bank.Offset[1][c]).ToArray(), fromBank.AsSpan(Dim, Dim).ToArray());

        var grad = Enumerable.Repeat(1f, Dim).ToArray();
        TokenMitigation.Backward(image.AsSpan(2 * Dim, Dim), center[2], 1, steps[0], grad);
        Assert.All(grad, g => Assert.Equal(0f, g));
    }
}

/// <summary>The adaptive attacker's detector gradients.</summary>
public sealed class EvasionGradientTests
{
    [Fact]
    public void Jsd_score_gradient_matches_finite_differences()
    {
        const int D = 6;
        var q = new float[] { 0.1f, 0.2f, 0.3f, 0.15f, 0.15f, 0.1f };
        var reference = new TokenReference
        {
            Temperature = 0.7, TokenCount = 1, Dim = D, Distribution = [q], Center = [new float[D]], Norm = [1], Threshold = [1],
        };
        var z = new float[] { 0.5f, -1.2f, 2.0f, 0.1f, -0.3f, 0.8f };
        double Score(float[] v)
        {
            var p = new double[D];
            JensenShannon.Softmax(v, 0.7, p);
            return JensenShannon.Distance(p, q.Select(x => (double)x).ToArray());
        }

        var gradient = new float[D];
        Evaluation.AdaptivePatchAttack.JsdGradient(reference, z, 0, Score(z), gradient);

        const float H = 1e-3f;
        for (var c = 0; c < D; c++)
        {
            var plus = (float[])z.Clone();
            var minus = (float[])z.Clone();
            plus[c] += H;
            minus[c] -= H;
            Assert.Equal((Score(plus) - Score(minus)) / (2 * H), gradient[c], 3);
        }
    }
}
