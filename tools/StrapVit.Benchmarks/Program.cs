using BenchmarkDotNet.Running;
using StrapVit.Benchmarks;

// dotnet run -c Release --project tools/StrapVit.Benchmarks -- --filter '*'      BenchmarkDotNet, wall clock
// dotnet run -c Release --project tools/StrapVit.Benchmarks -- cpu-ratio [runs]  CPU-time ratio (see docs/BENCHMARKS.md)
if (args.Length > 0 && args[0] == "cpu-ratio")
{
    CpuTimeRatio.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 30);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(GradientBenchmarks).Assembly).Run(args);
