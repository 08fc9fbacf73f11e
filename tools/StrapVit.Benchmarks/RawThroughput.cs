using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Benchmarks;

/// <summary>
/// <c>raw-throughput MODEL-DIR CALLERS SECONDS [threads]</c>: the baseline for the service's classification throughput.
/// One plain ONNX Runtime session on the package's <c>model.onnx</c> with the session options the service's forward
/// session gets from <see cref="OnnxSessionFactory"/> (all graph optimizations, the intra-op thread count of
/// <c>Inference:IntraOpThreads</c>, default 0 = ONNX Runtime's choice; prepacking left on, as a plain session has it),
/// shared by CALLERS threads that each run it on one already-normalized batch-1 image, back to back, for SECONDS.
/// Reports images per second, the median and 95th percentile latency of a run, and the process's CPU time per image
/// (the figure to compare on a machine shared with other jobs, where wall-clock rates mostly measure waiting for a core). No image decoding, preprocessing,
/// HTTP or defense: that difference is what the ratio against the service under wrk measures.
/// </summary>
public static class RawThroughput
{
    public static void Run(string packageDir, int callers, double seconds, int threads)
    {
        var package = ModelPackage.Load(packageDir);
        var input = package.Manifest.Input;
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (threads > 0)
        {
            options.IntraOpNumThreads = threads;
        }

        if (BenchModels.Device != InferenceDevice.Cpu)
        {
            options.AppendExecutionProvider_CUDA(0);
        }

        using var session = new InferenceSession(package.OnnxPath, options);
        var rng = new Random(1);
        var pixels = Enumerable.Range(0, input.Size).Select(_ => (float)rng.NextDouble()).ToArray();
        long[] shape = [1, input.Channels, input.Height, input.Width];

        void Once()
        {
            using var value = OrtValue.CreateTensorValueFromMemory(pixels, shape);
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, [input.Name], [value], [package.Manifest.Output]);
        }

        Once(); // warm-up: the first run allocates the arena
        var latencies = new List<double>[callers];
        var stop = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var started = Stopwatch.GetTimestamp();
        var process = Process.GetCurrentProcess();
        var cpu0 = process.TotalProcessorTime;
        var workers = Enumerable.Range(0, callers).Select(i =>
        {
            latencies[i] = [];
            var thread = new Thread(() =>
            {
                while (Stopwatch.GetTimestamp() < stop)
                {
                    var t = Stopwatch.GetTimestamp();
                    Once();
                    latencies[i].Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }
            });
            thread.Start();
            return thread;
        }).ToList();
        workers.ForEach(t => t.Join());
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        process.Refresh();
        var cpuMs = (process.TotalProcessorTime - cpu0).TotalMilliseconds;
        var all = latencies.SelectMany(l => l).Order().ToArray();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{package.Manifest.Name}: raw ONNX Runtime, {callers} caller(s), intra-op threads {(threads > 0 ? threads.ToString(CultureInfo.InvariantCulture) : "default")}: {all.Length} images in {elapsed:F1} s = {all.Length / elapsed:F2} images/s, latency p50 {all[all.Length / 2]:F2} ms, p95 {all[(int)(all.Length * 0.95)]:F2} ms, process CPU {cpuMs / all.Length:F2} ms per image"));
    }
}
