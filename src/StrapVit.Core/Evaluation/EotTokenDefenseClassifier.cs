using StrapVit.Core.Attacks;
using StrapVit.Core.Defense;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Evaluation;

/// <summary>
/// The token defense as an adaptive attacker sees it: a differentiable classifier whose every call draws fresh
/// defense randomness, and whose gradients are averaged over <c>samples</c> draws (expectation over transformation,
/// Athalye et al., arXiv 1707.07397). Gradients flow exactly through the encoder, the drawn token transforms
/// (<see cref="TokenMitigation.Backward"/>) and the embedding; only the discrete choice of flagged tokens is held
/// fixed per draw. Any attack of Core/Attacks run on this model is the adaptive version of itself.
/// </summary>
public sealed class EotTokenDefenseClassifier(
    TokenSpaceModel model, TokenReference reference, DefenseOptions options, TokenGradients gradients, int samples, int seed)
    : IDifferentiableClassifier
{
    private readonly Random _rng = new(seed);
    private readonly Lock _gate = new();

    public int Channels => model.Manifest.Input.Channels;

    public int Height => model.Manifest.Input.Height;

    public int Width => model.Manifest.Input.Width;

    public int Classes => model.Manifest.Labels.Count;

    public float[] Logits(ReadOnlySpan<float> pixels, int batch, CancellationToken cancellationToken)
    {
        var (tokens, plans) = Defend(model.Embed(pixels, batch, cancellationToken), batch);
        var dropped = plans.Select(p => TokenPatchDefense.DroppedOf(p.Select(x => x.Token).ToArray(), p.Select(x => x.Steps).ToArray())).ToArray();
        return dropped.Any(x => x.Count > 0) ? model.EncodeDropping(tokens, batch, dropped, cancellationToken) : model.Encode(tokens, batch, cancellationToken);
    }

    public GradientResult CrossEntropy(ReadOnlySpan<float> pixels, ReadOnlySpan<long> labels, int batch, CancellationToken cancellationToken)
    {
        var labelArray = labels.ToArray();
        return Average(pixels, batch, defended => gradients.Encoder.CrossEntropy(defended, labelArray, batch, cancellationToken), cancellationToken);
    }

    public GradientResult Vjp(ReadOnlySpan<float> pixels, ReadOnlySpan<float> logitsGrad, int batch, CancellationToken cancellationToken)
    {
        var cotangent = logitsGrad.ToArray();
        return Average(pixels, batch, defended => gradients.Encoder.Vjp(defended, cotangent, batch, cancellationToken), cancellationToken);
    }

    private GradientResult Average(ReadOnlySpan<float> pixels, int batch, Func<float[], GradientResult> encoderGradient, CancellationToken cancellationToken)
    {
        var clean = model.Embed(pixels, batch, cancellationToken);
        var logits = new float[batch * Classes];
        var grad = new float[pixels.Length];
        float[]? loss = null;
        for (var m = 0; m < samples; m++)
        {
            var (defended, plans) = Defend(clean, batch);
            var encoder = encoderGradient(defended);
            var tokenGrad = encoder.PixelGrad;
            int t = model.TokenCount, d = model.Dim;
            for (var i = 0; i < batch; i++)
            {
                foreach (var (token, steps) in plans[i])
                {
                    var offset = ((i * t) + token) * d;
                    TokenMitigation.Backward(clean.AsSpan(offset, d), reference.Center[token], reference.Norm[token], steps, tokenGrad.AsSpan(offset, d));
                }
            }

            var pixelGrad = gradients.Embedding.Vjp(pixels, tokenGrad, batch, cancellationToken).PixelGrad;
            for (var i = 0; i < grad.Length; i++) grad[i] += pixelGrad[i] / samples;
            for (var i = 0; i < logits.Length; i++) logits[i] += encoder.Logits[i] / samples;
            if (encoder.Loss is { } l)
            {
                loss ??= new float[batch];
                for (var i = 0; i < batch; i++) loss[i] += l[i] / samples;
            }
        }

        return new GradientResult(batch, Classes, logits, loss, grad);
    }

    private Random NextRandom()
    {
        lock (_gate)
        {
            return new Random(_rng.Next());
        }
    }

    /// <summary>One draw of the defense over clean tokens: the defended tokens and, per image, each flagged token's steps.</summary>
    private (float[] Tokens, List<(int Token, MitigationStep[] Steps)>[] Plans) Defend(float[] clean, int batch)
    {
        int t = model.TokenCount, d = model.Dim, first = model.FirstPatchToken;
        var tokens = (float[])clean.Clone();
        var candidates = Enumerable.Range(first, t - first).ToArray();
        var scores = new double[t];
        var plans = new List<(int, MitigationStep[])>[batch];
        var grid = new TokenGrid(d, first, model.GridRows, model.GridCols, model.Manifest.PatchSize);
        for (var i = 0; i < batch; i++)
        {
            var (flagged, _, steps) = TokenPatchDefense.FlagAndTransform(tokens.AsSpan(i * t * d, t * d), grid, reference, options, candidates, scores, NextRandom());
            plans[i] = flagged.Zip(steps).ToList();
        }

        return (tokens, plans);
    }
}
