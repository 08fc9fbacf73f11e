namespace StrapVit.Core.Attacks;

/// <summary>
/// A distance for perturbations δ = x' − x (one image, C·H·W values): how to measure it, the steepest-ascent
/// direction of unit norm for a gradient, the projection onto the ε-ball and a random starting point inside it.
/// Small strategies, shared and stateless.
/// </summary>
public abstract class PerturbationNorm
{
    /// <summary>L∞: the largest absolute change of any value.</summary>
    public static PerturbationNorm Linf { get; } = new LinfNorm();

    /// <summary>L2: the Euclidean length of the change.</summary>
    public static PerturbationNorm L2 { get; } = new L2Norm();

    /// <summary><c>linf</c> or <c>l2</c> (the API's spelling).</summary>
    public abstract string Name { get; }

    /// <summary>‖<paramref name="delta"/>‖.</summary>
    public abstract float Measure(ReadOnlySpan<float> delta);

    /// <summary>‖x' − x‖ without allocating.</summary>
    public abstract float Distance(ReadOnlySpan<float> clean, ReadOnlySpan<float> adversarial);

    /// <summary>The unit-norm direction d maximising gᵀd: sign(g) for L∞, g / ‖g‖₂ for L2 (zero for a zero gradient).</summary>
    public abstract void Direction(ReadOnlySpan<float> gradient, Span<float> direction);

    /// <summary>Moves <paramref name="adversarial"/> onto the ε-ball around <paramref name="clean"/> (in place).</summary>
    public abstract void Project(ReadOnlySpan<float> clean, Span<float> adversarial, float epsilon);

    /// <summary>Writes a random δ with ‖δ‖ ≤ ε.</summary>
    public abstract void RandomPoint(Random random, Span<float> delta, float epsilon);

    public static bool TryParse(string? name, out PerturbationNorm norm)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "linf" or "inf":
                norm = Linf;
                return true;
            case "l2":
                norm = L2;
                return true;
            default:
                norm = Linf;
                return false;
        }
    }

    public override string ToString() => Name;

    private sealed class LinfNorm : PerturbationNorm
    {
        public override string Name => "linf";

        public override float Measure(ReadOnlySpan<float> delta)
        {
            var m = 0f;
            foreach (var d in delta)
            {
                m = MathF.Max(m, MathF.Abs(d));
            }

            return m;
        }

        public override float Distance(ReadOnlySpan<float> clean, ReadOnlySpan<float> adversarial)
        {
            var m = 0f;
            for (var i = 0; i < clean.Length; i++)
            {
                m = MathF.Max(m, MathF.Abs(adversarial[i] - clean[i]));
            }

            return m;
        }

        public override void Direction(ReadOnlySpan<float> gradient, Span<float> direction)
        {
            for (var i = 0; i < gradient.Length; i++)
            {
                direction[i] = MathF.Sign(gradient[i]);
            }
        }

        public override void Project(ReadOnlySpan<float> clean, Span<float> adversarial, float epsilon)
        {
            // Clamp to [x − ε, x + ε] directly (not via δ), so x + ε·sign(g) survives bit for bit: one PGD step of
            // size ε without random start is exactly FGSM.
            for (var i = 0; i < clean.Length; i++)
            {
                adversarial[i] = MathF.Min(MathF.Max(adversarial[i], clean[i] - epsilon), clean[i] + epsilon);
            }
        }

        public override void RandomPoint(Random random, Span<float> delta, float epsilon)
        {
            for (var i = 0; i < delta.Length; i++)
            {
                delta[i] = (float)(((2 * random.NextDouble()) - 1) * epsilon);
            }
        }
    }

    private sealed class L2Norm : PerturbationNorm
    {
        public override string Name => "l2";

        public override float Measure(ReadOnlySpan<float> delta)
        {
            double s = 0;
            foreach (var d in delta)
            {
                s += (double)d * d;
            }

            return (float)Math.Sqrt(s);
        }

        public override float Distance(ReadOnlySpan<float> clean, ReadOnlySpan<float> adversarial)
        {
            double s = 0;
            for (var i = 0; i < clean.Length; i++)
            {
                double d = adversarial[i] - clean[i];
                s += d * d;
            }

            return (float)Math.Sqrt(s);
        }

        public override void Direction(ReadOnlySpan<float> gradient, Span<float> direction)
        {
            var n = Measure(gradient);
            var scale = n > 0 ? 1f / n : 0f;
            for (var i = 0; i < gradient.Length; i++)
            {
                direction[i] = gradient[i] * scale;
            }
        }

        public override void Project(ReadOnlySpan<float> clean, Span<float> adversarial, float epsilon)
        {
            var n = Distance(clean, adversarial);
            if (n <= epsilon)
            {
                return;
            }

            var scale = n > 0 ? epsilon / n : 0f;
            for (var i = 0; i < clean.Length; i++)
            {
                adversarial[i] = clean[i] + ((adversarial[i] - clean[i]) * scale);
            }
        }

        public override void RandomPoint(Random random, Span<float> delta, float epsilon)
        {
            // A uniformly random direction (normalised Gaussian, Box-Muller) and a radius uniform in [0, ε].
            for (var i = 0; i < delta.Length; i++)
            {
                var u1 = 1.0 - random.NextDouble();
                var u2 = random.NextDouble();
                delta[i] = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
            }

            var n = Measure(delta);
            var scale = n > 0 ? (float)(random.NextDouble() * epsilon / n) : 0f;
            for (var i = 0; i < delta.Length; i++)
            {
                delta[i] *= scale;
            }
        }
    }
}
