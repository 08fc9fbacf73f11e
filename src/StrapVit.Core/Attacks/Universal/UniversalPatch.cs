using System.Diagnostics;
using StrapVit.Core.Numerics;

namespace StrapVit.Core.Attacks.Universal;

/// <summary>
/// Settings of a universal adversarial patch (Brown, Mané, Roy, Abadi, Gilmer, "Adversarial Patch",
/// arXiv 1712.09665): one square patch, trained over many images with random placement, rotation and scale
/// (expectation over transformation), to make the model answer <see cref="TargetClass"/>.
/// </summary>
/// <param name="PatchSize">Side S of the patch in pixels at scale 1 (6 is about 5% of a 28×28 image).</param>
/// <param name="TargetClass">The class the patch should force.</param>
/// <param name="Steps">Optimiser steps; default 500.</param>
/// <param name="BatchSize">Images (each with its own random pose) per step; default 32.</param>
/// <param name="StepSize">Adam learning rate on patch values in [0, 1]; default 0.05.</param>
/// <param name="MaxRotationDegrees">Rotation drawn uniformly in ±this; default 22.5.</param>
/// <param name="MinScale">Smallest scale of the side; default 0.8 (Brown et al. use 0.1 to 1 of a large image; on
/// 28×28 images a tenth of a 6-pixel patch is under one pixel).</param>
/// <param name="MaxScale">Largest scale; default 1.</param>
public sealed record UniversalPatchSettings(
    int PatchSize,
    int TargetClass,
    int Steps = 500,
    int BatchSize = 32,
    float StepSize = 0.05f,
    float MaxRotationDegrees = 22.5f,
    float MinScale = 0.8f,
    float MaxScale = 1f)
{
    public float MaxAngle => MaxRotationDegrees * MathF.PI / 180f;

    /// <summary>The first problem with these settings for a model of that size, as (parameter, reason), or null.</summary>
    public (string Parameter, string Reason)? Problem(int height, int width, int classes)
    {
        if (PatchSize < 1 || PatchSize > Math.Min(height, width)) return ("patchSize", $"must be in [1, {Math.Min(height, width)}].");
        if (TargetClass < 0 || TargetClass >= classes) return ("targetClass", $"must be in [0, {classes - 1}].");
        if (Steps < 1) return ("steps", "must be at least 1.");
        if (BatchSize < 1) return ("batchSize", "must be at least 1.");
        if (!(StepSize > 0) || !float.IsFinite(StepSize)) return ("stepSize", "must be positive and finite.");
        if (!(MaxRotationDegrees >= 0 && MaxRotationDegrees <= 180)) return ("maxRotation", "must be in [0, 180].");
        if (!(MinScale > 0 && MinScale <= MaxScale)) return ("minScale", "must be positive and at most maxScale.");
        if (!(MaxScale > 0 && MaxScale <= 1)) return ("maxScale", "must be in (0, 1].");
        return null;
    }
}

/// <summary>Training progress: step done, total, success rate on the last training batches, time spent and left.</summary>
public sealed record UniversalPatchProgress(int Step, int TotalSteps, double SuccessRate, TimeSpan Elapsed, TimeSpan? Remaining, float[] Patch);

/// <summary>A trained patch <c>[C, S, S]</c> in [0, 1], with its final training success rate.</summary>
public sealed record UniversalPatchResult(float[] Patch, int Channels, int Size, int Steps, double TrainSuccessRate, TimeSpan Elapsed);

/// <summary>Success on held-out images: of <see cref="Evaluated"/> images not already of the target class, how many the patch turned into it.</summary>
public sealed record UniversalPatchEvaluation(int Evaluated, int Successes)
{
    public double SuccessRate => Evaluated == 0 ? 0 : Successes / (double)Evaluated;
}

/// <summary>
/// Trains and evaluates universal patches. Optimiser: Adam on the patch values (clipped to [0, 1] after each step)
/// minimising the mean targeted cross-entropy over a batch of images, each with the patch pasted under its own random
/// pose: the gradient of the patch is the adjoint of the paste (<see cref="PatchTransform.Backward"/>) applied to the
/// pixel gradient of one fused forward + backward run over the batch. Adam suits the averaged, noisy EOT gradient
/// better than signed steps. Tensor shapes: images <c>[N, C, H, W]</c>, each run <c>[BatchSize, C, H, W]</c>.
/// Stateless between calls; the same seed gives the same patch.
/// </summary>
public sealed class UniversalPatchTrainer(UniversalPatchSettings settings)
{
    private const int Window = 10;

    public UniversalPatchSettings Settings { get; } = settings ?? throw new ArgumentNullException(nameof(settings));

