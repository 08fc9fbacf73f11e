using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace StrapVit.Core.Defense;

/// <summary>
/// A bounded memory bank of clean token contents, PatchCore-style (Roth et al., "Towards Total Recall in Industrial
/// Anomaly Detection", arXiv 2106.08265): a token's anomaly score is its mean Euclidean distance to its
/// <see cref="Neighbors"/> nearest bank entries. The bank is pooled over positions: every token has its position's
/// offset subtracted first, the tokens of a blank (all-zero) image, which for a linear patch embedding is exactly the
/// position embedding plus the embedding of a blank patch, so what remains is the content alone and clean contents
/// from every position enrich one bank. Greedy coreset (k-center) subsampling bounds it to a stated size; the
/// nearest-neighbour search is one matrix product against it. With <see cref="PositionStarts"/> the bank is per
/// position instead: a token is compared only with clean contents seen at its own position.
/// </summary>
public sealed record TokenBank
{
    public TokenBank()
    {
    }

    /// <summary>
    /// The copy behind <c>with</c>: the settings and data, but none of the caches (squared norms, packed panels, index),
    /// which are rebuilt from the copy's own vectors on first use.
    /// </summary>
    private TokenBank(TokenBank original)
    {
        Dim = original.Dim;
        Neighbors = original.Neighbors;
        Offset = original.Offset;
        Vectors = original.Vectors;
        Search = original.Search;
        PositionStarts = original.PositionStarts;
        FullScan = original.FullScan;
    }

    public required int Dim { get; init; }

    /// <summary>k: neighbours averaged into a score.</summary>
    public required int Neighbors { get; init; }

    /// <summary>Per position <c>[T][D]</c>: the tokens of a blank image, subtracted before the search.</summary>
    public required float[][] Offset { get; init; }

    /// <summary>Coreset of clean token contents, <c>[M*D]</c> row-major, stored as base64 float32.</summary>
    [JsonConverter(typeof(Base64FloatsConverter))]
    public required float[] Vectors { get; init; }

    /// <summary>
    /// The same search on the model's execution provider (set when the model runs on a GPU), or null: the CPU kernel
    /// below. Not part of the calibration file.
    /// </summary>
    [JsonIgnore]
    public BankSearch? Search { get; init; }

    /// <summary>
    /// Per position <c>[T+1]</c>, or null for a pooled bank: the entries of position p are
    /// <c>PositionStarts[p] .. PositionStarts[p+1] - 1</c>, and a token at p is searched against those only.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int[]? PositionStarts { get; init; }

    /// <summary>Entries in the bank.</summary>
    [JsonIgnore]
    public int Count => Vectors.Length / Dim;

    [JsonIgnore]
    internal float[] SquaredNorms => field ??= ComputeSquaredNorms(Vectors, Dim);

    /// <summary>
    /// Scan the whole bank for every token instead of going through its <see cref="TokenBankIndex"/> (the same results;
    /// for tests and benchmarks). Not part of the calibration file.
    /// </summary>
    [JsonIgnore]
    public bool FullScan { get; init; }

    /// <summary>
    /// The clustered index of a large pooled bank (built on first use, about 2 ms for 8,192 entries), or null. The box
    /// caches a null too; threads that race on first use may each build one, and every one is the same.
    /// </summary>
    [JsonIgnore]
    internal TokenBankIndex? Index => FullScan ? null : (indexBox ??= new StrongBox<TokenBankIndex?>(TokenBankIndex.For(this))).Value;

    private StrongBox<TokenBankIndex?>? indexBox;

    /// <summary>
    /// Scores token <paramref name="position"/>'s content: the mean distance of <c>z - offset</c> to its k nearest bank
    /// entries, whose indices go to <paramref name="nearest"/> (length k, nearest first) when given.
    /// <paramref name="exclude"/> skips bank entries (leave-one-out at calibration).
    /// </summary>
    public double Score(ReadOnlySpan<float> token, int position, Span<int> nearest = default, Func<int, bool>? exclude = null)
    {
        Span<float> x = Dim <= 1024 ? stackalloc float[Dim] : new float[Dim];
        var offset = Offset[position];
        for (var c = 0; c < Dim; c++)
        {
            x[c] = token[c] - offset[c];
        }

        return PositionStarts is { } starts
            ? ScoreAtPosition(x, starts[position], starts[position + 1], nearest, exclude)
            : ScoreContent(x, Math.Min(Neighbors, Count), nearest, exclude);
    }

