namespace StrapVit.Core.Attacks;

/// <summary>An attack with a budget: the result is projected onto the ε-ball of <see cref="Norm"/> around the clean image.</summary>
public abstract class BoundedAttack : Attack
{
    protected BoundedAttack(PerturbationNorm norm, float epsilon)
    {
        ArgumentNullException.ThrowIfNull(norm);
        if (!(epsilon >= 0) || !float.IsFinite(epsilon))
        {
            throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "Epsilon must be finite and at least 0.");
        }

        Norm = norm;
        Epsilon = epsilon;
    }

    public PerturbationNorm Norm { get; }

    /// <summary>The budget ε in [0, 1] pixel space, measured in <see cref="Norm"/>.</summary>
    public float Epsilon { get; }

    protected sealed override void Constrain(ReadOnlySpan<float> clean, Span<float> adversarial, int sample, Perturbation perturbation,
        IDifferentiableClassifier model) =>
        Norm.Project(clean, adversarial, Epsilon);
}
