namespace StrapVit.Core.Attacks;

/// <summary>
/// One sample's outcome. <see cref="Success"/> judges the float image, <see cref="SuccessQuantized"/> the same image
/// rounded to 8 bits (what a PNG carries). Norms are of the float perturbation x' − x.
/// </summary>
/// <param name="GoalClass">The label (untargeted) or the target (targeted) the attack was judged against.</param>
/// <param name="Targeted">Whether the goal was targeted.</param>
/// <param name="CleanClass">Predicted class of the clean image.</param>
/// <param name="AdversarialClass">Predicted class of the float adversarial image.</param>
/// <param name="QuantizedClass">Predicted class of the 8-bit adversarial image.</param>
/// <param name="Success">The float image meets the goal.</param>
/// <param name="SuccessQuantized">The 8-bit image meets the goal.</param>
/// <param name="Linf">max |x' − x|.</param>
/// <param name="L2">‖x' − x‖₂.</param>
/// <param name="Iterations">Gradient iterations spent on this sample.</param>
/// <param name="Patch">Where the patch went (patch attacks), else null.</param>
public sealed record AttackSample(
    int GoalClass,
    bool Targeted,
    int CleanClass,
    int AdversarialClass,
    int QuantizedClass,
    bool Success,
    bool SuccessQuantized,
    float Linf,
    float L2,
    int Iterations,
    PatchPlacement? Patch);

/// <summary>
/// The outcome of one <see cref="Attack.Run"/>. Arrays are row-major: <see cref="Adversarial"/> and
/// <see cref="Quantized"/> <c>[N, C, H, W]</c>, logits <c>[N, K]</c>.
/// </summary>
public sealed record AttackResult(
    string Attack,
    int Batch,
    int SampleSize,
    int Classes,
    float[] Adversarial,
    float[] Quantized,
    float[] CleanLogits,
    float[] AdversarialLogits,
    float[] QuantizedLogits,
    IReadOnlyList<AttackSample> Samples,
    int Seed,
    TimeSpan Elapsed)
{
    /// <summary>The float adversarial image of sample <paramref name="index"/>.</summary>
    public ReadOnlySpan<float> AdversarialOf(int index) => Adversarial.AsSpan(index * SampleSize, SampleSize);

    public ReadOnlySpan<float> QuantizedOf(int index) => Quantized.AsSpan(index * SampleSize, SampleSize);

    public ReadOnlySpan<float> CleanLogitsOf(int index) => CleanLogits.AsSpan(index * Classes, Classes);

    public ReadOnlySpan<float> AdversarialLogitsOf(int index) => AdversarialLogits.AsSpan(index * Classes, Classes);

    public ReadOnlySpan<float> QuantizedLogitsOf(int index) => QuantizedLogits.AsSpan(index * Classes, Classes);

    /// <summary>Fraction of samples whose float image met the goal.</summary>
    public double SuccessRate => Samples.Count(s => s.Success) / (double)Batch;

    /// <summary>Fraction of samples whose 8-bit image met the goal.</summary>
    public double QuantizedSuccessRate => Samples.Count(s => s.SuccessQuantized) / (double)Batch;
}
