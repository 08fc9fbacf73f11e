namespace StrapVit.Core.Attacks;

/// <summary>
/// Fast Gradient Sign Method: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples",
/// arXiv 1412.6572. Distance: L∞. One fused forward + backward run per image:
/// x' = clip(x + ε·sign(∇ₓL(x, y)), 0, 1) untargeted, x' = clip(x − ε·sign(∇ₓL(x, t)), 0, 1) targeted, with L the
/// cross-entropy of the logits. Iterations: 1.
/// </summary>
/// <remarks>
/// Tensor shapes: images <c>[N, C, H, W]</c> in [0, 1]; gradient <c>[N, C, H, W]</c>; labels <c>[N]</c>.
/// A pixel whose gradient is exactly 0 does not move (sign(0) = 0, as in PyTorch).
/// </remarks>
/// <param name="epsilon">L∞ budget ε in [0, 1] pixel space; default 8/255.</param>
public sealed class Fgsm(float epsilon = Fgsm.DefaultEpsilon) : BoundedAttack(PerturbationNorm.Linf, epsilon)
{
    public const float DefaultEpsilon = 8f / 255f;

    public override string Name => "fgsm";

    protected override Perturbation Perturb(AttackContext context, float[] clean, int batch, Criterion criterion, Random random)
    {
        var result = context.CrossEntropy(clean, [.. criterion.Classes], batch);
        var adversarial = new float[clean.Length];
        var step = criterion.LossSign * Epsilon;
        for (var i = 0; i < clean.Length; i++)
        {
            adversarial[i] = clean[i] + (step * MathF.Sign(result.PixelGrad[i]));
        }

        return new Perturbation(adversarial, Enumerable.Repeat(1, batch).ToArray());
    }
}
