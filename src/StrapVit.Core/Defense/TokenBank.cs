using System.Numerics;
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
/// nearest-neighbour search is one matrix product against it.
/// </summary>
public sealed record TokenBank
{
    public required int Dim { get; init; }

    /// <summary>k: neighbours averaged into a score.</summary>
    public required int Neighbors { get; init; }

    /// <summary>Per position <c>[T][D]</c>: the tokens of a blank image, subtracted before the search.</summary>
    public required float[][] Offset { get; init; }

    /// <summary>Coreset of clean token contents, <c>[M*D]</c> row-major, stored as base64 float32.</summary>
    [JsonConverter(typeof(Base64FloatsConverter))]
    public required float[] Vectors { get; init; }

    /// <summary>Entries in the bank.</summary>
    [JsonIgnore]
    public int Count => Vectors.Length / Dim;

    [JsonIgnore]
    private float[] SquaredNorms => field ??= ComputeSquaredNorms(Vectors, Dim);

    /// <summary>
    /// Scores token <paramref name="position"/>'s content: the mean distance of <c>z - offset</c> to its k nearest bank
    /// entries, whose indices go to <paramref name="nearest"/> (length k, nearest first) when given.
    /// <paramref name="exclude"/> skips bank entries (leave-one-out at calibration).
    /// </summary>
    public double Score(ReadOnlySpan<float> token, int position, Span<int> nearest = default, Func<int, bool>? exclude = null)
    {
        var k = Math.Min(Neighbors, Count);
        Span<float> x = Dim <= 1024 ? stackalloc float[Dim] : new float[Dim];
        var offset = Offset[position];
        for (var c = 0; c < Dim; c++)
        {
            x[c] = token[c] - offset[c];
        }

        return ScoreContent(x, k, nearest, exclude);
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
        // d²_j = |x|² − 2 x·b_j + |b_j|², all j at once: |b|² plus one scaled column-row of the transposed bank per
        // channel (an axpy over the bank, vectorised), then one pass keeps the k smallest.
        var m = Count;
        var columns = Transposed;
        var rented = System.Buffers.ArrayPool<float>.Shared.Rent(m);
        try
        {
            var acc = rented.AsSpan(0, m);
            SquaredNorms.CopyTo(acc);
            for (var c = 0; c < Dim; c++)
            {
                Axpy(-2 * x[c], columns.AsSpan(c * m, m), acc);
            }

            return Nearest(acc, Dot(x, x), k, nearest, exclude);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Scores the tokens <paramref name="first"/> .. T − 1 of one image <c>[T*D]</c> into <paramref name="scores"/>
    /// (the others are left alone), with their nearest entries in <paramref name="nearest"/> <c>[T*k]</c> when given:
    /// the same numbers as <see cref="Score"/> token by token, bit for bit, faster. The partial products for four
    /// tokens and two runs of bank entries stay in registers over all channels, so each bank column is loaded once
    /// per four tokens instead of once per token with the running sums streamed through memory.
    /// </summary>
    public void ScoreImage(ReadOnlySpan<float> tokens, int first, Span<double> scores, Span<int> nearest = default)
    {
        int d = Dim, m = Count, t = tokens.Length / d, k = Math.Min(Neighbors, m), n = t - first;
        if (n <= 0) return;
        var columns = Transposed;
        var norms = SquaredNorms;
        // One scratch buffer per thread, kept: renting 200 KB per image from the shared pool measured 3-4x slower once
        // other code (the masking check's encoder batches) had used the pool.
        var scratch = t_scratch is { } kept && kept.Length >= (n * ((2 * d) + m)) ? kept : t_scratch = new float[n * ((2 * d) + m)];
        var content = scratch.AsSpan(0, n * d);
        var scaled = scratch.AsSpan(n * d, n * d);
        var acc = scratch.AsSpan(2 * n * d, n * m);
        for (var i = 0; i < n; i++)
        {
            var z = tokens.Slice((first + i) * d, d);
            var offset = Offset[first + i];
            for (var c = 0; c < d; c++)
            {
                content[(i * d) + c] = z[c] - offset[c];
                scaled[(i * d) + c] = -2 * content[(i * d) + c];
            }
        }

        AccumulateBlocked(scaled, n, d, columns, norms, m, acc);
        for (var i = 0; i < n; i++)
        {
            var x = content.Slice(i * d, d);
            scores[first + i] = Nearest(acc.Slice(i * m, m), Dot(x, x), k, nearest.IsEmpty ? default : nearest.Slice((first + i) * Neighbors, Neighbors), null);
        }
    }

    [ThreadStatic]
    private static float[]? t_scratch;

    /// <summary>
    /// <c>acc[i][j] = |b_j|² + Σ_c scaled[i][c]·B[c][j]</c>, summed over c in order with a multiply then an add, as
    /// <see cref="Axpy"/> does, so each sum is the per-token one to the bit.
    /// </summary>
    private void AccumulateBlocked(ReadOnlySpan<float> scaled, int n, int d, float[] columns, float[] norms, int m, Span<float> acc)
    {
        var w = Vector<float>.Count;
        var blocks = Vector.IsHardwareAccelerated ? m / w : 0;
        var packed = Packed;
        var normVectors = MemoryMarshal.Cast<float, Vector<float>>(norms.AsSpan(0, blocks * w));
        var panels = MemoryMarshal.Cast<float, Vector<float>>(packed.AsSpan(0, blocks * w * d));
        var i = 0;
        for (; i + 4 <= n; i += 4)
        {
            var s0 = scaled.Slice(i * d, d);
            var s1 = scaled.Slice((i + 1) * d, d);
            var s2 = scaled.Slice((i + 2) * d, d);
            var s3 = scaled.Slice((i + 3) * d, d);
            var r0 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice(i * m, blocks * w));
            var r1 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice((i + 1) * m, blocks * w));
            var r2 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice((i + 2) * m, blocks * w));
            var r3 = MemoryMarshal.Cast<float, Vector<float>>(acc.Slice((i + 3) * m, blocks * w));
            for (var v = 0; v < blocks; v++)
            {
                Vector<float> a0 = normVectors[v], a1 = a0, a2 = a0, a3 = a0;
                var panel = panels.Slice(v * d, d);
                for (var c = 0; c < panel.Length; c++)
                {
                    var col = panel[c];
                    a0 += new Vector<float>(s0[c]) * col;
                    a1 += new Vector<float>(s1[c]) * col;
                    a2 += new Vector<float>(s2[c]) * col;
                    a3 += new Vector<float>(s3[c]) * col;
                }

                (r0[v], r1[v], r2[v], r3[v]) = (a0, a1, a2, a3);
            }

            for (var r = i; r < i + 4; r++) ScalarTail(scaled.Slice(r * d, d), columns, norms, m, blocks * w, acc.Slice(r * m, m));
        }

