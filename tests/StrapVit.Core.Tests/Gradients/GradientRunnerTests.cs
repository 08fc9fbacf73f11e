namespace StrapVit.Core.Tests.Gradients;

public sealed class GradientRunnerTests : IDisposable
{
    private readonly Core.Gradients.GradientRunner runner = GradientTestData.CreateRunner(GradientTestData.FixtureDir("c3_mean_tanh_op14"));

    [Fact]
    public void Reports_the_model_geometry()
    {
        Assert.Equal((3, 24, 24, 7), (runner.Channels, runner.Height, runner.Width, runner.Classes));
        Assert.Equal(3 * 24 * 24, runner.SampleSize);
        Assert.Equal("CPUExecutionProvider", runner.ExecutionProvider);
    }

    [Fact]
    public void Rejects_inputs_that_do_not_match_the_batch()
    {
        var pixels = new float[2 * runner.SampleSize];
        Assert.Throws<ArgumentException>(() => runner.CrossEntropy(pixels, [0, 1], batch: 3));
        Assert.Throws<ArgumentException>(() => runner.CrossEntropy(pixels, [0], batch: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => runner.CrossEntropy(pixels, [0, 7], batch: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => runner.CrossEntropy(pixels, [-1, 0], batch: 2));
        Assert.Throws<ArgumentException>(() => runner.Vjp(pixels, new float[runner.Classes], batch: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => runner.Vjp([], [], batch: 0));
    }

    [Fact]
    public void Vjp_with_softmax_minus_onehot_equals_the_cross_entropy_gradient()
    {
        var rng = new Random(9);
        var pixels = Enumerable.Range(0, 2 * runner.SampleSize).Select(_ => (float)rng.NextDouble()).ToArray();
        long[] labels = [3, 5];
        var ce = runner.CrossEntropy(pixels, labels, 2);
        var seed = new float[2 * runner.Classes];
        for (var n = 0; n < 2; n++)
        {
            var z = ce.LogitsOf(n).ToArray();
            var max = z.Max();
            var sum = z.Sum(v => Math.Exp(v - max));
            for (var k = 0; k < runner.Classes; k++)
            {
                seed[(n * runner.Classes) + k] = (float)(Math.Exp(z[k] - max) / sum) - (k == labels[n] ? 1f : 0f);
            }

            Assert.Equal(Math.Log(sum) + max - z[labels[n]], ce.Loss![n], 4);
        }

        var vjp = runner.Vjp(pixels, seed, 2);
        Assert.Null(vjp.Loss);
        Assert.True(GradientTestData.RelativeError(vjp.PixelGrad, ce.PixelGrad) < 1e-5);
    }

    [Fact]
    public void Concurrent_calls_agree_with_sequential_ones()
    {
        var rng = new Random(4);
        var inputs = Enumerable.Range(0, 8).Select(_ => Enumerable.Range(0, runner.SampleSize).Select(_ => (float)rng.NextDouble()).ToArray()).ToArray();
        var sequential = inputs.Select(x => runner.CrossEntropy(x, [1], 1).PixelGrad).ToArray();
        var parallel = new float[inputs.Length][];
        Parallel.For(0, inputs.Length, i => parallel[i] = runner.CrossEntropy(inputs[i], [1], 1).PixelGrad);
        for (var i = 0; i < inputs.Length; i++) Assert.Equal(sequential[i], parallel[i]);
    }

    public void Dispose() => runner.Dispose();
}
