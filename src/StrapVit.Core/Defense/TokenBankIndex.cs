using System.Numerics;
using System.Runtime.InteropServices;

namespace StrapVit.Core.Defense;

/// <summary>
/// An exact shortcut through a pooled <see cref="TokenBank"/> on the CPU: the bank in clusters, each a centre and a
/// radius, so that a search reads only the clusters that can still hold one of the k nearest entries. Clean token
/// contents lie close to a few bank entries (the 3rd-nearest distance of a test image's token is about a fifth of a
/// typical cluster radius on the embedded model), so a clean token reads a few percent of the bank.
/// <para>
/// <b>The same answer as the full scan.</b> An entry's squared distance is computed exactly as the full scan computes it
/// (<c>|b|² + Σ_c (−2x_c)·b_c</c> in channel order, a multiply then an add, then <c>+ |x|²</c>), only in another order
/// of entries. A cluster is passed over only when the triangle inequality puts every one of its entries farther than
/// the k-th best so far by more than the rounding of those sums can account for (at least 1e-4 (|x| + max |b|)², 20 times
/// the bound for 64 channels, twice it for wide tokens), and ties are ordered by entry index as the full scan's order leaves them, so the k nearest found are
/// the full scan's, distances bit for bit and the same entries. A content whose squared norm is not finite or passes
/// 1e30 takes the full scan.
/// </para>
/// <para>
/// Centres are the bank's first <see cref="TokenBank.Count"/> / <see cref="EntriesPerCluster"/> entries: a greedy
/// coreset stores its points in the order it took them, and each one was the farthest from those before, so they
/// spread over the bank. Every entry joins its nearest centre; each cluster is padded to whole vectors of entries.
/// </para>
/// </summary>
internal sealed class TokenBankIndex
{
    /// <summary>Banks smaller than this are scanned whole: the index would save little.</summary>
    internal const int MinEntries = 2048;

    /// <summary>Mean entries per cluster: 8,192 entries make 256 clusters.</summary>
    internal const int EntriesPerCluster = 32;

    /// <summary>
    /// Relative rounding allowance, at least 1e-4: a computed squared distance (the kernel's D + 1 terms, the vectorised
    /// norms of x and b, the last add) is off by at most about (D + D/W + W + 3) · 2^-24 · (|x| + |b|)², 4.9e-6 for
    /// 64 channels (a margin of 20), and the allowance is twice that bound for wider tokens.
    /// </summary>
    private readonly double relativeSlack;

    private readonly int dim;
    private readonly int width;

    private TokenBankIndex(int dim, int width)
    {
        this.dim = dim;
        this.width = width;
        relativeSlack = Math.Max(1e-4, 2 * (dim + (dim / width) + width + 4) * Math.Pow(2, -24));
    }

    /// <summary>Centres <c>[C*D]</c>: the bank's first C entries.</summary>
    internal float[] CentreVectors { get; private init; } = [];

    /// <summary>The centres' squared norms (the bank's own values).</summary>
    internal float[] CentreNorms { get; private init; } = [];

    /// <summary>The centres packed as the kernel reads them (<see cref="TokenBank.Pack"/>).</summary>
    internal float[] CentrePanels { get; private init; } = [];

    internal int Clusters => CentreNorms.Length;

    /// <summary>Cluster c's panels (vectors of entries) are <c>PanelStart[c] .. PanelStart[c+1] - 1</c>.</summary>
    private int[] PanelStart { get; init; } = [];

    /// <summary>Per slot (panel × lane), the bank entry there, or −1 for padding.</summary>
    internal int[] Slot { get; private init; } = [];

    /// <summary>Panels <c>[P][D][W]</c> of the entries in slot order, and per slot the entry's squared norm (+∞ for padding).</summary>
    private float[] Panels { get; init; } = [];

    private float[] SlotNorms { get; init; } = [];

    /// <summary>Per cluster, an upper bound of its entries' distance to its centre.</summary>
    internal double[] Radius { get; private init; } = [];

    /// <summary>The largest entry norm: what the rounding allowance is scaled by.</summary>
    private double MaxNorm { get; init; }

