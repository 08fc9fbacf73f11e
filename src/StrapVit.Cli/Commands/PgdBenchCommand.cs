using System.Diagnostics;
using StrapVit.Core.Attacks;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit bench-pgd</c>: PGD throughput, to set against tools/attacks/bench_pgd_torch.py.</summary>
internal sealed class PgdBenchCommand : ICliCommand
{
    public string Name => "bench-pgd";

    public string Summary => "Benchmark PGD steps per second on a model package (compare with tools/attacks/bench_pgd_torch.py).";

    public string Usage => """
        Usage: strapvit bench-pgd <model-dir> [--batch 1,32] [--steps 10] [--repeats 5] [--threads 2] [--cache <folder>]

        Runs untargeted Linf PGD (eps 8/255, step 2/255, no random start, no early stop) on seeded random images,
        once to warm up and then --repeats times per batch size, and prints the best time as image-steps per
        second (batch x steps / seconds), by wall time and by process CPU time (robust on a shared machine with
        --threads 1). Each step is one fused forward + backward ONNX Runtime run.

        Exit codes: 0 measured; 1 bad package; 2 bad arguments.
        """;

    public int Run(CliArguments args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Positionals.Count != 1) throw new CliUsageException("expected exactly one <model-dir>");
        var batches = (args.Option("batch") ?? "1,32").Split(',').Select(b => int.TryParse(b, out var v) && v >= 1 ? v : throw new CliUsageException($"--batch: '{b}' is not a positive integer")).ToArray();
        var steps = (int)CliNumbers.Double(args, "steps", 10, 1, 1e6);
        var repeats = (int)CliNumbers.Double(args, "repeats", 5, 1, 1000);
        var threads = (int)CliNumbers.Double(args, "threads", 2, 0, 256);
        var cache = args.Option("cache");
        args.RejectUnknownOptions();
        try
        {
            using var cli = new AttackCli(args.Positionals[0], threads, cache);
            var size = cli.Model.SampleSize();
            var attack = new Pgd(PerturbationNorm.Linf, 8f / 255, 2f / 255, steps, randomStart: false);
            foreach (var batch in batches)
            {
                var random = new Random(batch);
                var x = new float[batch * size];
                for (var i = 0; i < x.Length; i++) x[i] = (float)random.NextDouble();
                attack.Run(cli.Model, x, batch, AttackGoal.Untargeted(), 0);
                double best = double.MaxValue, bestCpu = double.MaxValue;
                using var process = Process.GetCurrentProcess();
                for (var r = 0; r < repeats; r++)
                {
                    process.Refresh();
                    var cpu = process.TotalProcessorTime;
                    var sw = Stopwatch.StartNew();
                    attack.Run(cli.Model, x, batch, AttackGoal.Untargeted(), 0);
                    best = Math.Min(best, sw.Elapsed.TotalSeconds);
                    process.Refresh();
                    bestCpu = Math.Min(bestCpu, (process.TotalProcessorTime - cpu).TotalSeconds);
                }

                // CPU time is the robust figure on a shared machine (with --threads 1 it is the work done); wall time needs a quiet one.
                stdout.WriteLine($"csharp batch={batch} steps={steps} threads={threads}: wall {best * 1000:F1} ms = {batch * steps / best:F1} image-steps/s; "
                    + $"cpu {bestCpu * 1000:F1} ms = {batch * steps / bestCpu:F1} image-steps per cpu-second "
                    + "(includes the attack's 3 verdict forwards: clean, float, 8-bit)");
            }

            return ExitCodes.Ok;
        }
        catch (Exception ex) when (ex is ModelPackageException or GradientGraphException or IOException)
        {
            stderr.WriteLine($"strapvit bench-pgd: {ex.Message.Split('\n')[0]}");
            return ExitCodes.Failed;
        }
    }
}