    /// <summary>
    /// The per-position search: content <paramref name="x"/> against entries <paramref name="from"/> .. <paramref name="to"/> - 1,
    /// one entry at a time (about 500 entries of a position, not the whole bank). Indices in <paramref name="nearest"/> are the bank's.
    /// </summary>
    private double ScoreAtPosition(ReadOnlySpan<float> x, int from, int to, Span<int> nearest, Func<int, bool>? exclude)
    {
        var k = Math.Min(Neighbors, to - from);
        if (k <= 0) throw new InvalidOperationException("The token bank has no entry at this position.");
        var acc = Scratch(to - from);
        var norms = SquaredNorms;
        for (var j = from; j < to; j++)
        {
            acc[j - from] = norms[j] - (2 * Dot(x, Vectors.AsSpan(j * Dim, Dim)));
        }

        Span<int> local = stackalloc int[k];
        var score = Nearest(acc, Dot(x, x), k, local, exclude is null ? null : j => exclude(j + from));
        if (!nearest.IsEmpty)
        {
            for (var i = 0; i < Math.Min(k, nearest.Length); i++) nearest[i] = local[i] < 0 ? -1 : local[i] + from;
        }

        return score;
    }

    /// <summary>Bank entry <paramref name="index"/> put back at <paramref name="position"/> (offset added).</summary>
    public void Restore(int index, int position, Span<float> destination)
    {
        var v = Vectors.AsSpan(index * Dim, Dim);
        var offset = Offset[position];
        for (var c = 0; c < Dim; c++)
        {
            destination[c] = v[c] + offset[c];
        }
    }

    /// <summary>
    /// d score / d token for token content at <paramref name="position"/> with its neighbours held fixed:
    /// the mean of the unit vectors from each neighbour to the token (the adaptive attacker's detector gradient).
    /// </summary>
    public void ScoreGradient(ReadOnlySpan<float> token, int position, ReadOnlySpan<int> nearest, Span<float> gradient)
    {
        gradient.Clear();
        var offset = Offset[position];
        foreach (var j in nearest)
        {
            var b = Vectors.AsSpan(j * Dim, Dim);
            double sq = 0;
            for (var c = 0; c < Dim; c++)
            {
                var diff = token[c] - offset[c] - b[c];
                sq += diff * (double)diff;
            }

            var norm = Math.Sqrt(sq);
            if (norm <= 1e-12) continue;
            for (var c = 0; c < Dim; c++)
            {
                gradient[c] += (float)((token[c] - offset[c] - b[c]) / norm / nearest.Length);
            }
        }
    }

    private double ScoreContent(ReadOnlySpan<float> x, int k, Span<int> nearest, Func<int, bool>? exclude)
    {
        // d²_j = |x|² − 2 x·b_j + |b_j|², all j at once, then one pass keeps the k smallest.
        var xx = Dot(x, x);
        if (Index is { } index && TokenBankIndex.Applies(xx))
        {
            // Through the index: the centres' distances first, then only the clusters that can hold a nearest entry.
            var part = Scratch(Dim + index.Clusters);
            var minus2x = part[..Dim];
            for (var c = 0; c < Dim; c++) minus2x[c] = -2 * x[c];
            var centreAcc = part.Slice(Dim, index.Clusters);
            Accumulate(minus2x, 1, centreAcc, Dim, index.CentreVectors, index.CentreNorms, index.CentrePanels);
            return index.Nearest(minus2x, xx, centreAcc, k, nearest, exclude);
        }

        var scratch = Scratch(Dim + Count);
        var scaled = scratch[..Dim];
        for (var c = 0; c < Dim; c++) scaled[c] = -2 * x[c];
        var acc = scratch.Slice(Dim, Count);
        AccumulateBank(scaled, 1, acc);
        return Nearest(acc, xx, k, nearest, exclude);
    }

