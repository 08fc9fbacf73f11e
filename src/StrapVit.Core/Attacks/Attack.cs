using System.Diagnostics;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Numerics;

namespace StrapVit.Core.Attacks;

/// <summary>
/// Base of every per-image attack, the Foolbox way: an attack is configured once (its constructor takes the
/// hyper-parameters) and is stateless per call, so one instance can serve concurrent requests. <see cref="Run"/>
/// enforces the contract the subclasses only contribute a perturbation to: the attack-specific constraint
/// (ε-ball, patch mask), clipping to [0, 1], success judged per sample on the float image and again on its 8-bit
/// quantization, L∞ and L2 norms, iterations, the seed, and cancellation of every run through the call's token.
/// </summary>
public abstract class Attack
{
    /// <summary>The attack's name as the API and the metrics spell it (fgsm, pgd, deepfool, patch).</summary>
    public abstract string Name { get; }

    /// <summary>
    /// Attacks <paramref name="batch"/> images (row-major <c>[N, C, H, W]</c> in [0, 1]) toward <paramref name="goal"/>.
    /// </summary>
    /// <param name="model">The differentiable model.</param>
    /// <param name="images">Clean images, N·C·H·W values in [0, 1].</param>
    /// <param name="batch">N, at least 1.</param>
    /// <param name="goal">Untargeted or targeted, per call.</param>
    /// <param name="seed">Seeds every random choice (random start, patch place): the same seed gives the same result.</param>
    /// <param name="cancellationToken">Stops the attack, including a running ONNX Runtime call.</param>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public AttackResult Run(IDifferentiableClassifier model, ReadOnlySpan<float> images, int batch, AttackGoal goal, int seed,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(goal);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        var size = model.SampleSize();
        if (images.Length != batch * size)
        {
            throw new ArgumentException($"Expected {batch}x{size} values, got {images.Length}.", nameof(images));
        }

        foreach (var v in images)
        {
            if (!(v >= 0f && v <= 1f))
            {
                throw new ArgumentException("Images must be in [0, 1] pixel space.", nameof(images));
            }
        }

        using var activity = CoreActivities.Attack(Name, batch);
        var started = Stopwatch.GetTimestamp();
        var context = new AttackContext(model, cancellationToken);
        var clean = images.ToArray();
        var cleanLogits = context.Logits(clean, batch);
        var criterion = goal.Resolve(cleanLogits, batch, model.Classes);

        var perturbation = Perturb(context, clean, batch, criterion, new Random(seed));
        var adversarial = perturbation.Adversarial;
        for (var i = 0; i < batch; i++)
        {
            Constrain(clean.AsSpan(i * size, size), adversarial.AsSpan(i * size, size), i, perturbation, model);
        }

        Clip01(adversarial);
        var quantized = Quantize(adversarial);
        var advLogits = context.Logits(adversarial, batch);
        var quantLogits = context.Logits(quantized, batch);

        var k = model.Classes;
        var samples = new AttackSample[batch];
        for (var i = 0; i < batch; i++)
        {
            var x = clean.AsSpan(i * size, size);
            var a = adversarial.AsSpan(i * size, size);
            samples[i] = new AttackSample(
                (int)criterion.Classes[i],
                criterion.Targeted,
                Probabilities.ArgMax(cleanLogits.AsSpan(i * k, k)),
                Probabilities.ArgMax(advLogits.AsSpan(i * k, k)),
                Probabilities.ArgMax(quantLogits.AsSpan(i * k, k)),
                criterion.IsAdversarial(i, advLogits.AsSpan(i * k, k)),
                criterion.IsAdversarial(i, quantLogits.AsSpan(i * k, k)),
                PerturbationNorm.Linf.Distance(x, a),
                PerturbationNorm.L2.Distance(x, a),
                perturbation.Iterations[i],
                perturbation.Patches?[i]);
        }

        activity?.SetTag(CoreActivities.AttackIterations, perturbation.Iterations.Max())
            .SetTag(CoreActivities.AttackSuccesses, samples.Count(s => s.Success));
        return new AttackResult(Name, batch, size, k, adversarial, quantized, cleanLogits, advLogits, quantLogits, samples, seed,
            Stopwatch.GetElapsedTime(started));
    }

    /// <summary>The attack proper: returns the adversarial images (the base constrains and clips them afterwards).</summary>
    /// <param name="context">Model access with cancellation.</param>
    /// <param name="clean">The clean images (do not modify).</param>
    /// <param name="batch">N.</param>
    /// <param name="criterion">Per-sample loss classes and success test.</param>
    /// <param name="random">The only source of randomness, seeded per call.</param>
    protected abstract Perturbation Perturb(AttackContext context, float[] clean, int batch, Criterion criterion, Random random);

    /// <summary>The attack's own constraint on one sample (ε-ball, patch mask), applied before clipping to [0, 1].</summary>
    protected virtual void Constrain(ReadOnlySpan<float> clean, Span<float> adversarial, int sample, Perturbation perturbation,
        IDifferentiableClassifier model)
    {
    }

    /// <summary>Clamps every value to [0, 1].</summary>
    public static void Clip01(Span<float> values)
    {
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = Math.Clamp(values[i], 0f, 1f);
        }
    }

    /// <summary>Rounds every value to the nearest of 256 levels, as an 8-bit PNG carries it.</summary>
    public static float[] Quantize(ReadOnlySpan<float> values)
    {
        var q = new float[values.Length];
        for (var i = 0; i < q.Length; i++)
        {
            q[i] = MathF.Round(Math.Clamp(values[i], 0f, 1f) * 255f) / 255f;
        }

        return q;
    }
}

/// <summary>What <see cref="Attack.Perturb"/> produced: images, gradient iterations per sample, patch places (patch attacks).</summary>
public sealed record Perturbation(float[] Adversarial, int[] Iterations, IReadOnlyList<PatchPlacement>? Patches = null);

/// <summary>A square patch: top-left corner and side, in pixels.</summary>
public sealed record PatchPlacement(int X, int Y, int Size);

/// <summary>
/// The model as an attack sees it during one call: every run carries the call's cancellation token, which the ONNX
/// Runtime runner turns into a terminated run, surfacing as <see cref="OperationCanceledException"/>.
/// </summary>
public sealed class AttackContext(IDifferentiableClassifier model, CancellationToken cancellationToken)
{
    public IDifferentiableClassifier Model { get; } = model;

    public CancellationToken CancellationToken { get; } = cancellationToken;

    public int SampleSize => Model.SampleSize();

    public float[] Logits(ReadOnlySpan<float> pixels, int batch)
    {
        CancellationToken.ThrowIfCancellationRequested();
        return Model.Logits(pixels, batch, CancellationToken);
    }

    public Gradients.GradientResult CrossEntropy(ReadOnlySpan<float> pixels, ReadOnlySpan<long> labels, int batch)
    {
        CancellationToken.ThrowIfCancellationRequested();
        return Model.CrossEntropy(pixels, labels, batch, CancellationToken);
    }

    public Gradients.GradientResult Vjp(ReadOnlySpan<float> pixels, ReadOnlySpan<float> logitsGrad, int batch)
    {
        CancellationToken.ThrowIfCancellationRequested();
        return Model.Vjp(pixels, logitsGrad, batch, CancellationToken);
    }
}
