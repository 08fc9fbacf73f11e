using System.CommandLine;
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
internal sealed class AttackEvalCommand : CliVerb
{
    private static readonly string[] Attacks = ["fgsm", "pgd", "deepfool", "patch", "universal"];

    private readonly Argument<string> modelDir = CliOptions.ModelDir();
    private readonly Option<string> images = CliOptions.Text("--images", "gzipped IDX images to attack", required: true, helpName: "idx3.gz");
    private readonly Option<string> labels = CliOptions.Text("--labels", "their gzipped IDX labels", required: true, helpName: "idx1.gz");
    private readonly Option<int> count = CliOptions.Number("--count", 500, 1, 1_000_000, "how many of --images (the first ones)");
    private readonly Option<string> trainImages = CliOptions.Text("--train-images", "universal patch training images", helpName: "idx3.gz");
    private readonly Option<string> trainLabels = CliOptions.Text("--train-labels", "their labels", helpName: "idx1.gz");
    private readonly Option<int> target = CliOptions.Number("--target", 0, 0, 100_000, "universal patch target class");
    private readonly ListOption<string> only = CliOptions.List("--only", Attacks, TryAttack, "attacks to run", $"names among {string.Join(", ", Attacks)}");
    private readonly Option<int> patchSteps = CliOptions.Number("--patch-steps", 200, 1, 1_000_000, "per-image patch attack steps");
    private readonly Option<int> universalSteps = CliOptions.Number("--universal-steps", 500, 1, 1_000_000, "universal patch training steps");
    private readonly Option<int> seed = CliOptions.Number("--seed", 0, 0, int.MaxValue, "random seed");
    private readonly Option<int> threads = CliOptions.Number("--threads", 2, 0, 256, "ONNX Runtime intra-op threads (0: its default)");
    private readonly Option<string> cache = CliOptions.Text("--cache", "cache folder for the gradient graph", helpName: "folder");
    private readonly Option<string> markdown = CliOptions.Text("--markdown", "also write the tables to this file", helpName: "file");

    public AttackEvalCommand()
        : base("attack-eval", """
            Measure attack success against a model on labelled IDX images (docs/ATTACKS.md tables).

            On the first --count images: clean accuracy, then, on the correctly classified ones (untargeted, label =
            true label): FGSM and PGD (Linf, 10 steps of eps/4, random start) success against eps 1..16/255;
            DeepFool (overshoot 0.02, 50 iterations, 10 candidates) success and median L2; per-image patch (signed
            steps of 4/255) success against patch size 4, 6, 8 px at a seeded random place; universal patch (trained
            on --train-images toward --target, random place, rotation up to 22.5 degrees, scale 0.8-1) held-out success
            against patch size. Success is reported on the float image and on its 8-bit quantization.

            Exit codes: 0 measured; 1 bad package or images; 2 bad arguments.
            """)
    {
        Arguments.Add(modelDir);
        Option[] options = [images, labels, count, trainImages, trainLabels, target, only, patchSteps, universalSteps, seed, threads, cache, markdown];
        foreach (var option in options) Options.Add(option);
    }

    protected override int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr)
    {
        var images = parseResult.GetRequiredValue(this.images);
        var labels = parseResult.GetRequiredValue(this.labels);
        var count = parseResult.GetValue(this.count);
        var trainImages = parseResult.GetValue(this.trainImages);
        var trainLabels = parseResult.GetValue(this.trainLabels);
        var target = parseResult.GetValue(this.target);
        var only = parseResult.GetList(this.only).ToHashSet();
        var patchSteps = parseResult.GetValue(this.patchSteps);
        var universalSteps = parseResult.GetValue(this.universalSteps);
        var seed = parseResult.GetValue(this.seed);
        var threads = parseResult.GetValue(this.threads);
        var cache = parseResult.GetValue(this.cache);
        var markdown = parseResult.GetValue(this.markdown);
        if (only.Contains("universal") && (trainImages is null || trainLabels is null))
        {
            throw new CliUsageException("the universal patch needs --train-images and --train-labels (or leave it out with --only)");
        }

        try
        {
            using var cli = new AttackCli(parseResult.GetRequiredValue(modelDir), threads, cache);
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

    private static bool TryAttack(string text, out string value)
    {
        value = text.ToLowerInvariant();
        return Attacks.Contains(value);
    }
}
