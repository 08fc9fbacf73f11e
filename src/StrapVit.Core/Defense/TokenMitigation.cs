namespace StrapVit.Core.Defense;

/// <summary>
/// STRAP-ViT's randomized composite transformation of one flagged token: a random non-empty subset of the enabled
/// transforms, in random order. The randomness is the point: a patch optimised through the defense has no fixed
/// transformation to adapt to.
/// </summary>
public static class TokenMitigation
{
    public const string Lp = "lp_projection";
    public const string Shrink = "affine_shrink";
    public const string Temperature = "temperature";

    /// <summary>Rewrites <paramref name="token"/> in place and returns the names of the transforms applied.</summary>
    public static string[] Apply(Span<float> token, ReadOnlySpan<float> center, float cleanNorm, DefenseOptions options, Random rng)
    {
        var enabled = new List<string>(3);
        if (options.Transforms.HasFlag(TokenTransforms.LpProjection)) enabled.Add(Lp);
        if (options.Transforms.HasFlag(TokenTransforms.AffineShrink)) enabled.Add(Shrink);
        if (options.Transforms.HasFlag(TokenTransforms.Temperature)) enabled.Add(Temperature);

        // A uniformly random non-empty subset, then a random order.
        var mask = rng.Next(1, 1 << enabled.Count);
        var chosen = enabled.Where((_, i) => (mask & (1 << i)) != 0).ToArray();
        rng.Shuffle(chosen);
        foreach (var op in chosen)
        {
            switch (op)
            {
                case Lp:
                    ProjectL2(token, cleanNorm);
                    break;
                case Shrink:
                    ShrinkToward(token, center, options.ShrinkMin + (rng.NextDouble() * (options.ShrinkMax - options.ShrinkMin)));
                    break;
                default:
                    ScaleTemperature(token, options.TemperatureScaleMin + (rng.NextDouble() * (options.TemperatureScaleMax - options.TemperatureScaleMin)));
                    break;
            }
        }

        return chosen;
    }

    /// <summary>Projects onto the L2 ball of radius <paramref name="radius"/> (no change inside it).</summary>
    public static void ProjectL2(Span<float> z, float radius)
    {
        double sq = 0;
        foreach (var v in z)
        {
            sq += v * (double)v;
        }

        var norm = Math.Sqrt(sq);
        if (norm > radius && norm > 0)
        {
            var f = (float)(radius / norm);
            for (var i = 0; i < z.Length; i++)
            {
                z[i] *= f;
            }
        }
    }

    /// <summary><c>z ← c + α (z − c)</c>.</summary>
    public static void ShrinkToward(Span<float> z, ReadOnlySpan<float> center, double alpha)
    {
        for (var i = 0; i < z.Length; i++)
        {
            z[i] = (float)(center[i] + (alpha * (z[i] - center[i])));
        }
    }

    /// <summary>
    /// <c>z ← μ + (z − μ) / τ</c> with μ the channel mean: softmax(z'/T) equals softmax(z/(T·τ)), so the channel
    /// profile is flattened exactly as a softmax temperature τ·T would, while the token stays in feature space.
    /// </summary>
    public static void ScaleTemperature(Span<float> z, double tau)
    {
        double mean = 0;
        foreach (var v in z)
        {
            mean += v;
        }

        mean /= z.Length;
        for (var i = 0; i < z.Length; i++)
        {
            z[i] = (float)(mean + ((z[i] - mean) / tau));
        }
    }
}
