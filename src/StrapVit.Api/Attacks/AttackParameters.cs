using System.Security.Cryptography;
using Microsoft.AspNetCore.Mvc;
using StrapVit.Api.Errors;
using StrapVit.Core.Attacks;

namespace StrapVit.Api.Attacks;

/// <summary>The attacks, as named in their routes and answers.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Style", "IDE1006:Naming Styles", Justification = "Wire values.")]
public enum AttackName
{
    fgsm,
    pgd,
    deepfool,
    patch,
}

/// <summary>The form fields every attack takes, beside the file field <c>image</c>: whom it aims at, and its seed.</summary>
/// <param name="Label">True class (default: the model's prediction of the clean image).</param>
/// <param name="TargetClass">Class to reach; makes the attack targeted (default: untargeted).</param>
/// <param name="Seed">Seed of every random choice, at least 0 (default: drawn, and reported).</param>
public sealed record AttackTarget([FromForm] int? Label = null, [FromForm] int? TargetClass = null, [FromForm] int? Seed = null)
{
    /// <summary>Untargeted away from the label (or the clean prediction), or targeted at <see cref="TargetClass"/>.</summary>
    internal AttackGoal Goal(int classes)
    {
        var label = Parameter.InRange(Label, 0, classes - 1);
        var target = Parameter.InRange(TargetClass, 0, classes - 1);
        return target is { } t ? AttackGoal.Targeted([t]) : AttackGoal.Untargeted(label is { } l ? [l] : null);
    }

    /// <summary>The given seed, or a fresh one.</summary>
    internal int SeedOrDrawn() => Parameter.InRange(Seed, 0, int.MaxValue) ?? RandomNumberGenerator.GetInt32(int.MaxValue);
}

/// <summary>
/// An attack's own form fields. Each attack's record declares them as form-bound constructor parameters: the type,
/// the default (absent fields take it) and the description are that one declaration, for binding and OpenAPI alike.
/// The ranges that depend on the model or on the <c>Attacks</c> limits are checked by <see cref="Configure"/>.
/// </summary>
public abstract record AttackParameters
{
    internal abstract AttackName Name { get; }

    /// <summary>The attack with these settings, each checked against the model and the limits (400 naming the field otherwise).</summary>
    internal abstract Attack Configure(IDifferentiableClassifier model, AttackOptions limits);
}

/// <summary>FGSM's form fields.</summary>
/// <param name="Epsilon">L∞ budget in [0, 1] pixel space (at most <c>Attacks:MaxLinfEpsilon</c>).</param>
public sealed record FgsmParameters([FromForm] float Epsilon = Fgsm.DefaultEpsilon) : AttackParameters
{
    internal override AttackName Name => AttackName.fgsm;

    internal override Attack Configure(IDifferentiableClassifier model, AttackOptions limits) =>
        new Fgsm(Parameter.InRange(Epsilon, 0, limits.MaxLinfEpsilon));
}

/// <summary>The norms PGD can bound its perturbation in (spelled as on the wire: ASP.NET binds enums by exact member name).</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Style", "IDE1006:Naming Styles", Justification = "Wire values.")]
public enum PgdNorm
{
    /// <summary>L∞: the largest change of any pixel value.</summary>
    linf,

    /// <summary>L2: the Euclidean length of the change.</summary>
    l2,
}