    /// <summary>The index of a pooled bank of at least <see cref="MinEntries"/> entries on a CPU with SIMD, else null.</summary>
    internal static TokenBankIndex? For(TokenBank bank)
    {
        if (bank.PositionStarts is not null || bank.Count < MinEntries || !Vector.IsHardwareAccelerated) return null;
        int d = bank.Dim, m = bank.Count, w = Vector<float>.Count, clusters = m / EntriesPerCluster;
        var norms = bank.SquaredNorms;
        // Entries the bound cannot cover (not finite, or squares near float's range) leave the bank to the full scan.
        // (A non-finite channel makes its entry's squared norm non-finite too.)
        if (norms.Any(n => !float.IsFinite(n) || n >= 1e30f)) return null;
        var centres = bank.Vectors.AsSpan(0, clusters * d).ToArray();
        var centreNorms = norms.AsSpan(0, clusters).ToArray();
        var centrePanels = TokenBank.Pack(centres, d, w);

        // Each entry to its nearest centre, by the same kernel in chunks (any assignment is correct; this one is tight).
        var owner = new int[m];
        const int chunk = 256;
        var scaled = new float[chunk * d];
        var acc = new float[chunk * clusters];
        for (var from = 0; from < m; from += chunk)
        {
            var n = Math.Min(chunk, m - from);
            for (var c = 0; c < n * d; c++) scaled[c] = -2 * bank.Vectors[(from * d) + c];
            TokenBank.Accumulate(scaled.AsSpan(0, n * d), n, acc.AsSpan(0, n * clusters), d, centres, centreNorms, centrePanels);
            for (var i = 0; i < n; i++)
            {
                var row = acc.AsSpan(i * clusters, clusters);
                var nearest = 0;
                for (var c = 1; c < clusters; c++) if (row[c] < row[nearest]) nearest = c;
                owner[from + i] = nearest;
            }
        }

        var members = Enumerable.Range(0, clusters).Select(_ => new List<int>()).ToArray();
        for (var j = 0; j < m; j++) members[owner[j]].Add(j);
        var panelStart = new int[clusters + 1];
        for (var c = 0; c < clusters; c++) panelStart[c + 1] = panelStart[c] + ((members[c].Count + w - 1) / w);
        var slots = panelStart[clusters] * w;
        var slot = new int[slots];
        Array.Fill(slot, -1);
        var panels = new float[slots * d];
        var slotNorms = new float[slots];
        Array.Fill(slotNorms, float.PositiveInfinity);
        var radius = new double[clusters];
        double maxNorm = 0;
        for (var c = 0; c < clusters; c++)
        {
            var centre = centres.AsSpan(c * d, d);
            for (var i = 0; i < members[c].Count; i++)
            {
                var j = members[c][i];
                var s = (panelStart[c] * w) + i;
                int panel = s / w, lane = s % w;
                slot[s] = j;
                slotNorms[s] = norms[j];
                var b = bank.Vectors.AsSpan(j * d, d);
                double r2 = 0, n2 = 0;
                for (var ch = 0; ch < d; ch++)
                {
                    panels[(((panel * d) + ch) * w) + lane] = b[ch];
                    var diff = (double)b[ch] - centre[ch];
                    r2 += diff * diff;
                    n2 += (double)b[ch] * b[ch];
                }

                radius[c] = Math.Max(radius[c], Math.Sqrt(r2));
                maxNorm = Math.Max(maxNorm, Math.Sqrt(n2));
            }

            radius[c] = (radius[c] * (1 + 1e-9)) + 1e-30;
        }

        return new TokenBankIndex(d, w)
        {
            CentreVectors = centres,
            CentreNorms = centreNorms,
            CentrePanels = centrePanels,
            PanelStart = panelStart,
            Slot = slot,
            Panels = panels,
            SlotNorms = slotNorms,
            Radius = radius,
            MaxNorm = maxNorm,
        };
    }

    /// <summary>Whether a content of squared norm <paramref name="xx"/> can take the shortcut (else the full scan).</summary>
    internal static bool Applies(float xx) => float.IsFinite(xx) && xx < 1e30f;

    /// <summary>
    /// The k nearest entries of one content, given as <paramref name="scaled"/> (−2x), its squared norm
    /// <paramref name="xx"/> and <paramref name="centreAcc"/> (<c>|c|² − 2x·c</c> per centre, from
    /// <see cref="TokenBank.Accumulate"/>):
    /// the mean distance, and the entries' indices to <paramref name="nearest"/>. The nearest centre's cluster is read
    /// first, then every other cluster that the bound cannot rule out, in order.
    /// </summary>
    internal double Nearest(ReadOnlySpan<float> scaled, float xx, ReadOnlySpan<float> centreAcc, int k, Span<int> nearest, Func<int, bool>? exclude) =>
        Nearest(scaled, xx, centreAcc, k, nearest, exclude, out _);

    /// <summary>Entries the search reads for a token at position 0 (its content is <c>token - offset[0]</c>), padding included: for tests.</summary>
    internal int EntriesRead(ReadOnlySpan<float> token, TokenBank bank)
    {
        var minus2x = new float[dim];
        for (var c = 0; c < dim; c++) minus2x[c] = -2 * (token[c] - bank.Offset[0][c]);
        var xx = TokenBank.Dot(minus2x, minus2x) / 4;
        var centreAcc = new float[Clusters];
        TokenBank.Accumulate(minus2x, 1, centreAcc, dim, CentreVectors, CentreNorms, CentrePanels);
        Nearest(minus2x, xx, centreAcc, Math.Min(bank.Neighbors, bank.Count), default, null, out var read);
        return read;
    }

    /// <summary>Per slot, its cluster: for tests.</summary>
    internal int[] ClusterOfSlots()
    {
        var result = new int[Slot.Length];
        for (var c = 0; c < Clusters; c++) result.AsSpan(PanelStart[c] * width, (PanelStart[c + 1] - PanelStart[c]) * width).Fill(c);
        return result;
    }

