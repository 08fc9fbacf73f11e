using StrapVit.Core.Attacks;
using StrapVit.Core.Attacks.Universal;

namespace StrapVit.Core.Evaluation;

/// <summary>Patched versions of an evaluation set, and where each patch went.</summary>
public sealed record PatchedSet(int PatchSize, EvaluationSet Images, IReadOnlyList<PatchPlacement> Placements, double AttackSuccessRate);

/// <summary>Builds the patched image sets the evaluation scores the defenses on.</summary>
public static class PatchScenarios
{
    private const int Chunk = 100;

    /// <summary>LaVAN-style per-image patches, untargeted against the true label, optimised on <paramref name="model"/>.</summary>
    public static PatchedSet PerImage(IDifferentiableClassifier model, EvaluationSet set, int patchSize, int steps, int seed)
    {
        var attack = new PatchAttack(patchSize, steps: steps);
        var pixels = new float[set.Pixels.Length];
        var placements = new List<PatchPlacement>(set.Count);
        var successes = 0;
        for (var start = 0; start < set.Count; start += Chunk)
        {
            var n = Math.Min(Chunk, set.Count - start);
            var labels = set.Labels.Skip(start).Take(n).ToArray();
            var result = attack.Run(model, set.Pixels.AsSpan(start * set.SampleSize, n * set.SampleSize), n, AttackGoal.Untargeted(labels), seed + start);
            // The 8-bit image is what a client would upload; score the defenses on it.
            result.Quantized.CopyTo(pixels, start * set.SampleSize);
            placements.AddRange(result.Samples.Select(s => s.Patch!));
            successes += result.Samples.Count(s => s.SuccessQuantized);
        }

        return new PatchedSet(patchSize, set.WithPixels(pixels), placements, successes / (double)set.Count);
    }

    /// <summary>
    /// <see cref="PerImage"/> kept in <paramref name="cacheDirectory"/> under a key of the model, the images, the size,
    /// the steps and the seed, so repeated evaluations of defenses on the same attacked images do not redo the attack.
    /// </summary>
    public static PatchedSet PerImageCached(
        IDifferentiableClassifier model, string modelSha256, EvaluationSet set, int patchSize, int steps, int seed, string? cacheDirectory)
    {
        if (cacheDirectory is null)
        {
            return PerImage(model, set, patchSize, steps, seed);
        }

        var imagesHash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(set.Pixels.AsSpan())))[..16];
        var path = Path.Combine(cacheDirectory, $"patched-{modelSha256[..16]}-{imagesHash}-{set.Count}-p{patchSize}-s{steps}-seed{seed}.json");
        if (File.Exists(path))
        {
            var cached = System.Text.Json.JsonSerializer.Deserialize<CachedPatchedSet>(File.ReadAllText(path))!;
            return new PatchedSet(patchSize, set.WithPixels(cached.Pixels), cached.Placements, cached.AttackSuccessRate);
        }

        var patched = PerImage(model, set, patchSize, steps, seed);
        Directory.CreateDirectory(cacheDirectory);
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(new CachedPatchedSet(patched.Images.Pixels, patched.Placements.ToArray(), patched.AttackSuccessRate)));
        return patched;
    }

    private sealed record CachedPatchedSet(
        [property: System.Text.Json.Serialization.JsonConverter(typeof(Defense.Base64FloatsConverter))] float[] Pixels,
        PatchPlacement[] Placements, double AttackSuccessRate);

    /// <summary>
    /// A universal patch (Brown et al.) trained on <paramref name="train"/> toward <paramref name="target"/>, pasted on
    /// every image of <paramref name="set"/> at a random pose. Placement is the pose's bounding square, rounded.
    /// </summary>
    public static (PatchedSet Set, UniversalPatchResult Patch) Universal(
        IDifferentiableClassifier model, EvaluationSet train, EvaluationSet set, int patchSize, int target, int steps, int seed)
    {
        var settings = new UniversalPatchSettings(patchSize, target, Steps: steps);
        var trainer = new UniversalPatchTrainer(settings);
        var patch = trainer.Train(model, train.Pixels, train.Count, seed);
        int c = model.Channels, h = model.Height, w = model.Width;
        var random = new Random(seed + 1);
        var pixels = (float[])set.Pixels.Clone();
        var placements = new List<PatchPlacement>(set.Count);
        for (var i = 0; i < set.Count; i++)
        {
            var pose = PatchTransform.RandomPose(random, patchSize, h, w, settings.MaxAngle, settings.MinScale, settings.MaxScale);
            PatchTransform.Apply(pixels.AsSpan(i * set.SampleSize, set.SampleSize), c, h, w, patch.Patch, patchSize, pose);
            var side = (int)Math.Round(patchSize * pose.Scale);
            placements.Add(new PatchPlacement(
                Math.Clamp((int)Math.Round(pose.CenterX - (side / 2.0)), 0, w - side),
                Math.Clamp((int)Math.Round(pose.CenterY - (side / 2.0)), 0, h - side),
                side));
        }

        var quantized = Attack.Quantize(pixels);
        var logits = model.Logits(quantized, set.Count, CancellationToken.None);
        var hits = Enumerable.Range(0, set.Count).Count(i => set.Labels[i] != target
            && Numerics.Probabilities.ArgMax(logits.AsSpan(i * model.Classes, model.Classes)) == target);
        var eligible = set.Labels.Count(l => l != target);
        return (new PatchedSet(patchSize, set.WithPixels(quantized), placements, hits / (double)Math.Max(1, eligible)), patch);
    }
}