    /// <summary>
    /// Scores the tokens <paramref name="first"/> .. T − 1 of one image <c>[T*D]</c> into <paramref name="scores"/>
    /// (the others are left alone), with their nearest entries in <paramref name="nearest"/> <c>[T*k]</c> when given:
    /// the same numbers as <see cref="Score"/> token by token, four tokens at a time through the bank.
    /// </summary>
    public void ScoreImage(ReadOnlySpan<float> tokens, int first, Span<double> scores, Span<int> nearest = default)
    {
        if (Search is { } onDevice)
        {
            onDevice.ScoreImage(tokens, first, scores, nearest);
            return;
        }

        if (PositionStarts is not null)
        {
            for (var p = first; p < tokens.Length / Dim; p++)
            {
                scores[p] = Score(tokens.Slice(p * Dim, Dim), p, nearest.IsEmpty ? default : nearest.Slice(p * Neighbors, Neighbors));
            }

            return;
        }

        // Every token's sums against the whole bank, or with the index against its centres only (four tokens at a
        // time either way); then each token's k nearest from its row, or from the clusters its row does not rule out.
        var index = Index;
        int d = Dim, m = Count, t = tokens.Length / d, k = Math.Min(Neighbors, m), n = t - first, columns = index?.Clusters ?? m;
        if (n <= 0) return;
        var scratch = Scratch(n * ((2 * d) + columns));
        var content = scratch[..(n * d)];
        var scaled = scratch.Slice(n * d, n * d);
        var acc = scratch.Slice(2 * n * d, n * columns);
        Contents(tokens, first, content);
        for (var c = 0; c < scaled.Length; c++) scaled[c] = -2 * content[c];

        if (index is null) AccumulateBank(scaled, n, acc);
        else Accumulate(scaled, n, acc, d, index.CentreVectors, index.CentreNorms, index.CentrePanels);
        for (var i = 0; i < n; i++)
        {
            var x = content.Slice(i * d, d);
            var xx = Dot(x, x);
            var row = acc.Slice(i * columns, columns);
            var into = nearest.IsEmpty ? default : nearest.Slice((first + i) * Neighbors, Neighbors);
            if (index is null)
            {
                scores[first + i] = Nearest(row, xx, k, into, null);
            }
            else if (TokenBankIndex.Applies(xx))
            {
                scores[first + i] = index.Nearest(scaled.Slice(i * d, d), xx, row, k, into, null);
            }
            else
            {
                // Not finite, or too large for the bound: the full scan, as without the index.
                var full = new float[m];
                AccumulateBank(scaled.Slice(i * d, d), 1, full);
                scores[first + i] = Nearest(full, xx, k, into, null);
            }
        }
    }

    /// <summary>Tokens <paramref name="first"/> .. T − 1 of one image with their positions' offsets subtracted: what the bank is searched for.</summary>
    internal void Contents(ReadOnlySpan<float> tokens, int first, Span<float> destination)
    {
        for (var i = first; i < tokens.Length / Dim; i++)
        {
            var z = tokens.Slice(i * Dim, Dim);
            var offset = Offset[i];
            var content = destination.Slice((i - first) * Dim, Dim);
            for (var c = 0; c < Dim; c++) content[c] = z[c] - offset[c];
        }
    }

    /// <summary>
    /// This thread's scratch buffer, at least <paramref name="length"/> floats, kept between calls: renting 200 KB per
    /// image from the shared array pool measured 3-4x slower once other code (the masking check's encoder batches)
    /// had used the pool.
    /// </summary>
    internal static Span<float> Scratch(int length) =>
        (t_scratch is { } kept && kept.Length >= length ? kept : t_scratch = new float[length]).AsSpan(0, length);

    [ThreadStatic]
    private static float[]? t_scratch;

    /// <summary>
    /// <c>acc[i][j] = |b_j|² + Σ_c scaled[i][c]·b_j[c]</c> for <paramref name="n"/> tokens, summed over c in channel
    /// order with a multiply then an add. Four tokens at a time keep their partial sums for two vectors of entries in
    /// registers over all channels (eight accumulators), so each panel of the bank is read once per four tokens and
    /// each token's channel once per two panels. Every sum takes the same operations in the same order however the
    /// loops are tiled, so the result does not depend on the tiling, bit for bit.
    /// </summary>
    private void AccumulateBank(ReadOnlySpan<float> scaled, int n, Span<float> acc) =>
        Accumulate(scaled, n, acc, Dim, Vectors, SquaredNorms, Packed);