        for (; i < n; i++)
        {
            var row = acc.Slice(i * m, m);
            norms.CopyTo(row);
            for (var c = 0; c < d; c++) Axpy(scaled[(i * d) + c], columns.AsSpan(c * m, m), row);
        }
    }

    /// <summary>
    /// The bank in panels of one vector's width of entries, channel by channel within a panel (<c>[M/W][D][W]</c>):
    /// what <see cref="AccumulateBlocked"/> reads front to back.
    /// </summary>
    [JsonIgnore]
    private float[] Packed => field ??= Pack(Vectors, Dim, Vector<float>.Count);

    private static float[] Pack(float[] vectors, int dim, int width)
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

    private static void ScalarTail(ReadOnlySpan<float> scaled, float[] columns, float[] norms, int m, int from, Span<float> row)
    {
        for (var j = from; j < m; j++)
        {
            var a = norms[j];
            for (var c = 0; c < scaled.Length; c++) a += scaled[c] * columns[(c * m) + j];
            row[j] = a;
        }
    }

    /// <summary>The mean distance to the k nearest entries from <c>acc + |x|²</c>; their indices to <paramref name="nearest"/>.</summary>
    private static double Nearest(ReadOnlySpan<float> acc, float xx, int k, Span<int> nearest, Func<int, bool>? exclude)
    {
        Span<float> best = stackalloc float[k];
        Span<int> bestIndex = stackalloc int[k];
        best.Fill(float.PositiveInfinity);
        bestIndex.Fill(-1);
        for (var j = 0; j < acc.Length; j++)
        {
            var d2 = acc[j] + xx;
            if (d2 >= best[k - 1] || (exclude is not null && exclude(j))) continue;
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

    /// <summary>The bank channel-major, <c>[D][M]</c>, for the vectorised search.</summary>
    [JsonIgnore]
    private float[] Transposed => field ??= Transpose(Vectors, Dim);

    private static float[] Transpose(float[] vectors, int dim)
    {
        var m = vectors.Length / dim;
        var result = new float[vectors.Length];
        for (var j = 0; j < m; j++)
        {
            for (var c = 0; c < dim; c++)
            {
                result[(c * m) + j] = vectors[(j * dim) + c];
            }
        }

        return result;
    }

    /// <summary><c>y += a·x</c>.</summary>
    private static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y)
    {
        var i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var vx = MemoryMarshal.Cast<float, Vector<float>>(x);
            var vy = MemoryMarshal.Cast<float, Vector<float>>(y);
            var va = new Vector<float>(a);
            for (var v = 0; v < vx.Length; v++)
            {
                vy[v] += va * vx[v];
            }

            i = vx.Length * Vector<float>.Count;
        }

        for (; i < x.Length; i++)
        {
            y[i] += a * x[i];
        }
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
        var chosen = new int[size];
        var next = new Random(seed).Next(n);
        for (var s = 0; s < size; s++)
        {
            chosen[s] = next;
            var c = space.AsSpan(next * width, width);
            var cc = Dot(c, c);
            var far = -1f;
            for (var i = 0; i < n; i++)
            {
                var p = space.AsSpan(i * width, width);
                var d2 = Dot(p, p) - (2 * Dot(p, c)) + cc;
                if (d2 < minDist[i]) minDist[i] = d2;
                if (minDist[i] > far)
                {
                    far = minDist[i];
                    next = i;
                }
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
