using StrapVit.Core.Defense;
using Xunit.Abstractions;

namespace StrapVit.Core.Tests.Defense;

/// <summary>
/// The clustered index of a large pooled bank: the same scores, bit for bit, and the same nearest entries as the full
/// scan of every entry, and as an independent brute force in double precision.
/// </summary>
public sealed class TokenBankIndexTests(DefaultModelTokens shipped, ITestOutputHelper output) : IClassFixture<DefaultModelTokens>
{
    /// <summary>
    /// A bank of <paramref name="entries"/> points around a few dozen centres of uniform spread (so clusters overlap),
    /// with some entries repeated elsewhere in the bank: equal distances at different indices.
    /// </summary>
    private static TokenBank MixtureBank(int entries, int dim, int neighbors, int seed, bool integers = false)
    {
        var rng = new Random(seed);
        var centres = Enumerable.Range(0, 40).Select(_ => Enumerable.Range(0, dim).Select(_ => (rng.NextDouble() * 8) - 4).ToArray()).ToArray();
        var vectors = new float[entries * dim];
        for (var j = 0; j < entries; j++)
        {
            var centre = centres[rng.Next(centres.Length)];
            var spread = 0.2 + (rng.NextDouble() * 1.5);
            for (var c = 0; c < dim; c++)
            {
                var v = centre[c] + (spread * ((rng.NextDouble() * 2) - 1));
                vectors[(j * dim) + c] = integers ? (float)Math.Round(v) : (float)v;
            }
        }

        // Every 50th entry repeats an earlier one.
        for (var j = 50; j < entries; j += 50) Array.Copy(vectors, rng.Next(j) * dim, vectors, j * dim, dim);
        return new TokenBank
        {
            Dim = dim,
            Neighbors = neighbors,
            Offset = [Enumerable.Range(0, dim).Select(_ => integers ? 1f : (float)rng.NextDouble()).ToArray()],
            Vectors = vectors,
        };
    }

    /// <summary>Queries of every kind: near the bank, bank entries themselves, between entries, far outside, and at scale.</summary>
    private static IEnumerable<float[]> Queries(TokenBank bank, int count, int seed, bool integers = false) =>
        QueriesFrom(bank, count, seed, integers).Select(q => q.Token);

    /// <summary><see cref="Queries"/> with the entry each was made from.</summary>
    private static IEnumerable<(float[] Token, int Entry)> QueriesFrom(TokenBank bank, int count, int seed, bool integers = false)
    {
        var rng = new Random(seed);
        int d = bank.Dim;
        for (var q = 0; q < count; q++)
        {
            var x = new float[d];
            var a = rng.Next(bank.Count);
            var b = rng.Next(bank.Count);
            var kind = q % 5;
            for (var c = 0; c < d; c++)
            {
                double va = bank.Vectors[(a * d) + c], vb = bank.Vectors[(b * d) + c];
                var v = kind switch
                {
                    0 => va,                                        // an entry (distance 0)
                    1 => va + ((rng.NextDouble() - 0.5) * 0.3),     // near one
                    2 => (va + vb) / 2,                             // between two
                    3 => (rng.NextDouble() * 30) - 15,              // far outside
                    _ => va * 40,                                   // large, and far
                };
                x[c] = (integers ? (float)Math.Round(v) : (float)v) + bank.Offset[0][c];
            }

            yield return (x, a);
        }
    }

    [Theory]
    [InlineData(4096, 16, 3, false)]
    [InlineData(2053, 9, 5, false)]   // entries not a multiple of the vector width, odd channels
    [InlineData(3000, 8, 3, true)]    // small integers: every distance is exact, so equal distances abound across clusters
    [InlineData(2048, 64, 1, false)]
    public void The_index_finds_the_full_scans_nearest_entries_and_scores_bit_for_bit(int entries, int dim, int neighbors, bool integers)
    {
        var bank = MixtureBank(entries, dim, neighbors, seed: entries, integers);
        var full = bank with { FullScan = true };
        Assert.NotNull(bank.Index);
        Assert.Null(full.Index);

        var ties = 0;
        foreach (var x in Queries(bank, 400, seed: dim, integers))
        {
            var (viaIndex, scanned) = (new int[neighbors], new int[neighbors]);
            var score = bank.Score(x, 0, viaIndex);
            var expected = full.Score(x, 0, scanned);

            Assert.Equal(expected, score);
            Assert.Equal(scanned, viaIndex);
            // Independently: the k smallest (distance, index) pairs by brute force in double precision.
            // Float sums of squares lose up to ~1e-5 (|x| + |b|)² of a squared distance: a root near 0 shows it most.
            var (reference, indices) = TokenBankTests.Reference(bank, x, 0);
            var scale = Norm(x) + bank.Vectors.Chunk(dim).Max(Norm);
            Assert.True(Math.Abs(reference - score) <= 4e-3 * scale, $"score {score}, double-precision brute force {reference}");
            if (!integers) continue;
            Assert.Equal(indices, viaIndex);
            ties += DistanceTies(bank, x, viaIndex);
        }

        if (integers) Assert.True(ties > 50, $"only {ties} queries had an equal distance just past their k-th");
    }

