using Xunit.Abstractions;

namespace StrapVit.Core.Tests.Gradients;

/// <summary>
/// The builder's graphs against PyTorch float64 autograd on ViTs the service has never seen (other sizes, 1 and 3
/// channels, other normalizations, opsets 14/15/17, class token and mean pooling, GELU erf/tanh, ReLU, three
/// attention export styles, torchvision's VisionTransformer). Fixtures: tools/gradients/make_fixtures.py.
/// </summary>
public sealed class PyTorchParityTests(ITestOutputHelper output)
{
    private const double MaxRelativeError = 1e-4;
    private const double MaxScaledError = 5e-4;

    public static TheoryData<string> Variants() => new(GradientTestData.Variants);

    [Theory]
    [MemberData(nameof(Variants))]
    public void Cross_entropy_and_vjp_match_pytorch_autograd(string variant)
    {
        var dir = GradientTestData.FixtureDir(variant);
        var reference = ParityReference.Load(dir);
        using var runner = GradientTestData.CreateRunner(dir);

        var ce = runner.CrossEntropy(reference["pixels"], reference.Labels, reference.Batch);
        var vjp = runner.Vjp(reference["pixels"], reference["logits_grad"], reference.Batch);

        Check(variant, "logits", ce.Logits, reference["logits"]);
        Check(variant, "loss", ce.Loss!, reference["loss"]);
        Check(variant, "pixel_grad", ce.PixelGrad, reference["pixel_grad"]);
        Check(variant, "vjp logits", vjp.Logits, reference["logits"]);
        Check(variant, "vjp pixel_grad", vjp.PixelGrad, reference["vjp_grad"]);
    }

    private void Check(string variant, string what, float[] actual, float[] expected)
    {
        var rel = GradientTestData.RelativeError(actual, expected);
        var max = GradientTestData.ScaledMaxError(actual, expected);
        output.WriteLine($"{variant} {what}: relative error {rel:E2}, scaled max error {max:E2}");
        Assert.True(rel <= MaxRelativeError, $"{variant} {what}: relative error {rel:E3} > {MaxRelativeError:E0}");
        Assert.True(max <= MaxScaledError, $"{variant} {what}: scaled max error {max:E3} > {MaxScaledError:E0}");
    }
}
