using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Benchmarks;

/// <summary>
/// <c>defense-cost MODEL-DIR [runs]</c>: what <c>defense=mitigate</c> adds to a batch-1 classification, as process CPU
/// time with one intra-op thread (robust to other jobs on the machine, like <see cref="CpuTimeRatio"/>). The model
/// runtime comes from the service's factory with the service's default defense options, so the defense is the one the
/// service would run on this package (the token defense when the package has a tokens entry and a calibration).
/// Plain and defended runs are interleaved; prints the medians and their ratio.
/// </summary>
public static class DefenseCost
{
    public static void Run(string packageDir, int runs)
    {
        using var runtime = new ModelRuntimeFactory(NullLoggerFactory.Instance).Create(ModelPackage.Load(packageDir), new ModelRuntimeOptions
        {
            Inference = new InferenceOptions { Device = BenchModels.Device, IntraOpThreads = 1 },
            CacheDirectory = BenchModels.CacheDir,
            Defense = new DefenseOptions(),
        });
        var defense = runtime.Defense?.Defense ?? throw new InvalidOperationException($"{packageDir} loads no defense (no calibration?)");
        var rng = new Random(1);
        var pixels = Enumerable.Range(0, runtime.Package.Manifest.Input.Size).Select(_ => (float)rng.NextDouble()).ToArray();

        void Plain() => runtime.Classifier.Logits(pixels, 1);

        void Defended() => defense.Run(pixels, 1, DefenseMode.Mitigate, [1]);

        Plain();
        Defended();
        var (pCpu, pWall, dCpu, dWall) = (new List<double>(), new List<double>(), new List<double>(), new List<double>());
        for (var i = 0; i < runs; i++)
        {
            CpuTimeRatio.Time(Plain, pCpu, pWall);
            CpuTimeRatio.Time(Defended, dCpu, dWall);
        }

        var (p, d) = (CpuTimeRatio.Median(pCpu), CpuTimeRatio.Median(dCpu));
        Console.WriteLine($"{runtime.Package.Manifest.Name}: defense {defense.Variant}, {runs} runs, 1 intra-op thread: classify CPU ms {p:F2} (wall min {pWall.Min():F2}), mitigate CPU ms {d:F2} (wall min {dWall.Min():F2}), mitigate / off {d / p:F2}");
    }
}
