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

    /// <summary>Replaced by the clean mean token of its position (no dependence on the input left).</summary>
    public const string ReplaceMean = "replace_mean";

    /// <summary>Replaced by a clean bank entry (the step's parameter is its index).</summary>
    public const string ReplaceBank = "replace_bank";

    /// <summary>Dropped from the sequence before the encoder.</summary>
    public const string Drop = "drop";

    /// <summary>Rewrites <paramref name="token"/> in place and returns the names of the transforms applied.</summary>
    public static string[] Apply(Span<float> token, ReadOnlySpan<float> center, float cleanNorm, DefenseOptions options, Random rng)
    {
        var steps = Draw(options, rng);
        Apply(token, center, cleanNorm, steps);
        return steps.Select(s => s.Op).ToArray();
    }

    /// <summary>Draws a uniformly random non-empty subset of the enabled transforms, its order and its parameters.</summary>
    public static MitigationStep[] Draw(DefenseOptions options, Random rng)
    {
        var enabled = new List<string>(3);
        if (options.Transforms.HasFlag(TokenTransforms.LpProjection)) enabled.Add(Lp);
        if (options.Transforms.HasFlag(TokenTransforms.AffineShrink)) enabled.Add(Shrink);
        if (options.Transforms.HasFlag(TokenTransforms.Temperature)) enabled.Add(Temperature);

        var mask = rng.Next(1, 1 << enabled.Count);
        var chosen = enabled.Where((_, i) => (mask & (1 << i)) != 0).ToArray();
        rng.Shuffle(chosen);
        return chosen.Select(op => new MitigationStep(op, op switch
        {
            Shrink => options.ShrinkMin + (rng.NextDouble() * (options.ShrinkMax - options.ShrinkMin)),
            Temperature => options.TemperatureScaleMin + (rng.NextDouble() * (options.TemperatureScaleMax - options.TemperatureScaleMin)),
            _ => 0,
        })).ToArray();
    }

    /// <summary>Applies drawn <paramref name="steps"/> in order.</summary>
    public static void Apply(Span<float> token, ReadOnlySpan<float> center, float cleanNorm, IReadOnlyList<MitigationStep> steps)
    {
        foreach (var step in steps)
        {
            switch (step.Op)
            {
                case Lp:
                    ProjectL2(token, cleanNorm);
                    break;
                case Shrink:
                    ShrinkToward(token, center, step.Parameter);
                    break;
                case ReplaceMean or ReplaceBank or Drop:
                    throw new ArgumentException($"'{step.Op}' needs the clean reference; the defense applies it itself.", nameof(steps));
                default:
                    ScaleTemperature(token, step.Parameter);
                    break;
            }
        }
    }

    /// <summary>
    /// The exact vector-Jacobian product of <see cref="Apply(Span{float}, ReadOnlySpan{float}, float, IReadOnlyList{MitigationStep})"/>
    /// at <paramref name="input"/>: turns dL/d(output token) in <paramref name="grad"/> into dL/d(input token).
    /// Used by the adaptive (EOT) attacker, who knows the defense and differentiates through it.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> input, ReadOnlySpan<float> center, float cleanNorm, IReadOnlyList<MitigationStep> steps, Span<float> grad)
    {
        if (steps.Any(step => step.Op is ReplaceMean or ReplaceBank or Drop))
        {
            // A replaced token no longer depends on its input.
            grad.Clear();
            return;
        }

        // Replay forward, keeping each step's input (only the projection's Jacobian depends on it).
        var states = new float[steps.Count][];
        var z = input.ToArray();
        for (var s = 0; s < steps.Count; s++)
        {
            states[s] = (float[])z.Clone();
            Apply(z, center, cleanNorm, [steps[s]]);
        }

        for (var s = steps.Count - 1; s >= 0; s--)
        {
            switch (steps[s].Op)
            {

                case Lp:
                    // z' = r z / |z| outside the ball: J = (r / |z|)(I - u u^T), u = z / |z|; identity inside.
                    var x = states[s];
                    var norm = Math.Sqrt(x.Sum(v => (double)v * v));
                    if (norm > cleanNorm && norm > 0)
                    {
                        double dot = 0;
                        for (var i = 0; i < grad.Length; i++) dot += grad[i] * (x[i] / norm);
                        for (var i = 0; i < grad.Length; i++) grad[i] = (float)(cleanNorm / norm * (grad[i] - (x[i] / norm * dot)));
                    }

                    break;
                case Shrink:
                    for (var i = 0; i < grad.Length; i++) grad[i] = (float)(grad[i] * steps[s].Parameter);
                    break;
                default:
                    // z' = mean + (z - mean) / tau: J = I / tau + (1 - 1/tau) 11^T / D, symmetric.
                    var tau = steps[s].Parameter;
                    double mean = 0;
                    foreach (var g in grad) mean += g;
                    mean /= grad.Length;
                    for (var i = 0; i < grad.Length; i++) grad[i] = (float)((grad[i] / tau) + ((1 - (1 / tau)) * mean));
                    break;
            }
        }
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

/// <summary>One drawn transform: its name and parameter (α for the shrink, τ for the temperature, unused for the projection).</summary>
public readonly record struct MitigationStep(string Op, double Parameter);
