using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Benchmarks;

/// <summary>
/// Gradient run (fused forward + backward, cross-entropy objective) against the forward run on the same batch and
/// the same CPU session settings (2 intra-op threads). The Ratio column is gradient / forward.
/// </summary>
[Config(typeof(Config))]
public class GradientBenchmarks
{
    private OrtSession? forward;
    private GradientRunner? gradients;
    private float[] pixels = [];
    private long[] labels = [];
    private long[] shape = [];

    [ParamsSource(nameof(Cases))]
    public BenchCase Case { get; set; } = null!;

    public static IEnumerable<BenchCase> Cases() => BenchModels.Available();

    [GlobalSetup]
    public void Setup()
    {
        var package = ModelPackage.Load(Case.PackageDir);
        var sessions = new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu, IntraOpThreads = 2 }, NullLogger<OnnxSessionFactory>.Instance);
        forward = sessions.Create(ForwardGraph.LoadNormalizedBytes(package), "forward");
        gradients = GradientRunner.Create(package, new GradientGraphs(BenchModels.CacheDir, NullLogger<GradientGraphs>.Instance), sessions);
        var rng = new Random(1);
        pixels = Enumerable.Range(0, Case.Batch * gradients.SampleSize).Select(_ => (float)rng.NextDouble()).ToArray();
        labels = Enumerable.Range(0, Case.Batch).Select(_ => (long)rng.Next(gradients.Classes)).ToArray();
        shape = [Case.Batch, gradients.Channels, gradients.Height, gradients.Width];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        forward?.Dispose();
        gradients?.Dispose();
    }

    [Benchmark(Baseline = true)]
    public float[] Forward()
    {
        // Same per-call work as the runner: wrap the caller's pixels, run, copy the logits out.
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, shape);
        using var options = new RunOptions();
        using var results = forward!.Session.Run(options, [ForwardGraph.PixelInput], [input], [ForwardGraph.LogitsOutput]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

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
