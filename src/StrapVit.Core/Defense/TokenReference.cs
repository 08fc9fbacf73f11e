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

    internal static TokenReference Compute(TokenSpaceModel model, IReadOnlyList<ImageTensor> images, double temperature, double quantile)
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

        return reference;
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