    /// <summary>
    /// The sums above against any <paramref name="vectors"/>
    /// <c>[M*D]</c> with their <paramref name="norms"/> and their <see cref="Pack"/>ed panels (the bank itself, or the
    /// centres of its <see cref="TokenBankIndex"/>).
    /// </summary>
    internal static void Accumulate(ReadOnlySpan<float> scaled, int n, Span<float> acc, int d, ReadOnlySpan<float> vectors, ReadOnlySpan<float> norms, ReadOnlySpan<float> packed)
    {
        int m = norms.Length, w = Vector<float>.Count;
        var blocks = Vector.IsHardwareAccelerated ? m / w : 0;
        var normVectors = MemoryMarshal.Cast<float, Vector<float>>(norms[..(blocks * w)]);
        var panels = MemoryMarshal.Cast<float, Vector<float>>(packed[..(blocks * w * d)]);
        var i = 0;
        for (; i + 4 <= n; i += 4)
        {
            // Refs into bounds-checked slices: the four tokens' channels, and below two panels' worth of the bank.
            ref var s0 = ref MemoryMarshal.GetReference(scaled.Slice(i * d, 4 * d));
            ref var s1 = ref Unsafe.Add(ref s0, d);
            ref var s2 = ref Unsafe.Add(ref s0, 2 * d);
            ref var s3 = ref Unsafe.Add(ref s0, 3 * d);
            var r0 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice(i * m, blocks * w));
            var r1 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice((i + 1) * m, blocks * w));
            var r2 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice((i + 2) * m, blocks * w));
            var r3 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice((i + 3) * m, blocks * w));
            var v = 0;
            for (; v + 2 <= blocks; v += 2)
            {
                Vector<float> a0 = normVectors[v], a1 = a0, a2 = a0, a3 = a0;
                Vector<float> b0 = normVectors[v + 1], b1 = b0, b2 = b0, b3 = b0;
                ref var panelA = ref MemoryMarshal.GetReference(panels.Slice(v * d, 2 * d));
                ref var panelB = ref Unsafe.Add(ref panelA, d);
                for (var c = 0; c < d; c++)
                {
                    var colA = Unsafe.Add(ref panelA, c);
                    var colB = Unsafe.Add(ref panelB, c);
                    var x0 = new Vector<float>(Unsafe.Add(ref s0, c));
                    var x1 = new Vector<float>(Unsafe.Add(ref s1, c));
                    var x2 = new Vector<float>(Unsafe.Add(ref s2, c));
                    var x3 = new Vector<float>(Unsafe.Add(ref s3, c));
                    a0 += x0 * colA;
                    b0 += x0 * colB;
                    a1 += x1 * colA;
                    b1 += x1 * colB;
                    a2 += x2 * colA;
                    b2 += x2 * colB;
                    a3 += x3 * colA;
                    b3 += x3 * colB;
                }

                (r0[v], r1[v], r2[v], r3[v]) = (a0, a1, a2, a3);
                (r0[v + 1], r1[v + 1], r2[v + 1], r3[v + 1]) = (b0, b1, b2, b3);
            }

            for (; v < blocks; v++)
            {
                Vector<float> a0 = normVectors[v], a1 = a0, a2 = a0, a3 = a0;
                var panel = panels.Slice(v * d, d);
                for (var c = 0; c < panel.Length; c++)
                {
                    var col = panel[c];
                    a0 += new Vector<float>(Unsafe.Add(ref s0, c)) * col;
                    a1 += new Vector<float>(Unsafe.Add(ref s1, c)) * col;
                    a2 += new Vector<float>(Unsafe.Add(ref s2, c)) * col;
                    a3 += new Vector<float>(Unsafe.Add(ref s3, c)) * col;
                }

                (r0[v], r1[v], r2[v], r3[v]) = (a0, a1, a2, a3);
            }
        }

        for (; i < n; i++)
        {
            var s0 = scaled.Slice(i * d, d);
            var r0 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice(i * m, blocks * w));
            for (var v = 0; v < blocks; v++)
            {
                var a0 = normVectors[v];
                var panel = panels.Slice(v * d, d);
                for (var c = 0; c < panel.Length; c++) a0 += new Vector<float>(s0[c]) * panel[c];
                r0[v] = a0;
            }
        }

        // Entries past the last whole vector (all of them without SIMD), one at a time, in the same order.
        for (var r = 0; r < n; r++)
        {
            var s = scaled.Slice(r * d, d);
            for (var j = blocks * w; j < m; j++)
            {
                var a = norms[j];
                var b = vectors.Slice(j * d, d);
                for (var c = 0; c < d; c++) a += s[c] * b[c];
                acc[(r * m) + j] = a;
            }
        }
    }

    /// <summary>
    /// The bank in panels of one vector's width of entries, channel by channel within a panel (<c>[M/W][D][W]</c>):
    /// what <see cref="Accumulate"/> reads front to back.
    /// </summary>
    [JsonIgnore]
    private float[] Packed => field ??= Pack(Vectors, Dim, Vector<float>.Count);

    internal static float[] Pack(float[] vectors, int dim, int width)
    {
        var m = vectors.Length / dim;
        var blocks = m / width;
        var result = new float[blocks * dim * width];
        for (var v = 0; v < blocks; v++)
        {
            for (var c = 0; c < dim; c++)
            {
                for (var lane = 0; lane < width; lane++) result[(((v * dim) + c) * width) + lane] = vectors[(((v * width) + lane) * dim) + c];
            }
        }

        return result;
    }

    /// <summary>The mean distance to the k nearest entries from <c>acc + |x|²</c>; their indices to <paramref name="nearest"/>.</summary>
    private static double Nearest(ReadOnlySpan<float> acc, float xx, int k, Span<int> nearest, Func<int, bool>? exclude)
    {
        Span<float> best = stackalloc float[k];
        Span<int> bestIndex = stackalloc int[k];
        best.Fill(float.PositiveInfinity);
        bestIndex.Fill(-1);
        var j = 0;
        if (Vector.IsHardwareAccelerated)
        {
            // A vector of entries none of which comes under the k-th best so far is passed over whole: the same test
            // as below, lane by lane (a NaN lane fails it and goes to the entry-by-entry scan, as it would there).
            int w = Vector<float>.Count;
            var shift = new Vector<float>(xx);
            var lanes = MemoryMarshal.Cast<float, Vector<float>>(acc);
            for (var v = 0; v < lanes.Length; v++)
            {
                if (Vector.GreaterThanOrEqualAll(lanes[v] + shift, new Vector<float>(best[k - 1]))) continue;
                for (var e = v * w; e < (v + 1) * w; e++) Insert(acc[e] + xx, e, best, bestIndex, exclude);
            }

            j = lanes.Length * w;
        }

        for (; j < acc.Length; j++) Insert(acc[j] + xx, j, best, bestIndex, exclude);

        return Mean(best, bestIndex, nearest);
    }

    /// <summary>The mean of the square roots of the k best squared distances (nearest first); their indices to <paramref name="nearest"/>.</summary>
    internal static double Mean(ReadOnlySpan<float> best, ReadOnlySpan<int> bestIndex, Span<int> nearest)
    {
        var k = best.Length;
        double sum = 0;
        for (var i = 0; i < k; i++)
        {
            sum += Math.Sqrt(Math.Max(best[i], 0f));
        }

        if (!nearest.IsEmpty)
        {
            bestIndex[..Math.Min(k, nearest.Length)].CopyTo(nearest);
        }

        return sum / k;
    }

    /// <summary>Entry <paramref name="j"/> at squared distance <paramref name="d2"/> into the sorted k best, unless it is no nearer than the k-th or excluded.</summary>
    private static void Insert(float d2, int j, Span<float> best, Span<int> bestIndex, Func<int, bool>? exclude)
    {
        var k = best.Length;
        if (d2 >= best[k - 1] || (exclude is not null && exclude(j))) return;
        var p = k - 1;
        while (p > 0 && best[p - 1] > d2)
        {
            best[p] = best[p - 1];
            bestIndex[p] = bestIndex[p - 1];
            p--;
        }

        best[p] = d2;
        bestIndex[p] = j;
    }

    internal static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var sum = Vector<float>.Zero;
        var i = 0;
        if (Vector.IsHardwareAccelerated && a.Length >= Vector<float>.Count)
        {
            var va = MemoryMarshal.Cast<float, Vector<float>>(a);
            var vb = MemoryMarshal.Cast<float, Vector<float>>(b);
            for (var v = 0; v < va.Length; v++)
            {
                sum += va[v] * vb[v];
            }

            i = va.Length * Vector<float>.Count;
        }

        var total = Vector.Sum(sum);
        for (; i < a.Length; i++)
        {
            total += a[i] * b[i];
        }

        return total;
    }

    private static float[] ComputeSquaredNorms(float[] vectors, int dim)
    {
        var norms = new float[vectors.Length / dim];
        for (var j = 0; j < norms.Length; j++)
        {
            var v = vectors.AsSpan(j * dim, dim);
            norms[j] = Dot(v, v);
        }

        return norms;
    }

    /// <summary>
    /// Greedy k-center coreset (PatchCore's subsampling): repeatedly takes the point farthest from those already
    /// taken, so the bank covers the clean contents with bounded radius. Distances are computed in a seeded random
    /// projection to at most 128 dimensions when the tokens are wider (Johnson-Lindenstrauss, as PatchCore does).
    /// Returns the indices of the chosen rows of <paramref name="points"/> <c>[N*D]</c>.
    /// </summary>
    public static int[] Coreset(float[] points, int dim, int size, int seed)
    {
        var n = points.Length / dim;
        if (size >= n)
        {
            return Enumerable.Range(0, n).ToArray();
        }

        var (space, width) = dim > 128 ? (Project(points, dim, 128, seed), 128) : (points, dim);
        var minDist = new float[n];
        Array.Fill(minDist, float.PositiveInfinity);
        var norms = new float[n];
        for (var i = 0; i < n; i++) norms[i] = Dot(space.AsSpan(i * width, width), space.AsSpan(i * width, width));
        var chosen = new int[size];
        var next = new Random(seed).Next(n);
        // The points in a few contiguous parts, each scanned on its own thread; the farthest point is the first of the
        // parts' own farthest (strictly greater wins, in part order), so the picks are those of one scan in index order.
        var parts = Math.Clamp(n / 4096, 1, Environment.ProcessorCount);
        var farthest = new (float Distance, int Index)[parts];
        for (var s = 0; s < size; s++)
        {
            chosen[s] = next;
            var centre = next;
            var cc = norms[centre];
            Parallel.For(0, parts, part =>
            {
                var c = space.AsSpan(centre * width, width);
                int from = (int)((long)n * part / parts), to = (int)((long)n * (part + 1) / parts);
                var (far, at) = (-1f, -1);
                for (var i = from; i < to; i++)
                {
                    var d2 = norms[i] - (2 * Dot(space.AsSpan(i * width, width), c)) + cc;
                    if (d2 < minDist[i]) minDist[i] = d2;
                    if (minDist[i] > far) (far, at) = (minDist[i], i);
                }

                farthest[part] = (far, at);
            });
            var best = -1f;
            foreach (var (distance, index) in farthest)
            {
                if (index >= 0 && distance > best) (best, next) = (distance, index);
            }
        }

        return chosen;
    }

    private static float[] Project(float[] points, int dim, int width, int seed)
    {
        var rng = new Random(seed + 1);
        var matrix = new float[dim * width];
        for (var i = 0; i < matrix.Length; i++)
        {
            // Box-Muller: Gaussian entries scaled so distances are preserved in expectation.
            var g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            matrix[i] = (float)(g / Math.Sqrt(width));
        }

        var n = points.Length / dim;
        var result = new float[n * width];
        Parallel.For(0, n, i =>
        {
            var p = points.AsSpan(i * dim, dim);
            for (var o = 0; o < width; o++)
            {
                float sum = 0;
                for (var c = 0; c < dim; c++) sum += p[c] * matrix[(c * width) + o];
                result[(i * width) + o] = sum;
            }
        });
        return result;
    }
}

/// <summary>float[] as base64 of its little-endian float32 bytes: a bank of thousands of tokens stays compact in JSON.</summary>
public sealed class Base64FloatsConverter : JsonConverter<float[]>
{
    public override float[] Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var bytes = reader.GetBytesFromBase64();
        return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    public override void Write(Utf8JsonWriter writer, float[] value, JsonSerializerOptions options) =>
        writer.WriteBase64StringValue(MemoryMarshal.AsBytes(value.AsSpan()));
}
