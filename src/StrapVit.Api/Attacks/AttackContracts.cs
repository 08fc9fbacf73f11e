using System.Text.Json.Serialization;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Attacks;

/// <summary>Where a patch attack put its square (top-left corner and side, pixels).</summary>
public sealed record PatchLocation(int X, int Y, int Size);

/// <summary>
/// Answer of <c>POST /v1/attacks/{attack}</c>. <c>success</c> judges the float image,
/// <c>successQuantized</c> the 8-bit PNG in <c>imagePng</c>; norms are of the float perturbation in [0, 1] pixel space.
/// </summary>
/// <param name="Attack">fgsm, pgd, deepfool or patch.</param>
/// <param name="Success">The float adversarial image meets the goal (any wrong class, or the target).</param>
/// <param name="SuccessQuantized">The 8-bit PNG returned meets the goal.</param>
/// <param name="Original">The clean image's prediction.</param>
/// <param name="Adversarial">The float adversarial image's prediction.</param>
/// <param name="AdversarialQuantized">The 8-bit adversarial image's prediction.</param>
/// <param name="Linf" example="0.031372547">max |x' − x|.</param>
/// <param name="L2">‖x' − x‖₂.</param>
/// <param name="Iterations">Gradient iterations used.</param>
/// <param name="ElapsedMs">Wall time of the attack.</param>
/// <param name="Seed" example="1234567">The seed used (given or drawn): send it again to reproduce the result.</param>
/// <param name="ImagePng">The adversarial image as a base64 8-bit PNG.</param>
/// <param name="Pixels">With <c>includePixels=true</c>: the float adversarial image, C·H·W values, row-major.</param>
/// <param name="Patch">Patch attack only: where the patch is.</param>
public sealed record AttackResponse(
    AttackName Attack,
    bool Success,
    bool SuccessQuantized,
    Prediction Original,
    Prediction Adversarial,
    Prediction AdversarialQuantized,
    float Linf,
    float L2,
    int Iterations,
    double ElapsedMs,
    int Seed,
    string ImagePng,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] float[]? Pixels,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] PatchLocation? Patch);
