using System.Text.Json.Serialization;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Defense;

/// <summary>Clean token statistics per position (class token included in the arrays, never scored).</summary>
public sealed record TokenReference
{
    public required double Temperature { get; init; }

    public required int TokenCount { get; init; }

    public required int Dim { get; init; }

    /// <summary>q_t: mean of softmax(z_t / T) over clean images, <c>[T][D]</c>.</summary>
    public required float[][] Distribution { get; init; }

    /// <summary>c_t: mean clean token, <c>[T][D]</c>.</summary>
    public required float[][] Center { get; init; }

    /// <summary>Mean L2 norm of clean tokens, <c>[T]</c>.</summary>
    public required float[] Norm { get; init; }

    /// <summary>The clean-score quantile per position, <c>[T]</c>: the per-position threshold before scaling.</summary>
    public required float[] Threshold { get; init; }

    /// <summary>The bank of clean token contents behind the k-nearest-neighbour score, if calibrated with one.</summary>
    public TokenBank? Bank { get; init; }

    /// <summary>Per-position thresholds of the bank score, <c>[T]</c>, set for <see cref="BankFalsePositiveRate"/>.</summary>
    public float[]? BankThreshold { get; init; }

    /// <summary>Share of clean calibration images (scored leave-one-image-out) with a token over its bank threshold.</summary>
    public double BankFalsePositiveRate { get; init; }

    /// <summary>
    /// With <see cref="BankSettings.FprFolds"/>: the share of fresh clean images estimated to have a token over its bank
    /// threshold (cross-fitted over the calibration images' folds), at the rate chosen for it, so a little optimistic;
    /// null when calibrated without folds.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? BankFreshRate { get; init; }

    /// <summary>With <see cref="BankSettings.FprFolds"/>: the rate the thresholds were set for on the calibration images, chosen for <see cref="BankFreshRate"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? BankNominalRate { get; init; }

    /// <summary>The thresholds of <paramref name="score"/>.</summary>
    public float[] ThresholdsFor(TokenScore score) => score == TokenScore.Knn
        ? BankThreshold ?? throw new InvalidOperationException("The calibration has no token bank; run `strapvit calibrate` again.")
        : Threshold;

    /// <summary>
    /// Scores one image's tokens <c>[T*D]</c> with <paramref name="score"/>; for the bank score, the k nearest bank
    /// entries of each token go to <paramref name="nearest"/> <c>[T*k]</c> when given.
    /// </summary>
    public void Score(ReadOnlySpan<float> tokens, Span<double> scores, TokenScore score, int firstPatchToken, Span<int> nearest = default)
    {
        if (score == TokenScore.Jsd)
        {
            Score(tokens, scores);
            return;
        }

        var bank = Bank ?? throw new InvalidOperationException("The calibration has no token bank; run `strapvit calibrate` again.");
        scores[..firstPatchToken].Clear();
        bank.ScoreImage(tokens[..(TokenCount * Dim)], firstPatchToken, scores, nearest);
    }

    internal static TokenReference Compute(TokenSpaceModel model, IReadOnlyList<ImageTensor> images, double temperature, double quantile, BankSettings? bankSettings)
    {
        int t = model.TokenCount, d = model.Dim, n = images.Count;
        var all = EmbedAll(model, images);
        var dist = NewJagged(t, d);
        var center = NewJagged(t, d);
        var norm = new float[t];
        var p = new double[d];
        for (var i = 0; i < n; i++)
        {
            for (var k = 0; k < t; k++)
            {
                var z = all.AsSpan(((i * t) + k) * d, d);
                JensenShannon.Softmax(z, temperature, p);
                double sq = 0;
                for (var c = 0; c < d; c++)
                {
                    dist[k][c] += (float)(p[c] / n);
                    center[k][c] += z[c] / n;
                    sq += z[c] * (double)z[c];
                }

                norm[k] += (float)(Math.Sqrt(sq) / n);
            }
        }

        var reference = new TokenReference
        {
            Temperature = temperature,
            TokenCount = t,
            Dim = d,
            Distribution = dist,
            Center = center,
            Norm = norm,
            Threshold = new float[t],
        };
        var perPosition = Enumerable.Range(0, t).Select(_ => new List<double>(n)).ToArray();
        var scores = new double[t];
        for (var i = 0; i < n; i++)
        {
            reference.Score(all.AsSpan(i * t * d, t * d), scores);
            for (var k = 0; k < t; k++)
            {
                perPosition[k].Add(scores[k]);
            }
        }

        for (var k = 0; k < t; k++)
        {
            reference.Threshold[k] = DefenseCalibration.QuantileOf(perPosition[k], quantile);
        }

        return bankSettings is null ? reference : WithBank(reference, model, all, n, bankSettings);
    }

