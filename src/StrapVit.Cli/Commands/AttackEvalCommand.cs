using System.Diagnostics;
using System.Globalization;
using System.Text;
using StrapVit.Core.Attacks;
using StrapVit.Core.Attacks.Universal;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;
using StrapVit.Core.Numerics;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit attack-eval</c>: the efficacy tables of docs/ATTACKS.md.</summary>
internal sealed class AttackEvalCommand : ICliCommand
{
    public string Name => "attack-eval";

    public string Summary => "Measure attack success against a model on labelled IDX images (docs/ATTACKS.md tables).";

    public string Usage => """
        Usage: strapvit attack-eval <model-dir> --images <idx3.gz> --labels <idx1.gz> [--count 500]
                                    [--train-images <idx3.gz> --train-labels <idx1.gz>] [--target 0]
                                    [--only fgsm,pgd,deepfool,patch,universal] [--patch-steps 200] [--universal-steps 500]
                                    [--seed 0] [--threads 2] [--cache <folder>] [--markdown <file>]

        On the first --count images: clean accuracy, then, on the correctly classified ones (untargeted, label =
        true label): FGSM and PGD (Linf, 10 steps of eps/4, random start) success against eps 1..16/255;
        DeepFool (overshoot 0.02, 50 iterations, 10 candidates) success and median L2; per-image patch (signed
        steps of 4/255) success against patch size 4, 6, 8 px at a seeded random place; universal patch (trained
        on --train-images toward --target, random place, rotation up to 22.5 degrees, scale 0.8-1) held-out success
        against patch size. Success is reported on the float image and on its 8-bit quantization.

        Exit codes: 0 measured; 1 bad package or images; 2 bad arguments.
        """;

    public int Run(CliArguments args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Positionals.Count != 1) throw new CliUsageException("expected exactly one <model-dir>");
        var images = args.RequiredOption("images");
        var labels = args.RequiredOption("labels");
        var count = (int)CliNumbers.Double(args, "count", 500, 1, 1e6);
        var trainImages = args.Option("train-images");
        var trainLabels = args.Option("train-labels");
        var target = (int)CliNumbers.Double(args, "target", 0, 0, 100000);
        var only = (args.Option("only") ?? "fgsm,pgd,deepfool,patch,universal").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        var patchSteps = (int)CliNumbers.Double(args, "patch-steps", 200, 1, 1e6);
        var universalSteps = (int)CliNumbers.Double(args, "universal-steps", 500, 1, 1e6);
        var seed = (int)CliNumbers.Double(args, "seed", 0, 0, int.MaxValue);
        var threads = (int)CliNumbers.Double(args, "threads", 2, 0, 256);
        var cache = args.Option("cache");
        var markdown = args.Option("markdown");
        args.RejectUnknownOptions();
        if (only.Contains("universal") && (trainImages is null || trainLabels is null))
        {
            throw new CliUsageException("the universal patch needs --train-images and --train-labels (or leave it out with --only)");
        }

