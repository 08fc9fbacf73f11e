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

    public TokenReference Reference => reference;

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
        var pending = new (FlaggedToken[] Flagged, int Above, AppliedTransform[] Applied, double[] Scores, double[] Thresholds)[batch];
        for (var i = 0; i < batch; i++)
        {
            var image = tokens.AsSpan(i * t * d, t * d);
            reference.Score(image, scores);
            var (flagged, above) = TokenSelection.Select(scores, reference.Threshold, candidates, options.MinTokens, options.ThresholdScale);
            var applied = Array.Empty<AppliedTransform>();
            if (mode == DefenseMode.Mitigate)
            {
                var rng = new Random(seeds[i]);
                applied = new AppliedTransform[flagged.Length];
                for (var j = 0; j < flagged.Length; j++)
                {
                    var k = flagged[j];
                    applied[j] = new AppliedTransform(k - first,
                        TokenMitigation.Apply(image.Slice(k * d, d), reference.Center[k], reference.Norm[k], options, rng));
                }
            }

            pending[i] = (
                flagged.Select(k => Flag(k, scores[k])).ToArray(),
                above,
                applied,
                scores[first..].ToArray(),
                reference.Threshold[first..].Select(v => v * options.ThresholdScale).ToArray());
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

    private FlaggedToken Flag(int tokenIndex, double score)
    {
        var patch = tokenIndex - model.FirstPatchToken;
        return new FlaggedToken(patch, patch / model.GridCols, patch % model.GridCols, Math.Round(score, 6),
            Math.Round(reference.Threshold[tokenIndex] * options.ThresholdScale, 6));
    }
}