    /// <summary>
    /// Adds the bank: offsets from a blank image, a coreset of all clean patch-token contents, and thresholds from
    /// leave-one-image-out scores of the clean tokens (a token is never scored against bank entries of its own image).
    /// Each position's threshold is its <see cref="BankSettings.PositionQuantile"/> of clean scores, scaled by one
    /// factor chosen so that <see cref="BankSettings.FalsePositiveRate"/> of clean images have a token over threshold.
    /// </summary>
    private static TokenReference WithBank(TokenReference reference, TokenSpaceModel model, float[] all, int n, BankSettings settings)
    {
        int t = model.TokenCount, d = model.Dim, first = model.FirstPatchToken, patches = t - first;
        var blank = model.Embed(new float[model.Manifest.Input.Size], 1);
        var offset = Enumerable.Range(0, t).Select(k => blank.AsSpan(k * d, d).ToArray()).ToArray();
        var contents = new float[n * patches * d];
        for (var i = 0; i < n; i++)
        {
            for (var k = first; k < t; k++)
            {
                var row = ((i * patches) + (k - first)) * d;
                for (var c = 0; c < d; c++)
                {
                    contents[row + c] = all[(((i * t) + k) * d) + c] - offset[k][c];
                }
            }
        }

        var images = Enumerable.Range(0, n).ToArray();
        var (bank, source) = BuildBank(contents, images, patches, d, offset, settings, t, first);
        var scores = ScoresOf(bank, source, all, images, t, d, first);
        var rate = settings.FalsePositiveRate;
        double? fresh = null;
        if (settings.FprFolds is 1 or < 0) throw new ArgumentOutOfRangeException(nameof(settings), settings.FprFolds, "FprFolds is 0 or at least 2.");
        if (settings.FprFolds > 1 && n >= settings.FprFolds * BankSettings.MinImagesPerFold)
        {
            (rate, fresh) = RateForFreshImages(contents, all, n, patches, d, offset, settings, t, first);
        }

        var threshold = ThresholdsOf(scores, first, patches, settings.PositionQuantile)(rate);
        var flagged = Flagged(scores, threshold, first, patches);
        return reference with
        {
            Bank = bank, BankThreshold = threshold, BankFalsePositiveRate = flagged / (double)n, BankFreshRate = fresh,
            BankNominalRate = fresh is null ? null : rate,
        };
    }

    /// <summary>
    /// The bank of <paramref name="images"/>' clean contents (<c>contents</c> holds all images', <c>[N*P*D]</c>): a
    /// coreset pooled over positions, or each position's own; and for each entry, the image it came from.
    /// </summary>
    private static (TokenBank Bank, int[] Source) BuildBank(float[] contents, int[] images, int patches, int d, float[][] offset, BankSettings settings, int t, int first)
    {
        var n = images.Length;
        var rowOf = images.SelectMany(i => Enumerable.Range(i * patches, patches)).ToArray();   // subset row -> row of contents
        int[] chosen;
        int[]? starts = null;
        if (settings.PerPosition)
        {
            // Each position's own coreset, its share of the bank's entries, grouped by position.
            var perPosition = Math.Max(settings.Neighbors + 1, settings.EntriesFor(d) / patches);
            var picked = new List<int>();
            starts = new int[t + 1];
            for (var k = 0; k < t; k++)
            {
                starts[k] = picked.Count;
                if (k < first) continue;
                var rows = Enumerable.Range(0, n).Select(i => rowOf[(i * patches) + (k - first)]).ToArray();
                var points = new float[n * d];
                for (var i = 0; i < n; i++) contents.AsSpan(rows[i] * d, d).CopyTo(points.AsSpan(i * d, d));
                picked.AddRange(TokenBank.Coreset(points, d, Math.Min(perPosition, n), settings.Seed + k).Select(i => rows[i]));
            }

            starts[t] = picked.Count;
            chosen = picked.ToArray();
        }
        else
        {
            var subset = contents;
            if (n * patches * d != contents.Length)
            {
                subset = new float[n * patches * d];
                for (var r = 0; r < rowOf.Length; r++) contents.AsSpan(rowOf[r] * d, d).CopyTo(subset.AsSpan(r * d, d));
            }

            chosen = TokenBank.Coreset(subset, d, settings.EntriesFor(d), settings.Seed).Select(r => rowOf[r]).ToArray();
        }

        var vectors = new float[chosen.Length * d];
        var source = new int[chosen.Length];
        for (var j = 0; j < chosen.Length; j++)
        {
            contents.AsSpan(chosen[j] * d, d).CopyTo(vectors.AsSpan(j * d, d));
            source[j] = chosen[j] / patches;
        }

        return (new TokenBank { Dim = d, Neighbors = settings.Neighbors, Offset = offset, Vectors = vectors, PositionStarts = starts }, source);
    }