    [Fact]
    public void Leave_one_out_exclusion_gives_the_full_scans_neighbours()
    {
        var bank = MixtureBank(2500, 12, 3, seed: 5);
        var full = bank with { FullScan = true };
        var source = Enumerable.Range(0, bank.Count).Select(j => j / 10).ToArray(); // ten entries per "image"
        foreach (var (x, entry) in QueriesFrom(bank, 200, seed: 6))
        {
            // As at calibration: a token is never compared with the entries of its own image, its own entry among them.
            var image = source[entry];
            var (viaIndex, scanned) = (new int[3], new int[3]);
            Assert.Equal(full.Score(x, 0, scanned, j => source[j] == image), bank.Score(x, 0, viaIndex, j => source[j] == image));
            Assert.Equal(scanned, viaIndex);
            Assert.DoesNotContain(viaIndex, j => source[j] == image);
        }
    }

    [Fact]
    public void Every_entry_sits_in_one_cluster_within_its_radius_and_the_index_reads_a_fraction_of_the_bank()
    {
        var bank = MixtureBank(4096, 16, 3, seed: 9);
        var index = bank.Index!;
        Assert.Equal(4096 / TokenBankIndex.EntriesPerCluster, index.Clusters);
        var slots = index.Slot.Where(j => j >= 0).ToArray();
        Assert.Equal(Enumerable.Range(0, bank.Count), slots.Order());

        // Each entry's distance to each centre, in double: within the radius of its own cluster.
        var clusterOf = index.ClusterOfSlots();
        for (var s = 0; s < index.Slot.Length; s++)
        {
            var j = index.Slot[s];
            if (j < 0) continue;
            var c = clusterOf[s];
            double sq = 0;
            for (var ch = 0; ch < bank.Dim; ch++)
            {
                var diff = (double)bank.Vectors[(j * bank.Dim) + ch] - bank.Vectors[(c * bank.Dim) + ch];
                sq += diff * diff;
            }

            Assert.True(Math.Sqrt(sq) <= index.Radius[c], $"entry {j} lies {Math.Sqrt(sq)} from centre {c}, radius {index.Radius[c]}");
        }

        // Near a bank entry, most clusters are passed over.
        var near = Queries(bank, 100, seed: 10).Where((_, q) => q % 5 == 1).ToArray();
        var read = near.Select(x => index.EntriesRead(x, bank)).ToArray();
        Assert.True(read.Average() < 0.5 * bank.Count, $"the index read {read.Average():F0} of {bank.Count} entries per query");
    }

    [Fact]
    public void A_content_without_a_finite_norm_takes_the_full_scan_with_its_answer()
    {
        var bank = MixtureBank(2048, 8, 3, seed: 12);
        var full = bank with { FullScan = true };
        foreach (var value in new[] { 1e16f, 1e20f, float.NaN, float.PositiveInfinity })   // |x|² ≥ 1e30, overflowing, not a number
        {
            var x = Enumerable.Repeat(1f, bank.Dim).ToArray();
            x[3] = value;
            var (viaIndex, scanned) = (new int[3], new int[3]);
            var (score, expected) = (bank.Score(x, 0, viaIndex), full.Score(x, 0, scanned));
            Assert.Equal(expected, score);
            Assert.Equal(scanned, viaIndex);
        }
    }

    [Fact]
    public void Small_per_position_and_non_finite_banks_are_scanned_whole()
    {
        Assert.Null(MixtureBank(TokenBankIndex.MinEntries - 1, 8, 3, seed: 1).Index);
        Assert.Null((MixtureBank(4096, 8, 3, seed: 1) with { PositionStarts = [0, 4096] }).Index);
        var bank = MixtureBank(4096, 8, 3, seed: 1);
        bank.Vectors[77] = float.NaN;
        Assert.Null(bank.Index);
    }