/// <summary>PGD's form fields.</summary>
/// <param name="Epsilon">Budget in the chosen norm, [0, 1] pixel space (default 8/255 for linf, 0.5 for l2; at most <c>Attacks:MaxLinfEpsilon</c> or <c>MaxL2Epsilon</c>).</param>
/// <param name="StepSize">Step size (default 2/255 for linf, epsilon/5 for l2).</param>
/// <param name="Steps">Gradient steps (at most <c>Attacks:MaxSteps</c>).</param>
/// <param name="Norm">linf or l2.</param>
/// <param name="RandomStart">Start from a random point of the ball.</param>
/// <param name="Restarts">Random restarts, keeping the best (at most <c>Attacks:MaxRestarts</c>).</param>
/// <param name="EarlyStop">Stop once the goal is met.</param>
public sealed record PgdParameters(
    [FromForm] float? Epsilon = null,
    [FromForm] float? StepSize = null,
    [FromForm] int Steps = Pgd.DefaultSteps,
    [FromForm] PgdNorm Norm = PgdNorm.linf,
    [FromForm] bool RandomStart = true,
    [FromForm] int Restarts = 1,
    [FromForm] bool EarlyStop = false) : AttackParameters
{
    internal override AttackName Name => AttackName.pgd;

    internal override Attack Configure(IDifferentiableClassifier model, AttackOptions limits)
    {
        var l2 = Norm == PgdNorm.l2;
        var epsilon = Parameter.InRange(Epsilon ?? (l2 ? 0.5f : Pgd.DefaultEpsilon), 0, l2 ? limits.MaxL2Epsilon : limits.MaxLinfEpsilon, expression: nameof(Epsilon));
        var stepSize = Parameter.InRange(StepSize ?? (l2 ? epsilon / 5 : Pgd.DefaultStepSize), 0, l2 ? limits.MaxL2Epsilon : 1f, expression: nameof(StepSize));
        return new Pgd(l2 ? PerturbationNorm.L2 : PerturbationNorm.Linf, epsilon, stepSize, Parameter.InRange(Steps, 1, limits.MaxSteps),
            RandomStart, Parameter.InRange(Restarts, 1, limits.MaxRestarts), EarlyStop);
    }
}

/// <summary>DeepFool's form fields.</summary>
/// <param name="Overshoot">Factor (1 + overshoot) on the accumulated perturbation (at most <c>Attacks:MaxOvershoot</c>).</param>
/// <param name="MaxIterations">Most linearisation steps (at most <c>Attacks:MaxIterations</c>).</param>
/// <param name="Candidates">Classes considered, from the top logits, at least 2 (default 10, capped at the class count).</param>
public sealed record DeepFoolParameters(
    [FromForm] float Overshoot = DeepFool.DefaultOvershoot,
    [FromForm] int MaxIterations = DeepFool.DefaultMaxIterations,
    [FromForm] int? Candidates = null) : AttackParameters
{
    internal override AttackName Name => AttackName.deepfool;

    internal override Attack Configure(IDifferentiableClassifier model, AttackOptions limits) =>
        new DeepFool(
            Parameter.InRange(Overshoot, 0, limits.MaxOvershoot),
            Parameter.InRange(MaxIterations, 1, limits.MaxIterations),
            Parameter.InRange(Candidates, 2, model.Classes) ?? Math.Min(DeepFool.DefaultCandidates, model.Classes));
}

/// <summary>The per-image patch attack's form fields.</summary>
/// <param name="PatchSize">Side of the square patch in pixels (default: about 2% of the image area; at most <c>Attacks:MaxPatchSize</c> and the image).</param>
/// <param name="X">Left column of the patch (default: random from seed).</param>
/// <param name="Y">Top row of the patch (default: random from seed).</param>
/// <param name="Steps">Most signed-gradient steps (at most <c>Attacks:MaxPatchSteps</c>).</param>
/// <param name="StepSize">Step on patch pixels, in (0, 1].</param>
public sealed record PatchParameters(
    [FromForm] int? PatchSize = null,
    [FromForm] int? X = null,
    [FromForm] int? Y = null,
    [FromForm] int Steps = PatchAttack.DefaultSteps,
    [FromForm] float StepSize = PatchAttack.DefaultStepSize) : AttackParameters
{
    internal override AttackName Name => AttackName.patch;

    internal override Attack Configure(IDifferentiableClassifier model, AttackOptions limits)
    {
        var maxSide = Math.Min(limits.MaxPatchSize, Math.Min(model.Height, model.Width));
        var side = Parameter.InRange(PatchSize, 1, maxSide) ?? Math.Clamp((int)Math.Round(Math.Sqrt(0.02 * model.Height * model.Width)), 1, maxSide);
        return new PatchAttack(side,
            Parameter.InRange(X, 0, model.Width - side),
            Parameter.InRange(Y, 0, model.Height - side),
            Parameter.InRange(Steps, 1, limits.MaxPatchSteps),
            Parameter.InRange(StepSize, 0, 1, minExclusive: true));
    }
}

/// <summary>The query parameters of the attack endpoints.</summary>
/// <param name="IncludePixels">Add <c>pixels</c>: the float adversarial image, C·H·W values, row-major.</param>
public sealed record AttackQuery(bool IncludePixels = false);