    /// <summary>
    /// Scores <c>[images, T]</c> of <paramref name="images"/>' tokens, each never against bank entries of its own image:
    /// leave-one-out for images in the bank, plain scores for images outside it.
    /// </summary>
    private static double[,] ScoresOf(TokenBank bank, int[] source, float[] all, int[] images, int t, int d, int first)
    {
        var scores = new double[images.Length, t];
        Parallel.For(0, images.Length, i =>
        {
            var image = images[i];
            for (var k = first; k < t; k++)
            {
                scores[i, k] = bank.Score(all.AsSpan(((image * t) + k) * d, d), k, default, j => source[j] == image);
            }
        });
        return scores;
    }

    /// <summary>
    /// Per-position thresholds for any rate: each position's <paramref name="quantile"/> of clean
    /// <paramref name="scores"/>, times one factor chosen so that the rate's share of the images have a token over.
    /// The quantiles and each image's worst ratio are computed once; a rate only picks the factor.
    /// </summary>
    private static Func<double, float[]> ThresholdsOf(double[,] scores, int first, int patches, double quantile)
    {
        int n = scores.GetLength(0), t = scores.GetLength(1);
        var scale = new float[t];
        for (var k = first; k < t; k++)
        {
            scale[k] = DefenseCalibration.QuantileOf(Enumerable.Range(0, n).Select(i => scores[i, k]).ToList(), quantile);
        }

        var worst = Enumerable.Range(0, n)
            .Select(i => Enumerable.Range(first, patches).Max(k => scores[i, k] / Math.Max(scale[k], 1e-12)))
            .ToList();
        return rate =>
        {
            var factor = DefenseCalibration.QuantileOf(worst, 1 - rate);
            return scale.Select(s => s * factor).ToArray();
        };
    }

    /// <summary>How many images of <paramref name="scores"/> have a token over its <paramref name="threshold"/>.</summary>
    private static int Flagged(double[,] scores, float[] threshold, int first, int patches) =>
        Enumerable.Range(0, scores.GetLength(0)).Count(i => Enumerable.Range(first, patches).Any(k => scores[i, k] > threshold[k]));

    /// <summary>
    /// <see cref="BankSettings.FprFolds"/>: the calibration rate whose thresholds flag at most
    /// <see cref="BankSettings.FalsePositiveRate"/> of fresh clean images. Leave-one-out scores come out lower than a
    /// fresh image's, because the coreset was built from the scored images themselves. So each fold of the images
    /// (image i in fold i mod F) is scored as fresh against a bank built from the other folds, with thresholds set on
    /// those folds leave-one-out, as the full calibration sets them. Thresholds are only ever applied with the bank
    /// they came from: background tokens all score alike, at distances that differ from one coreset to the next.
    /// Returns the largest rate on a grid of 0.005 steps down to half the target whose pooled fresh share is within the
    /// target (else the smallest), and that share.
    /// </summary>
    private static (double Rate, double Fresh) RateForFreshImages(float[] contents, float[] all, int n, int patches, int d, float[][] offset, BankSettings settings,
        int t, int first)
    {
        var target = settings.FalsePositiveRate;
        var grid = Enumerable.Range(0, (int)Math.Floor((target / 2) / 0.005) + 1).Select(g => Math.Round(target - (g * 0.005), 6)).ToArray();
        var flaggedAt = new int[grid.Length];
        var folds = settings.FprFolds;
        for (var f = 0; f < folds; f++)
        {
            var train = Enumerable.Range(0, n).Where(i => i % folds != f).ToArray();
            var test = Enumerable.Range(0, n).Where(i => i % folds == f).ToArray();
            var (bank, source) = BuildBank(contents, train, patches, d, offset, settings, t, first);
            var loo = ScoresOf(bank, source, all, train, t, d, first);
            var fresh = ScoresOf(bank, source, all, test, t, d, first);   // not in this bank: scored as fresh images
            var thresholdsFor = ThresholdsOf(loo, first, patches, settings.PositionQuantile);
            for (var g = 0; g < grid.Length; g++) flaggedAt[g] += Flagged(fresh, thresholdsFor(grid[g]), first, patches);
        }

        var chosen = Array.FindIndex(flaggedAt, c => c <= target * n);
        if (chosen < 0) chosen = grid.Length - 1;
        return (grid[chosen], flaggedAt[chosen] / (double)n);
    }

