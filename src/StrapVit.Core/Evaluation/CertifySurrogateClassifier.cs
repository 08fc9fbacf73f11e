using StrapVit.Core.Attacks;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Core.Evaluation;

/// <summary>
/// A differentiable stand-in for certified mode, for an attacker who optimises a patch against it: logits are the
/// mean of the one-mask views' logits (every mask of the mask set, masked exactly as certified mode
/// masks), gradients flow through the encoder on the kept tokens of each view (scattered back to their positions:
/// a dropped or replaced token has gradient 0) and the embedding. Certified mode's discrete vote is not
/// differentiable; pushing the average of its voters away from the label is the attacker's best smooth proxy.
/// Images <c>[N, C, H, W]</c>; each call runs <c>N·k</c> encoder views of <c>T'</c> tokens.
/// </summary>
public sealed class CertifySurrogateClassifier : IDifferentiableClassifier, IDisposable
{
    private readonly MaskedTokenClassifier _views;
    private readonly MaskSet _masks;
    private readonly GradientRunner _encoder;
    private readonly GradientRunner _embedding;
    private readonly int[][] _kept;
    private readonly int _length;

    /// <param name="package">The model package (its encoder is differentiated at the shorter length).</param>
    /// <param name="views">Certified mode's masked classifier.</param>
    /// <param name="masks">The mask set whose one-mask views are averaged.</param>
    /// <param name="embedding">The embedding's VJP (<see cref="TokenGradients.Embedding"/>).</param>
    /// <param name="sessions">Session factory for the encoder's gradient graphs.</param>
    public CertifySurrogateClassifier(ModelPackage package, MaskedTokenClassifier views, MaskSet masks, GradientRunner embedding, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentNullException.ThrowIfNull(views);
        ArgumentNullException.ThrowIfNull(masks);
        _views = views;
        _masks = masks;
        _embedding = embedding;
        var model = views.Model;
        // Every mask of a set hides as many cells, so every view keeps as many tokens.
        _kept = masks.Masks.Select(views.Kept).ToArray();
        _length = views.Method == MaskingMethod.Drop ? _kept[0].Length : model.TokenCount;
        var tokens = package.Manifest.Tokens ?? throw new ModelPackageException("model.json has no 'tokens' entry.");
        _encoder = TokenGradients.CreateEncoder(TokenGraphSplitter.Split(ForwardGraph.LoadNormalized(package), tokens.Tensor).Encoder, _length, model.Dim, sessions);
    }

    public int Channels => _views.Model.Manifest.Input.Channels;

    public int Height => _views.Model.Manifest.Input.Height;

    public int Width => _views.Model.Manifest.Input.Width;

    public int Classes => _views.Classes;

    public float[] Logits(ReadOnlySpan<float> pixels, int batch, CancellationToken cancellationToken)
    {
        var tokens = _views.Model.Embed(pixels, batch, cancellationToken);
        int t = _views.Model.TokenCount, d = _views.Model.Dim, k = _masks.Count;
        var logits = new float[batch * Classes];
        for (var i = 0; i < batch; i++)
        {
            var views = _views.Logits(tokens.AsSpan(i * t * d, t * d), _masks.Masks, cancellationToken);
            for (var v = 0; v < k; v++)
            {
                for (var c = 0; c < Classes; c++) logits[(i * Classes) + c] += views[(v * Classes) + c] / k;
            }
        }

        return logits;
    }

    public GradientResult CrossEntropy(ReadOnlySpan<float> pixels, ReadOnlySpan<long> labels, int batch, CancellationToken cancellationToken)
    {
        var perView = new long[batch * _masks.Count];
        for (var i = 0; i < perView.Length; i++) perView[i] = labels[i / _masks.Count];
        return Run(pixels, batch, (views, n) => _encoder.CrossEntropy(views, perView, n, cancellationToken), cancellationToken);
    }

    public GradientResult Vjp(ReadOnlySpan<float> pixels, ReadOnlySpan<float> logitsGrad, int batch, CancellationToken cancellationToken)
    {
        var k = _masks.Count;
        var perView = new float[batch * k * Classes];
        for (var r = 0; r < batch * k; r++)
        {
            for (var c = 0; c < Classes; c++) perView[(r * Classes) + c] = logitsGrad[((r / k) * Classes) + c];
        }

        return Run(pixels, batch, (views, n) => _encoder.Vjp(views, perView, n, cancellationToken), cancellationToken);
    }

    private GradientResult Run(ReadOnlySpan<float> pixels, int batch, Func<float[], int, GradientResult> encoderGradient, CancellationToken cancellationToken)
    {
        var model = _views.Model;
        int t = model.TokenCount, d = model.Dim, k = _masks.Count, n = batch * k;
        var tokens = model.Embed(pixels, batch, cancellationToken);
        var views = new float[n * _length * d];
        for (var i = 0; i < batch; i++)
        {
            for (var v = 0; v < k; v++)
            {
                var row = (i * k) + v;
                if (_views.Method == MaskingMethod.Drop)
                {
                    for (var j = 0; j < _length; j++) Array.Copy(tokens, ((i * t) + _kept[v][j]) * d, views, ((row * _length) + j) * d, d);
                }
                else
                {
                    Array.Copy(tokens, i * t * d, views, row * t * d, t * d);
                    foreach (var p in _masks.Masks[v])
                    {
                        // Replaced tokens: the constant is not a function of the pixels, so they carry no gradient below.
                        Array.Copy(ReplacementOf(p + model.FirstPatchToken), 0, views, ((row * t) + p + model.FirstPatchToken) * d, d);
                    }
                }
            }
        }

        var encoder = encoderGradient(views, n);
        var tokenGrad = new float[batch * t * d];
        for (var i = 0; i < batch; i++)
        {
            for (var v = 0; v < k; v++)
            {
                var row = (i * k) + v;
                for (var j = 0; j < _kept[v].Length; j++)
                {
                    var position = _kept[v][j];
                    var src = ((row * _length) + (_views.Method == MaskingMethod.Drop ? j : position)) * d;
                    var dst = ((i * t) + position) * d;
                    for (var c = 0; c < d; c++) tokenGrad[dst + c] += encoder.PixelGrad[src + c] / k;
                }
            }
        }

        var logits = new float[batch * Classes];
        float[]? loss = encoder.Loss is null ? null : new float[batch];
        for (var r = 0; r < n; r++)
        {
            for (var c = 0; c < Classes; c++) logits[((r / k) * Classes) + c] += encoder.Logits[(r * Classes) + c] / k;
            if (loss is not null) loss[r / k] += encoder.Loss![r] / k;
        }

        var pixelGrad = _embedding.Vjp(pixels, tokenGrad, batch, cancellationToken).PixelGrad;
        return new GradientResult(batch, Classes, logits, loss, pixelGrad);
    }

    private float[] ReplacementOf(int token) =>
        _views.Replacement?[token] ?? throw new InvalidOperationException("Replace masking without a replacement.");

    public void Dispose() => _encoder.Dispose();
}