    [Fact]
    public void Wide_tokens_far_from_the_origin_where_rounding_is_largest_still_match_the_full_scan()
    {
        // 128 channels around 1,000 each: |x|² is about 1.3e8 while neighbours lie about 1 apart, so the float sums
        // cancel almost everything. (No data built here needs the rounding allowance: without it these tests pass too.)
        var bank = MixtureBank(2048, 128, 3, seed: 21);
        for (var i = 0; i < bank.Vectors.Length; i++) bank.Vectors[i] += 1000;
        var full = bank with { FullScan = true };
        Assert.NotNull(bank.Index);
        foreach (var x in Queries(bank, 100, seed: 22).Where((_, q) => q % 5 is 0 or 1 or 2))
        {
            var (viaIndex, scanned) = (new int[3], new int[3]);
            Assert.Equal(full.Score(x, 0, scanned), bank.Score(x, 0, viaIndex));
            Assert.Equal(scanned, viaIndex);
        }
    }

    [Fact]
    public void A_copy_with_other_vectors_searches_its_own_vectors()
    {
        var bank = MixtureBank(2048, 8, 3, seed: 3);
        var x = Queries(bank, 1, seed: 4).Single();
        _ = bank.Score(x, 0);   // builds the index and the caches
        var moved = bank with { Vectors = bank.Vectors.Select(v => v + 5).ToArray() };
        Assert.Equal((moved with { FullScan = true }).Score(x, 0), moved.Score(x, 0));
        Assert.NotEqual(bank.Score(x, 0), moved.Score(x, 0));
    }

    [Fact]
    public void On_the_embedded_models_bank_real_images_score_as_with_the_full_scan()
    {
        var bank = shipped.Reference.Bank!;
        Assert.NotNull(bank.Index);
        var full = bank with { FullScan = true };
        var model = shipped.Model;
        int t = model.TokenCount, first = model.FirstPatchToken, k = bank.Neighbors;
        var pixels = Enumerable.Range(0, 40).SelectMany(i => shipped.TestSet.Image(i).Data.ToArray()).ToArray();
        // Half of them with a bright 6x6 square pasted in: tokens far from every clean one.
        for (var i = 0; i < 40; i += 2)
        {
            for (var r = 10; r < 16; r++)
            {
                for (var c = 12; c < 18; c++) pixels[(i * 784) + (r * 28) + c] = (r + c) % 2;
            }
        }

        var tokens = model.Embed(pixels, 40);
        for (var i = 0; i < 40; i++)
        {
            var image = tokens.AsSpan(i * t * model.Dim, t * model.Dim);
            var (scores, expected) = (new double[t], new double[t]);
            var (nearest, scanned) = (new int[t * k], new int[t * k]);
            bank.ScoreImage(image, first, scores, nearest);
            full.ScoreImage(image, first, expected, scanned);
            Assert.Equal(expected, scores);
            Assert.Equal(scanned, nearest);
        }
    }

    private static double Norm(float[] v) => Math.Sqrt(v.Sum(a => (double)a * a));

    [Fact]
    public void On_clean_test_images_a_token_reads_a_small_share_of_the_embedded_models_bank()
    {
        // docs/BENCHMARKS.md, session 23 (the figures it gives are this test's output: --logger "console;verbosity=detailed").
        const int images = 300;
        var bank = shipped.Reference.Bank!;
        var index = bank.Index!;
        var model = shipped.Model;
        int t = model.TokenCount, d = model.Dim;
        var tokens = model.Embed(Enumerable.Range(0, images).SelectMany(i => shipped.TestSet.Image(i).Data.ToArray()).ToArray(), images);
        var read = new List<double>();
        for (var i = 0; i < images; i++)
        {
            for (var p = model.FirstPatchToken; p < t; p++)
            {
                // EntriesRead takes a token at position 0: move the content there.
                var token = Enumerable.Range(0, d).Select(c => tokens[(((i * t) + p) * d) + c] - bank.Offset[p][c] + bank.Offset[0][c]).ToArray();
                read.Add(index.EntriesRead(token, bank) / (double)bank.Count);
            }
        }

        read.Sort();
        output.WriteLine($"{read.Count} tokens of {images} test images read {read.Average():P1} of the bank on average, median {read[read.Count / 2]:P1}, 90th percentile {read[(int)(read.Count * 0.9)]:P1}, at most {read[^1]:P1} (padding included)");
        Assert.InRange(read.Average(), 0.01, 0.2);
    }

    /// <summary>Whether an entry other than the k found lies at exactly the k-th distance (computed in double; the data are small integers).</summary>
    private static int DistanceTies(TokenBank bank, float[] x, int[] found)
    {
        double Distance(int j)
        {
            double sq = 0;
            for (var c = 0; c < bank.Dim; c++)
            {
                var diff = x[c] - (double)bank.Offset[0][c] - bank.Vectors[(j * bank.Dim) + c];
                sq += diff * diff;
            }

            return sq;
        }

        var kth = Distance(found[^1]);
        return Enumerable.Range(0, bank.Count).Any(j => !found.Contains(j) && Distance(j) == kth) ? 1 : 0;
    }
}