        try
        {
            using var cli = new AttackCli(args.Positionals[0], threads, cache);
            var model = cli.Model;
            var k = model.Classes;
            var loaded = cli.LoadIdx(images, labels, count);
            var (all, allLabels, n) = (loaded.Pixels, loaded.Labels, loaded.Count);
            var logits = model.Logits(all, n, CancellationToken.None);
            var correct = loaded.Subset(Enumerable.Range(0, n).Where(i => Probabilities.ArgMax(logits.AsSpan(i * k, k)) == allLabels[i]).ToArray());
            var (x, y) = (correct.Pixels, correct.Labels);
            var goal = AttackGoal.Untargeted(y);
            var report = new StringBuilder();
            void Line(string text)
            {
                report.AppendLine(text);
                stdout.WriteLine(text);
                stdout.Flush();
            }

            Line($"Model {cli.Package.Manifest.Name} (sha256 {cli.Package.Sha256[..12]}), {n} images from {Path.GetFileName(images)}: "
                + $"clean accuracy {correct.Count / (double)n:P1}; attacks run on the {correct.Count} correctly classified images, seed {seed}.");
            Line("");

            string Pct(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";
            AttackResult Run(Attack attack)
            {
                var sw = Stopwatch.StartNew();
                var r = attack.Run(model, x, correct.Count, goal, seed);
                stderr.WriteLine($"  {attack.Name}: {sw.Elapsed.TotalSeconds:F1} s");
                return r;
            }

            int[] epsilons = [1, 2, 4, 8, 16];
            if (only.Contains("fgsm") || only.Contains("pgd"))
            {
                Line("| eps (x/255) | FGSM success | FGSM success (8-bit) | PGD-10 success | PGD-10 success (8-bit) |");
                Line("|---|---|---|---|---|");
                foreach (var e in epsilons)
                {
                    var eps = e / 255f;
                    var f = only.Contains("fgsm") ? Run(new Fgsm(eps)) : null;
                    var p = only.Contains("pgd") ? Run(new Pgd(PerturbationNorm.Linf, eps, eps / 4, 10, randomStart: true)) : null;
                    Line($"| {e} | {(f is null ? "-" : Pct(f.SuccessRate))} | {(f is null ? "-" : Pct(f.QuantizedSuccessRate))} | "
                        + $"{(p is null ? "-" : Pct(p.SuccessRate))} | {(p is null ? "-" : Pct(p.QuantizedSuccessRate))} |");
                }

                Line("");
            }

            if (only.Contains("deepfool"))
            {
                var d = Run(new DeepFool());
                var l2 = d.Samples.Where(s => s.Success).Select(s => (double)s.L2).Order().ToArray();
                var median = l2.Length == 0 ? double.NaN : l2.Length % 2 == 1 ? l2[l2.Length / 2] : (l2[(l2.Length / 2) - 1] + l2[l2.Length / 2]) / 2;
                var linf = d.Samples.Where(s => s.Success).Select(s => (double)s.Linf).Order().ToArray();
                Line("| DeepFool | success | success (8-bit) | median L2 (successful) | median Linf | mean iterations |");
                Line("|---|---|---|---|---|---|");
                Line($"| overshoot 0.02, 50 it., 10 candidates | {Pct(d.SuccessRate)} | {Pct(d.QuantizedSuccessRate)} | {median:F3} | "
                    + $"{(linf.Length == 0 ? double.NaN : linf[linf.Length / 2]) * 255:F1}/255 | {d.Samples.Average(s => s.Iterations):F1} |");
                Line("");
            }

            int[] sides = [4, 6, 8];
            var area = model.Height * model.Width;
            if (only.Contains("patch"))
            {
                Line($"| patch (px) | share of image | per-image patch success ({patchSteps} steps) | success (8-bit) | mean steps |");
                Line("|---|---|---|---|---|");
                foreach (var s in sides)
                {
                    var r = Run(new PatchAttack(s, steps: patchSteps));
                    Line($"| {s}x{s} | {Pct(s * s / (double)area)} | {Pct(r.SuccessRate)} | {Pct(r.QuantizedSuccessRate)} | {r.Samples.Average(v => v.Iterations):F1} |");
                }

                Line("");
            }

            if (only.Contains("universal"))
            {
                var data = cli.LoadIdx(trainImages!, trainLabels!, int.MaxValue).Without(target);
                Line($"| universal patch (px) | share of image | held-out success toward '{cli.Package.Manifest.Labels[target]}' | train batch success | images evaluated |");
                Line("|---|---|---|---|---|");
                foreach (var s in sides)
                {
                    var sw = Stopwatch.StartNew();
                    var trainer = new UniversalPatchTrainer(new UniversalPatchSettings(s, target, universalSteps));
                    var result = trainer.Train(model, data.Pixels, data.Count, seed);
                    var ev = trainer.Evaluate(model, result.Patch, all, n, allLabels, seed + 1);
                    stderr.WriteLine($"  universal {s}: {sw.Elapsed.TotalSeconds:F1} s");
                    Line($"| {s}x{s} | {Pct(s * s / (double)area)} | {Pct(ev.SuccessRate)} | {Pct(result.TrainSuccessRate)} | {ev.Evaluated} |");
                }

                Line("");
            }

            if (markdown is not null) File.WriteAllText(markdown, report.ToString());
            return ExitCodes.Ok;
        }
        catch (Exception ex) when (ex is ModelPackageException or GradientGraphException or IOException or InvalidDataException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"strapvit attack-eval: {ex.Message.Split('\n')[0]}");
            return ExitCodes.Failed;
        }
    }
}
