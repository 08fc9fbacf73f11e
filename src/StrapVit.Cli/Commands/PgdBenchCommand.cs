using System.CommandLine;
using System.Diagnostics;
using StrapVit.Core.Attacks;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit bench-pgd</c>: PGD throughput, to set against tools/attacks/bench_pgd_torch.py.</summary>
internal sealed class PgdBenchCommand : CliVerb
{
    private readonly Argument<string> modelDir = CliOptions.ModelDir();
    private readonly ListOption<int> batch = CliOptions.NumberList("--batch", [1, 32], 1, 4096, "batch sizes measured");
    private readonly Option<int> steps = CliOptions.Number("--steps", 10, 1, 1_000_000, "PGD steps per run");
    private readonly Option<int> repeats = CliOptions.Number("--repeats", 5, 1, 1000, "timed runs per batch size (the best counts)");
    private readonly Option<int> threads = CliOptions.Number("--threads", 2, 0, 256, "ONNX Runtime intra-op threads (0: its default)");
    private readonly Option<string> cache = CliOptions.Text("--cache", "cache folder for the gradient graph", helpName: "folder");

    public PgdBenchCommand()
        : base("bench-pgd", """
            Benchmark PGD steps per second on a model package (compare with tools/attacks/bench_pgd_torch.py).

            Runs untargeted Linf PGD (eps 8/255, step 2/255, no random start, no early stop) on seeded random images,
            once to warm up and then --repeats times per batch size, and prints the best time as image-steps per
            second (batch x steps / seconds), by wall time and by process CPU time (robust on a shared machine with
            --threads 1). Each step is one fused forward + backward ONNX Runtime run.

            Exit codes: 0 measured; 1 bad package; 2 bad arguments.
            """)
    {
        Arguments.Add(modelDir);
        Option[] options = [batch, steps, repeats, threads, cache];
        foreach (var option in options) Options.Add(option);
    }

    protected override int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr)
    {
        var batches = parseResult.GetList(batch);
        var steps = parseResult.GetValue(this.steps);
        var repeats = parseResult.GetValue(this.repeats);
        var threads = parseResult.GetValue(this.threads);
        var cache = parseResult.GetValue(this.cache);
        try
        {
            using var cli = new AttackCli(parseResult.GetRequiredValue(modelDir), threads, cache);
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
