using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using StrapVit.Core.Gradients;
using StrapVit.Core.Runtime;

namespace StrapVit.Benchmarks;

/// <summary>
/// Gradient run (fused forward + backward, cross-entropy objective) against the forward run on the same batch and
/// the same CPU session settings (2 intra-op threads). The Ratio column is gradient / forward.
/// </summary>
[Config(typeof(Config))]
public class GradientBenchmarks
{
    private ModelRuntime? runtime;
    private GradientRunner? gradients;
    private float[] pixels = [];
    private long[] labels = [];

    [ParamsSource(nameof(Cases))]
    public BenchCase Case { get; set; } = null!;

    public static IEnumerable<BenchCase> Cases() => BenchModels.Available();

    [GlobalSetup]
    public void Setup()
    {
        runtime = BenchModels.Runtime(Case.PackageDir, threads: 2);
        gradients = runtime.LoadGradients();
        var rng = new Random(1);
        pixels = Enumerable.Range(0, Case.Batch * gradients.SampleSize).Select(_ => (float)rng.NextDouble()).ToArray();
        labels = Enumerable.Range(0, Case.Batch).Select(_ => (long)rng.Next(gradients.Classes)).ToArray();
    }

    [GlobalCleanup]
    public void Cleanup() => runtime?.Dispose();

    [Benchmark(Baseline = true)]
    public float[] Forward() => runtime!.Classifier.Logits(pixels, Case.Batch);

    [Benchmark]
    public float[] Gradient() => gradients!.CrossEntropy(pixels, labels, Case.Batch).PixelGrad;

    private sealed class Config : ManualConfig
    {
        public Config()
        {
            // In-process: the generated out-of-process project would inherit the repo's analyzers and central
            // package pinning. Long timeout and few iterations: a ViT-B/16 gradient at batch 8 takes seconds per call
            // (and building its graph once, tens of seconds).
            AddJob(Job.Default.WithToolchain(new InProcessEmitToolchain(TimeSpan.FromMinutes(60), logOutput: true)).WithWarmupCount(2).WithIterationCount(8)
                .WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(500)));
            WithOptions(ConfigOptions.DisableOptimizationsValidator);
        }
    }
}
