using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Benchmarks;

/// <summary>
/// <c>memory raw|runtime MODEL-DIR [threads]</c>: resident memory (VmRSS, and the peak VmHWM) of one process after it
/// loaded and ran a model. <c>raw</c> is plain ONNX Runtime: one session on the package's <c>model.onnx</c> with the
/// service's session options (all optimizations, prepacking on), one batch-1 run. <c>runtime</c> is the service's
/// model runtime from <see cref="ModelRuntimeFactory"/> with the defense, certified mode and the gradient graphs
/// loaded, after one classification, one defended classification and one gradient run. Run each in its own process.
/// </summary>
public static class MemoryFootprint
{
    public static void Run(string mode, string packageDir, int threads)
    {
        var package = ModelPackage.Load(packageDir);
        var input = package.Manifest.Input;
        var pixels = Enumerable.Range(0, input.Size).Select(i => (i % 97) / 97f).ToArray();
        var started = Stopwatch.GetTimestamp();
        if (mode == "raw")
        {
            using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads };
            if (BenchModels.Device != InferenceDevice.Cpu)
            {
                options.AppendExecutionProvider_CUDA(0); // the same provider as the runtime it is compared with
            }

            using var session = new InferenceSession(package.OnnxPath, options);
            using var value = OrtValue.CreateTensorValueFromMemory(pixels, [1, input.Channels, input.Height, input.Width]);
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, [input.Name], [value], [package.Manifest.Output]);
            Report("raw ONNX Runtime, forward session", package, started);
            return;
        }

        using var runtime = new ModelRuntimeFactory(NullLoggerFactory.Instance).Create(package, new ModelRuntimeOptions
        {
            Inference = new InferenceOptions
            {
                Device = BenchModels.Device,
                IntraOpThreads = threads,
                ShareWeights = Environment.GetEnvironmentVariable("STRAPVIT_SHARE_WEIGHTS") != "0",
            },
            CacheDirectory = Environment.GetEnvironmentVariable("STRAPVIT_CACHE") ?? BenchModels.CacheDir,
            Defense = new DefenseOptions(),
            Certify = new CertifyOptions(),
        });
        runtime.Classifier.Logits(pixels, 1);
        runtime.Defense?.Defense?.Run(pixels, 1, DefenseMode.Mitigate, [1]);
        Report($"runtime, classification + defense ({runtime.Defense?.Defense?.Variant ?? "none"}) + certify ({(runtime.Certify?.Certifier is null ? "no" : "yes")})", package, started);
        var gradients = runtime.LoadGradients();
        Report("runtime, + gradient graphs loaded", package, started);
        gradients.CrossEntropy(pixels, [0], 1);
        Report($"runtime, + one gradient run (shared weights: {runtime.Weights is not null})", package, started);
    }

    private static void Report(string what, ModelPackage package, long started)
    {
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        var status = File.ReadLines("/proc/self/status").Where(l => l.StartsWith("Vm", StringComparison.Ordinal) || l.StartsWith("Rss", StringComparison.Ordinal))
            .ToDictionary(l => l[..l.IndexOf(':', StringComparison.Ordinal)], l => long.Parse(l[(l.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{package.Manifest.Name}: {what}: VmRSS {status["VmRSS"]} MiB (anonymous {status["RssAnon"]}, file {status["RssFile"]}), peak {status["VmHWM"]} MiB, {Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s"));
    }
}