    private double Nearest(ReadOnlySpan<float> scaled, float xx, ReadOnlySpan<float> centreAcc, int k, Span<int> nearest, Func<int, bool>? exclude, out int read)
    {
        read = 0;
        Span<float> best = stackalloc float[k];
        Span<int> bestIndex = stackalloc int[k];
        best.Fill(float.PositiveInfinity);
        bestIndex.Fill(-1);
        var norm = Math.Sqrt(xx) + MaxNorm;
        var slack = (relativeSlack * norm * norm) + 1e-30;
        var firstCluster = 0;
        for (var c = 1; c < centreAcc.Length; c++) if (centreAcc[c] < centreAcc[firstCluster]) firstCluster = c;

        Visit(firstCluster, scaled, xx, best, bestIndex, exclude);
        read += (PanelStart[firstCluster + 1] - PanelStart[firstCluster]) * width;
        // Cluster c is passed over when (|x - centre| - radius)² > k-th best + slack, with |x - centre|² taken low by the
        // slack for its own rounding: squared as |x - centre|² > (radius + sqrt(k-th best + slack))², without a root per cluster.
        var kth = best[k - 1];
        var reach = Math.Sqrt(kth + slack);
        for (var c = 0; c < centreAcc.Length; c++)
        {
            if (c == firstCluster) continue;
            if (best[k - 1] != kth) (kth, reach) = (best[k - 1], Math.Sqrt(best[k - 1] + slack));
            var far = Radius[c] + reach;
            if ((double)(centreAcc[c] + xx) - slack > far * far) continue;
            Visit(c, scaled, xx, best, bestIndex, exclude);
            read += (PanelStart[c + 1] - PanelStart[c]) * width;
        }

        return TokenBank.Mean(best, bestIndex, nearest);
    }

    /// <summary>Cluster <paramref name="c"/>'s entries into the k best, two panels at a time; each lane's sum as the full scan's.</summary>
    private void Visit(int c, ReadOnlySpan<float> scaled, float xx, Span<float> best, Span<int> bestIndex, Func<int, bool>? exclude)
    {
        int d = dim, w = width;
        var panels = MemoryMarshal.Cast<float, Vector<float>>(Panels.AsSpan());
        var norms = MemoryMarshal.Cast<float, Vector<float>>(SlotNorms.AsSpan());
        var shift = new Vector<float>(xx);
        var p = PanelStart[c];
        var end = PanelStart[c + 1];
        for (; p + 2 <= end; p += 2)
        {
            Vector<float> a = norms[p], b = norms[p + 1];
            var panelA = panels.Slice(p * d, d);
            var panelB = panels.Slice((p + 1) * d, d);
            for (var ch = 0; ch < d; ch++)
            {
                var x = new Vector<float>(scaled[ch]);
                a += x * panelA[ch];
                b += x * panelB[ch];
            }

            Offer(a + shift, p, best, bestIndex, exclude, w);
            Offer(b + shift, p + 1, best, bestIndex, exclude, w);
        }

        if (p < end)
        {
            var a = norms[p];
            var panel = panels.Slice(p * d, d);
            for (var ch = 0; ch < d; ch++) a += new Vector<float>(scaled[ch]) * panel[ch];
            Offer(a + shift, p, best, bestIndex, exclude, w);
        }
    }

    /// <summary>A panel's distances into the k best, unless none of them comes under the k-th (as the full scan's test).</summary>
    private void Offer(Vector<float> distances, int panel, Span<float> best, Span<int> bestIndex, Func<int, bool>? exclude, int w)
    {
        // Strictly farther than the k-th: an equal distance may still come first by its index.
        if (Vector.GreaterThanAll(distances, new Vector<float>(best[^1]))) return;
        for (var lane = 0; lane < w; lane++)
        {
            var j = Slot[(panel * w) + lane];
            if (j >= 0) Insert(distances[lane], j, best, bestIndex, exclude);
        }
    }

    /// <summary>
    /// Entry <paramref name="j"/> into the sorted k best by (distance, index). The full scan's own insert compares
    /// distances only, which is enough there because it meets entries in index order and keeps the earlier of equal
    /// distances; here clusters come in another order, so ties are ordered by index explicitly.
    /// </summary>
    private static void Insert(float d2, int j, Span<float> best, Span<int> bestIndex, Func<int, bool>? exclude)
    {
        var k = best.Length;
        if (!Before(d2, j, best[k - 1], bestIndex[k - 1]) || (exclude is not null && exclude(j))) return;
        var p = k - 1;
        while (p > 0 && Before(d2, j, best[p - 1], bestIndex[p - 1]))
        {
            best[p] = best[p - 1];
            bestIndex[p] = bestIndex[p - 1];
            p--;
        }

        best[p] = d2;
        bestIndex[p] = j;
    }

    /// <summary>Whether (d, j) comes before a kept (bd, bj); an empty place (index −1, +∞) takes any finite distance.</summary>
    private static bool Before(float d, int j, float bd, int bj) => d < bd || (d == bd && bj >= 0 && j < bj);
}