    /// <param name="model">The differentiable model.</param>
    /// <param name="images">Training images <c>[N, C, H, W]</c> in [0, 1]; leave out those of the target class.</param>
    /// <param name="count">N.</param>
    /// <param name="seed">Seeds the initial patch, the batches and the poses.</param>
    /// <param name="progress">Told after every step.</param>
    /// <param name="cancellationToken">Stops training, including a running ONNX Runtime call.</param>
    public UniversalPatchResult Train(IDifferentiableClassifier model, ReadOnlySpan<float> images, int count, int seed,
        IProgress<UniversalPatchProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (Settings.Problem(model.Height, model.Width, model.Classes) is { } problem)
        {
            throw new AttackParameterException(problem.Parameter, $"{problem.Parameter} {problem.Reason}");
        }

        int c = model.Channels, h = model.Height, w = model.Width, size = model.SampleSize(), s = Settings.PatchSize;
        if (count < 1 || images.Length != count * size) throw new ArgumentException($"Expected {count}x{size} values.", nameof(images));
        var started = Stopwatch.GetTimestamp();
        var random = new Random(seed);
        var patch = new float[c * s * s];
        for (var i = 0; i < patch.Length; i++) patch[i] = (float)random.NextDouble();
        var m = new float[patch.Length];
        var v = new float[patch.Length];
        var grad = new float[patch.Length];
        var batch = Settings.BatchSize;
        var pixels = new float[batch * size];
        var poses = new PatchPose[batch];
        var labels = Enumerable.Repeat((long)Settings.TargetClass, batch).ToArray();
        var recent = new Queue<double>();

        var context = new AttackContext(model, cancellationToken);
        const float Beta1 = 0.9f, Beta2 = 0.999f, AdamEps = 1e-8f;
        for (var step = 1; step <= Settings.Steps; step++)
        {
            for (var b = 0; b < batch; b++)
            {
                images.Slice(random.Next(count) * size, size).CopyTo(pixels.AsSpan(b * size, size));
                poses[b] = PatchTransform.RandomPose(random, s, h, w, Settings.MaxAngle, Settings.MinScale, Settings.MaxScale);
                PatchTransform.Apply(pixels.AsSpan(b * size, size), c, h, w, patch, s, poses[b]);
            }

            var result = context.CrossEntropy(pixels, labels, batch);
            Array.Clear(grad);
            var hits = 0;
            for (var b = 0; b < batch; b++)
            {
                if (Probabilities.ArgMax(result.LogitsOf(b)) == Settings.TargetClass) hits++;
                PatchTransform.Backward(result.PixelGradOf(b), c, h, w, grad, s, poses[b]);
            }

            float bias1 = 1 - MathF.Pow(Beta1, step), bias2 = 1 - MathF.Pow(Beta2, step);
            for (var i = 0; i < patch.Length; i++)
            {
                var g = grad[i] / batch;
                m[i] = (Beta1 * m[i]) + ((1 - Beta1) * g);
                v[i] = (Beta2 * v[i]) + ((1 - Beta2) * g * g);
                patch[i] = Math.Clamp(patch[i] - (Settings.StepSize * (m[i] / bias1) / (MathF.Sqrt(v[i] / bias2) + AdamEps)), 0f, 1f);
            }

            recent.Enqueue(hits / (double)batch);
            if (recent.Count > Window) recent.Dequeue();
            if (progress is not null)
            {
                var elapsed = Stopwatch.GetElapsedTime(started);
                progress.Report(new UniversalPatchProgress(step, Settings.Steps, recent.Average(), elapsed,
                    elapsed / step * (Settings.Steps - step), (float[])patch.Clone()));
            }
        }

        return new UniversalPatchResult(patch, c, s, Settings.Steps, recent.Count > 0 ? recent.Average() : 0, Stopwatch.GetElapsedTime(started));
    }

    /// <summary>
    /// Pastes <paramref name="patch"/> on each image under a random pose of these settings (seeded) and counts the
    /// images the model then puts in the target class, among those whose clean prediction (and label, when given)
    /// is not already the target.
    /// </summary>
    public UniversalPatchEvaluation Evaluate(IDifferentiableClassifier model, ReadOnlySpan<float> patch, ReadOnlySpan<float> images, int count,
        IReadOnlyList<int>? labels, int seed, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        int c = model.Channels, h = model.Height, w = model.Width, size = model.SampleSize(), k = model.Classes, s = Settings.PatchSize;
        var context = new AttackContext(model, cancellationToken);
        var random = new Random(seed);
        int evaluated = 0, successes = 0;
        const int Chunk = 64;
        for (var start = 0; start < count; start += Chunk)
        {
            var n = Math.Min(Chunk, count - start);
            var clean = images.Slice(start * size, n * size).ToArray();
            var cleanLogits = context.Logits(clean, n);
            var patched = (float[])clean.Clone();
            for (var i = 0; i < n; i++)
            {
                var pose = PatchTransform.RandomPose(random, s, h, w, Settings.MaxAngle, Settings.MinScale, Settings.MaxScale);
                PatchTransform.Apply(patched.AsSpan(i * size, size), c, h, w, patch, s, pose);
            }

            var logits = context.Logits(patched, n);
            for (var i = 0; i < n; i++)
            {
                if (Probabilities.ArgMax(cleanLogits.AsSpan(i * k, k)) == Settings.TargetClass) continue;
                if (labels is not null && labels[start + i] == Settings.TargetClass) continue;
                evaluated++;
                if (Probabilities.ArgMax(logits.AsSpan(i * k, k)) == Settings.TargetClass) successes++;
            }
        }

        return new UniversalPatchEvaluation(evaluated, successes);
    }
}
