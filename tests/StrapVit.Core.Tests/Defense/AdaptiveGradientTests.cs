using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Gradients;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>The adaptive attacker's gradient through the split model and the drawn token transforms.</summary>
public sealed class AdaptiveGradientTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly ModelPackage _package = ModelPackage.Load(RepoPaths.Fixture("models", "rgb-vit-32"));
    private readonly OnnxSessionFactory _sessions = new(Cpu, NullLogger<OnnxSessionFactory>.Instance);
    private readonly TokenSpaceModel _tokens;
    private readonly TokenGradients _gradients;
    private readonly TokenReference _reference;

    public AdaptiveGradientTests()
    {
        _tokens = new TokenSpaceModel(_package, _sessions);
        _gradients = TokenGradients.Create(_package, _tokens, _sessions);
        var rng = new Random(2);
        var clean = Enumerable.Range(0, 12)
            .Select(_ => new ImageTensor(Enumerable.Range(0, 3 * 32 * 32).Select(_ => (float)rng.NextDouble()).ToArray(), 3, 32, 32))
            .ToList();
        _reference = DefenseCalibration.Compute(_package, _tokens, clean, 1.0, 16, 0.99).Tokens!;
    }

    private static float[] Image(int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, 3 * 32 * 32).Select(_ => (float)rng.NextDouble()).ToArray();
    }

    [Fact]
    public void With_nothing_flagged_the_gradient_is_the_plain_models()
    {
        var options = new DefenseOptions { MinTokens = 0, ThresholdScale = 1e6 };
        var eot = new EotTokenDefenseClassifier(_tokens, _reference, options, _gradients, samples: 1, seed: 1);
        var graphs = new GradientGraphs(null, NullLogger<GradientGraphs>.Instance);
        using var plain = GradientRunner.Create(_package, graphs, _sessions);
        var x = Image(9);

        var a = eot.CrossEntropy(x, [2], 1, default);
        var b = plain.CrossEntropy(x, [2], 1);

        Assert.Equal(b.Loss![0], a.Loss![0], 4);
        var scale = b.PixelGrad.Max(v => Math.Abs(v));
        for (var i = 0; i < x.Length; i++)
        {
            Assert.True(Math.Abs(a.PixelGrad[i] - b.PixelGrad[i]) <= 1e-4 * scale, $"pixel {i}: {a.PixelGrad[i]} vs {b.PixelGrad[i]}");
        }
    }

    [Fact]
    public void Through_drawn_transforms_the_gradient_matches_finite_differences()
    {
        // The paper's neutralisation (random composite transforms), whose backward the attacker differentiates exactly.
        var options = new DefenseOptions().PaperFaithful();
        options.MinTokens = 6;
        var x = Image(4);
        var rng = new Random(8);
        var v = Enumerable.Range(0, x.Length).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();

        // The same seed replays the same draw, so the defended function is fixed for the check.
        EotTokenDefenseClassifier Fresh() => new(_tokens, _reference, options, _gradients, samples: 1, seed: 3);
        var analytic = Fresh().CrossEntropy(x, [1], 1, default).PixelGrad.Zip(v, (g, d) => (double)g * d).Sum();
        double Loss(float h) => Fresh().CrossEntropy(x.Select((xi, i) => xi + (h * v[i])).ToArray(), [1], 1, default).Loss![0];
        const float H = 1e-3f;
        var numeric = (Loss(H) - Loss(-H)) / (2 * H);

        Assert.True(Math.Abs(analytic - numeric) <= 0.02 * Math.Max(Math.Abs(numeric), 1e-3), $"analytic {analytic}, numeric {numeric}");
    }

    public void Dispose()
    {
        _gradients.Dispose();
        _tokens.Dispose();
    }
}
