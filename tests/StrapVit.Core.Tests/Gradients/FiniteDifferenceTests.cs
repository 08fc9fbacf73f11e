using Xunit.Abstractions;

namespace StrapVit.Core.Tests.Gradients;

/// <summary>
/// Directional central differences of Σ cross-entropy in float32 (the loss output of the gradient graph itself)
/// against ⟨pixel_grad, v⟩, on the embedded model when it is present and on fixture ViTs.
/// </summary>
public sealed class FiniteDifferenceTests(ITestOutputHelper output)
{
    public static TheoryData<string> Packages()
    {
        var data = new TheoryData<string>();
        if (GradientTestData.EmbeddedModelExists) data.Add(GradientTestData.EmbeddedModelDir);
        data.Add(GradientTestData.FixtureDir("c1_cls_erf_op17"));
        data.Add(GradientTestData.FixtureDir("torchvision_tanhrep_op14"));
        return data;
    }

    [Theory]
    [MemberData(nameof(Packages))]
    public void Directional_derivatives_match_central_differences(string packageDir)
    {
        using var runner = GradientTestData.CreateRunner(packageDir);
        const int batch = 3;
        var rng = new Random(42);
        var x = Enumerable.Range(0, batch * runner.SampleSize).Select(_ => (float)rng.NextDouble()).ToArray();
        var labels = Enumerable.Range(0, batch).Select(_ => (long)rng.Next(runner.Classes)).ToArray();
        var grad = runner.CrossEntropy(x, labels, batch).PixelGrad;

        // Per direction, the better of two steps: float32 rounding grows as h shrinks, truncation error as it grows.
        for (var d = 0; d < 3; d++)
        {
            var v = Enumerable.Range(0, x.Length).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            var analytic = GradientCheck.Dot(grad, v);
            var best = double.MaxValue;
            foreach (var step in new[] { 1e-2f, 3e-3f })
            {
                var plus = runner.CrossEntropy(GradientCheck.Shift(x, v, step), labels, batch).Loss!.Sum(l => (double)l);
                var minus = runner.CrossEntropy(GradientCheck.Shift(x, v, -step), labels, batch).Loss!.Sum(l => (double)l);
                var numeric = (plus - minus) / (2 * step);
                var error = Math.Abs(analytic - numeric) / Math.Max(Math.Abs(numeric), 1e-2);
                output.WriteLine($"{Path.GetFileName(packageDir)} direction {d} h={step}: analytic {analytic:E4}, numeric {numeric:E4}, error {error:E2}");
                best = Math.Min(best, error);
            }

            Assert.True(best < 1e-2, $"direction {d}: directional derivative error {best:E3} at the better step");
        }
    }
}
