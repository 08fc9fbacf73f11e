namespace StrapVit.Core.Defense;

/// <summary>
/// Distributions over a token's channels and the Jensen-Shannon distance between them (natural log), the anomaly
/// score of STRAP-ViT: <c>s = sqrt(JSD(p || q))</c>, a true metric bounded by <c>sqrt(ln 2)</c>.
/// </summary>
public static class JensenShannon
{
    /// <summary>The largest possible distance, <c>sqrt(ln 2)</c>.</summary>
    public static readonly double MaxDistance = Math.Sqrt(Math.Log(2));

    /// <summary><c>softmax(z / temperature)</c> written into <paramref name="destination"/>.</summary>
    public static void Softmax(ReadOnlySpan<float> z, double temperature, Span<double> destination)
    {
        var max = double.NegativeInfinity;
        foreach (var v in z)
        {
            max = Math.Max(max, v / temperature);
        }

        double sum = 0;
        for (var i = 0; i < z.Length; i++)
        {
            destination[i] = Math.Exp((z[i] / temperature) - max);
            sum += destination[i];
        }

        for (var i = 0; i < z.Length; i++)
        {
            destination[i] /= sum;
        }
    }

    /// <summary>Jensen-Shannon divergence of two distributions: ½ KL(p‖m) + ½ KL(q‖m), m = (p + q) / 2.</summary>
    public static double Divergence(ReadOnlySpan<double> p, ReadOnlySpan<double> q)
    {
        if (p.Length != q.Length)
        {
            throw new ArgumentException("Distributions differ in length.", nameof(q));
        }

        double js = 0;
        for (var i = 0; i < p.Length; i++)
        {
            var m = 0.5 * (p[i] + q[i]);
            if (p[i] > 0)
            {
                js += 0.5 * p[i] * Math.Log(p[i] / m);
            }

            if (q[i] > 0)
            {
                js += 0.5 * q[i] * Math.Log(q[i] / m);
            }
        }

        // Rounding can leave a tiny negative value for identical inputs.
        return Math.Max(0, js);
    }

    /// <summary>The Jensen-Shannon distance, <c>sqrt(JSD)</c>.</summary>
    public static double Distance(ReadOnlySpan<double> p, ReadOnlySpan<double> q) => Math.Sqrt(Divergence(p, q));
}