    /// <summary>Jensen-Shannon distance of each token of one image <c>[T*D]</c> to its position's reference.</summary>
    public void Score(ReadOnlySpan<float> tokens, Span<double> scores)
    {
        Span<double> p = Dim <= 1024 ? stackalloc double[Dim] : new double[Dim];
        Span<double> qd = Dim <= 1024 ? stackalloc double[Dim] : new double[Dim];
        for (var k = 0; k < TokenCount; k++)
        {
            JensenShannon.Softmax(tokens.Slice(k * Dim, Dim), Temperature, p);
            var q = Distribution[k];
            for (var c = 0; c < Dim; c++)
            {
                qd[c] = q[c];
            }

            scores[k] = JensenShannon.Distance(p, qd);
        }
    }

    private static float[] EmbedAll(TokenSpaceModel model, IReadOnlyList<ImageTensor> images)
    {
        const int Batch = 64;
        var size = model.Manifest.Input.Size;
        var perImage = model.TokenCount * model.Dim;
        var result = new float[images.Count * perImage];
        for (var start = 0; start < images.Count; start += Batch)
        {
            var n = Math.Min(Batch, images.Count - start);
            var pixels = new float[n * size];
            for (var i = 0; i < n; i++)
            {
                images[start + i].Data.CopyTo(pixels, i * size);
            }

            model.Embed(pixels, n).CopyTo(result, start * perImage);
        }

        return result;
    }

    private static float[][] NewJagged(int rows, int cols) => Enumerable.Range(0, rows).Select(_ => new float[cols]).ToArray();
}

/// <summary>How the token bank is built at calibration.</summary>
/// <param name="Size">
/// Coreset entries kept (bounds memory and the search: one <c>[T, D] x [D, Size]</c> product per image). Null: the
/// automatic size, <see cref="DefaultEntries"/> entries or fewer for wide tokens, so that the bank holds at most
/// <see cref="AutoValueBudget"/> values (64-wide tokens: 8,192 entries; ViT-B/16's 768-wide: 1,365, about 4 MB).
/// </param>
/// <param name="Neighbors">k: nearest entries averaged into a score.</param>
/// <param name="FalsePositiveRate">Target share of clean images with any token over its threshold.</param>
/// <param name="PositionQuantile">Quantile of clean scores that sets each position's threshold before the common factor.</param>
/// <param name="Seed">Seed of the coreset's first pick and projection.</param>
/// <param name="PerPosition">
/// One bank per position instead of one pooled over positions: each position keeps its share of the entries (a
/// coreset of its own clean contents), and a token is compared only with those.
/// </param>
/// <param name="FprFolds">
/// 0: <paramref name="FalsePositiveRate"/> is the share of calibration images flagged (scored leave-one-out). 2 or more:
/// it is the share of fresh clean images, estimated by cross-fitting over that many folds of the calibration images,
/// and the thresholds are set for the rate on the calibration images that meets it (given at least
/// <see cref="MinImagesPerFold"/> images per fold; with fewer, as with 0).
/// </param>
public sealed record BankSettings(int? Size = null, int Neighbors = 3, double FalsePositiveRate = 0.3, double PositionQuantile = 0.95, int Seed = 0, bool PerPosition = false,
    int FprFolds = 0)
{
    /// <summary>Entries of the automatic size where the tokens are narrow enough.</summary>
    public const int DefaultEntries = 8192;

    /// <summary>Calibration images per fold that <see cref="FprFolds"/> needs; with fewer, the rate is taken leave-one-out.</summary>
    public const int MinImagesPerFold = 20;

    /// <summary>Values (entries x token width) the automatic size keeps the bank under.</summary>
    public const int AutoValueBudget = 1 << 20;

    /// <summary>The entries kept for tokens <paramref name="dim"/> wide: <see cref="Size"/>, or the automatic size.</summary>
    public int EntriesFor(int dim) => Size ?? Math.Clamp(AutoValueBudget / Math.Max(1, dim), 16, DefaultEntries);
}
