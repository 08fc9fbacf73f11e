using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Certification;

/// <summary>
/// The adaptive attacker's view of certified mode: the mean of the one-mask views, its logits against the views run
/// by the certifier's own classifier, its gradient against central finite differences.
/// </summary>
public sealed class CertifySurrogateTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly ModelPackage _package = ModelPackage.Load(RepoPaths.Fixture("models", "rgb-vit-32"));
    private readonly OnnxSessionFactory _sessions = new(Cpu, NullLogger<OnnxSessionFactory>.Instance);
    private readonly TokenSpaceModel _tokens;
    private readonly TokenGradients _gradients;
    private readonly MaskedTokenClassifier _views;
    private readonly MaskSet _masks;
    private readonly CertifySurrogateClassifier _surrogate;

    public CertifySurrogateTests()
    {
        _tokens = new TokenSpaceModel(_package, _sessions);
        _gradients = TokenGradients.Create(_package, _tokens, _sessions);
        _views = new MaskedTokenClassifier(_tokens, null);
        _masks = new PatchCertifier(_views, new CertifyOptions { ColBorderStride = 0 }).MasksFor(4);
        _surrogate = new CertifySurrogateClassifier(_package, _views, _masks, _gradients.Embedding, _sessions);
    }

    private static float[] Images(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n * 3 * 32 * 32).Select(_ => (float)rng.NextDouble()).ToArray();
    }

    [Fact]
    public void Logits_are_the_mean_of_the_one_mask_views()
    {
        var pixels = Images(2, 1);
        int t = _tokens.TokenCount, d = _tokens.Dim, k = _masks.Count;

        var logits = _surrogate.Logits(pixels, 2, default);

        // A 4-pixel patch on 8-pixel tokens without a stem reaches 2 tokens: 9 masks of 2x2 on the 4x4 grid.
        Assert.Equal(9, k);
        var tokens = _tokens.Embed(pixels, 2);
        for (var i = 0; i < 2; i++)
        {
            var views = _views.Logits(tokens.AsSpan(i * t * d, t * d), _masks.Masks);
            for (var c = 0; c < 5; c++)
            {
                var mean = Enumerable.Range(0, k).Average(v => views[(v * 5) + c]);
                Assert.Equal(mean, logits[(i * 5) + c], 4);
            }
        }
    }

    [Fact]
    public void The_gradient_matches_central_differences_of_the_mean_logits()
    {
        var rng = new Random(3);
        var x = Images(1, 2);
        var w = Enumerable.Range(0, 5).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();

        var grad = _surrogate.Vjp(x, w, 1, default).PixelGrad;

        for (var direction = 0; direction < 4; direction++)
        {
            var v = Enumerable.Range(0, x.Length).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();
            const float H = 1e-2f;
            var plus = Dot(_surrogate.Logits(x.Select((xi, i) => xi + (H * v[i])).ToArray(), 1, default), w);
            var minus = Dot(_surrogate.Logits(x.Select((xi, i) => xi - (H * v[i])).ToArray(), 1, default), w);
            var numeric = (plus - minus) / (2 * H);
            var analytic = Dot(grad, v);
            Assert.True(Math.Abs(analytic - numeric) <= 0.02 * Math.Max(Math.Abs(numeric), 0.1), $"analytic {analytic}, numeric {numeric}");
        }
    }

    [Fact]
    public void The_loss_is_the_mean_cross_entropy_of_the_views()
    {
        var x = Images(1, 4);
        int t = _tokens.TokenCount, d = _tokens.Dim, k = _masks.Count;

        var result = _surrogate.CrossEntropy(x, [3], 1, default);

        var views = _views.Logits(_tokens.Embed(x, 1).AsSpan(0, t * d), _masks.Masks);
        var expected = Enumerable.Range(0, k).Average(v =>
        {
            var row = views.AsSpan(v * 5, 5).ToArray();
            var max = row.Max();
            return Math.Log(row.Sum(z => Math.Exp(z - max))) + max - row[3];
        });
        Assert.Equal(expected, result.Loss![0], 3);
    }

    private static double Dot(float[] a, float[] b) => a.Select((ai, i) => (double)ai * b[i]).Sum();

    public void Dispose()
    {
        _surrogate.Dispose();
        _gradients.Dispose();
        _tokens.Dispose();
    }
}
