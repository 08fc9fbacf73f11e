using BenchmarkDotNet.Running;

// dotnet run -c Release --project tools/StrapVit.Benchmarks -- --filter '*'   (see docs/BENCHMARKS.md)
BenchmarkSwitcher.FromAssembly(typeof(StrapVit.Benchmarks.GradientBenchmarks).Assembly).Run(args);
