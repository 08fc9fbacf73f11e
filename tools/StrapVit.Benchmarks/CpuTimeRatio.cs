using System.Diagnostics;

namespace StrapVit.Benchmarks;

/// <summary>
/// <c>cpu-ratio [runs]</c>: gradient / forward measured as process CPU time with one intra-op thread, forward and
/// gradient runs interleaved. On a machine shared with other jobs, wall-clock time mostly measures how long the
/// process waited for a core; CPU time of a single-threaded run measures the work, so the ratio stays meaningful.
/// </summary>
public static class CpuTimeRatio
{
    public static void Run(int runs)
    {
        Console.WriteLine("| model | batch | forward CPU ms (median) | gradient CPU ms (median) | gradient / forward | forward wall ms (min) | gradient wall ms (min) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var c in BenchModels.Available())
        {
            Measure(c, c.Model == "vit-b16" ? Math.Max(3, runs / 5) : runs);
        }
    }

    private static void Measure(BenchCase c, int runs)
    {
        using var runtime = BenchModels.Runtime(c.PackageDir, threads: 1);
        var runner = runtime.LoadGradients();
        var rng = new Random(1);
        var pixels = Enumerable.Range(0, c.Batch * runner.SampleSize).Select(_ => (float)rng.NextDouble()).ToArray();
        var labels = Enumerable.Range(0, c.Batch).Select(_ => (long)rng.Next(runner.Classes)).ToArray();

        void Forward() => runtime.Classifier.Logits(pixels, c.Batch);

        void Gradient() => runner.CrossEntropy(pixels, labels, c.Batch);

        Forward();
        Gradient();
        var (fCpu, fWall, gCpu, gWall) = (new List<double>(), new List<double>(), new List<double>(), new List<double>());
        for (var i = 0; i < runs; i++)
        {
            Time(Forward, fCpu, fWall);
            Time(Gradient, gCpu, gWall);
        }

        var (f, g) = (Median(fCpu), Median(gCpu));
        Console.WriteLine($"| {c.Model} | {c.Batch} | {f:F2} | {g:F2} | {g / f:F2} | {fWall.Min():F2} | {gWall.Min():F2} |");
    }

    internal static void Time(Action action, List<double> cpu, List<double> wall)
    {
        var process = Process.GetCurrentProcess();
        var cpu0 = process.TotalProcessorTime;
        var wall0 = Stopwatch.GetTimestamp();
        action();
        wall.Add(Stopwatch.GetElapsedTime(wall0).TotalMilliseconds);
        process.Refresh();
        cpu.Add((process.TotalProcessorTime - cpu0).TotalMilliseconds);
    }

    internal static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
