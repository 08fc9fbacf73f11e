using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Defense;

/// <summary>
/// STRAP-ViT in token space (Chattopadhyay et al., arXiv 2603.12688): embed the image, score each patch token by its
/// Jensen-Shannon distance to the clean reference at its position, flag "threshold, at least K", replace each
/// flagged token by a randomized composite transform of it, and run the encoder on the result. Benign tokens pass
/// unchanged; the class token is never scored or changed.
/// </summary>
public sealed class TokenPatchDefense(TokenSpaceModel model, TokenReference reference, DefenseOptions options) : IPatchDefense
{
    public string Variant => "token";

    public DefendedLogits[] Run(ReadOnlySpan<float> pixels, int batch, DefenseMode mode, IReadOnlyList<int> seeds, RunOptions? runOptions = null)
    {
        if (mode == DefenseMode.Off)
        {
            throw new ArgumentException("Run the plain classifier when the defense is off.", nameof(mode));
        }

        var sw = Stopwatch.StartNew();
        int t = model.TokenCount, d = model.Dim, first = model.FirstPatchToken;
        if (reference.TokenCount != t || reference.Dim != d)
        {
            throw new InvalidOperationException($"The calibration is for {reference.TokenCount}x{reference.Dim} tokens, the model has {t}x{d}.");
        }

        var tokens = model.Embed(pixels, batch, runOptions);
        var candidates = Enumerable.Range(first, t - first).ToArray();
        var scores = new double[t];
        var thresholds = reference.Threshold[first..].Select(v => v * options.ThresholdScale).ToArray();
        var pending = new (FlaggedToken[] Flagged, int Above, AppliedTransform[] Applied, double[] Scores, double[] Thresholds)[batch];
        for (var i = 0; i < batch; i++)
        {
            var image = tokens.AsSpan(i * t * d, t * d);
            var rng = new Random(seeds[i]);
            var (flagged, above, steps) = FlagAndTransform(image, d, reference, options, candidates, scores,
                mode == DefenseMode.Mitigate ? () => TokenMitigation.Draw(options, rng) : null);
            var applied = flagged.Take(steps.Length)
                .Select((k, j) => new AppliedTransform(k - first, steps[j].Select(step => step.Op).ToArray())).ToArray();

            pending[i] = (
                flagged.Select(k => Flag(k, scores[k])).ToArray(),
                above,
                applied,
                scores[first..].ToArray(),
                thresholds);
        }

        var logits = model.Encode(tokens, batch, runOptions);
        var perImageMs = sw.Elapsed.TotalMilliseconds / batch;
        var k2 = logits.Length / batch;
        var modeName = mode == DefenseMode.Detect ? "detect" : "mitigate";
        return pending.Select((p, i) => new DefendedLogits(
            logits.AsSpan(i * k2, k2).ToArray(),
            new DefenseReport(modeName, Variant, p.Flagged, p.Above, options.ThresholdScale, options.MinTokens, p.Applied, seeds[i], perImageMs),
            p.Scores,
            p.Thresholds)).ToArray();
    }

    /// <summary>
    /// Scores one image's tokens <c>[T*D]</c>, flags "threshold, at least K" among <paramref name="candidates"/>, and,
    /// when <paramref name="draw"/> is given, transforms each flagged token in place with the steps it draws. Shared
    /// with the adaptive attacker's view of the defense, so both run exactly the same defense.
    /// </summary>
    internal static (int[] Flagged, int Above, MitigationStep[][] Steps) FlagAndTransform(
        Span<float> image, int dim, TokenReference reference, DefenseOptions options, int[] candidates, double[] scores,
        Func<MitigationStep[]>? draw)
    {
        reference.Score(image, scores);
        var (flagged, above) = TokenSelection.Select(scores, reference.Threshold, candidates, options.MinTokens, options.ThresholdScale);
        var steps = new MitigationStep[draw is null ? 0 : flagged.Length][];
        for (var j = 0; j < steps.Length; j++)
        {
            var k = flagged[j];
            steps[j] = draw!();
            TokenMitigation.Apply(image.Slice(k * dim, dim), reference.Center[k], reference.Norm[k], steps[j]);
        }

        return (flagged, above, steps);
    }

    private FlaggedToken Flag(int tokenIndex, double score)
    {
        var patch = tokenIndex - model.FirstPatchToken;
        return new FlaggedToken(patch, patch / model.GridCols, patch % model.GridCols, Math.Round(score, 6),
            Math.Round(reference.Threshold[tokenIndex] * options.ThresholdScale, 6));
    }
}
