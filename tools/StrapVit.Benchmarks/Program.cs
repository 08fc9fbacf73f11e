using BenchmarkDotNet.Running;
using StrapVit.Benchmarks;

// dotnet run -c Release --project tools/StrapVit.Benchmarks -- --filter '*'      BenchmarkDotNet, wall clock
// dotnet run -c Release --project tools/StrapVit.Benchmarks -- cpu-ratio [runs]  CPU-time ratio (see docs/BENCHMARKS.md)
// dotnet run -c Release --project tools/StrapVit.Benchmarks -- certify [images] [patch] [strides]  certified mode per image
// dotnet run -c Release --project tools/StrapVit.Benchmarks -- memory raw|runtime <model-dir> [threads]  resident memory
// dotnet run -c Release --project tools/StrapVit.Benchmarks -- raw-throughput <model-dir> <callers> <seconds> [threads]  raw ONNX Runtime images/s
// dotnet run -c Release --project tools/StrapVit.Benchmarks -- encoder-profile <model-dir> [batch] [tokens] [runs] [threads]  ONNX Runtime profile of the token encoder
// dotnet run -c Release --project tools/StrapVit.Benchmarks -- device-parity <model-dir> <idx-images> [count] [device]  CPU against CUDA answers
// dotnet run -c Release --project tools/StrapVit.Benchmarks -- defense-cost <model-dir> [runs] [image] [verify-windows]  CPU time of defense=mitigate against off
if (args.Length > 1 && args[0] == "encoder-profile")
{
    var culture = System.Globalization.CultureInfo.InvariantCulture;
    int Arg(int i, int fallback) => args.Length > i ? int.Parse(args[i], culture) : fallback;
    EncoderProfile.Run(args[1], Arg(2, 256), Arg(3, 42), Arg(4, 20), Arg(5, 1));
    return;
}

if (args.Length > 1 && args[0] == "defense-cost")
{
    DefenseCost.Run(args[1], args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 10, args.Length > 3 ? args[3] : null,
        args.Length > 4 ? int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture) : null);
    return;
}

if (args.Length > 2 && args[0] == "device-parity")
{
    Environment.Exit(DeviceParity.Run(args[1], args[2], args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 200,
        args.Length > 4 ? Enum.Parse<StrapVit.Core.Inference.InferenceDevice>(args[4], ignoreCase: true) : StrapVit.Core.Inference.InferenceDevice.Cuda));
}

if (args.Length > 3 && args[0] == "raw-throughput")
{
    var culture = System.Globalization.CultureInfo.InvariantCulture;
    RawThroughput.Run(args[1], int.Parse(args[2], culture), double.Parse(args[3], culture), args.Length > 4 ? int.Parse(args[4], culture) : 0);
    return;
}

if (args.Length > 2 && args[0] == "memory")
{
    StrapVit.Benchmarks.MemoryFootprint.Run(args[1], args[2], args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 2);
    return;
}

if (args.Length > 0 && args[0] == "certify")
{
    var culture = System.Globalization.CultureInfo.InvariantCulture;
    CertifyTiming.Run(
        args.Length > 1 ? int.Parse(args[1], culture) : 100,
        args.Length > 2 ? int.Parse(args[2], culture) : 0,
        args.Length > 3 ? args[3].Split(',').Select(s => int.Parse(s, culture)).ToArray() : [1, 2]);
    return;
}

if (args.Length > 0 && args[0] == "cpu-ratio")
{
    CpuTimeRatio.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 30);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(GradientBenchmarks).Assembly).Run(args);
