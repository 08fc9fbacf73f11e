using System.Globalization;
using System.Text;
using System.Text.Json;
using StrapVit.Core.Attacks;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit evaluate MODEL-DIR</c>: the defense evaluation behind docs/EVALUATION.md.</summary>
internal sealed class EvaluateCommand : ICliCommand
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };

    public string Name => "evaluate";

    public string Summary => "Evaluate the patch defenses: clean, per-image and universal patches, adaptive EOT attack, ablation, overhead.";

    public string Usage => """
        Usage: strapvit evaluate <model-dir> --images <test-images-idx3.gz> --calib <clean-images-idx3.gz>
                                 [--count 500] [--split report|tune] [--output docs/evaluation] [--seed 0]
                                 [--sizes 4,6,8] [--steps 100] [--universal-steps 300] [--target 8]
                                 [--adaptive-count 200] [--eot-samples 4] [--k 4] [--threshold-scale 1.0]
                                 [--score jsd|knn] [--window <pixels>] [--neutralize transform|mean|bank|hybrid|drop] [--bank-choices 1] [--sweep true]
                                 [--sweep-scores jsd,knn] [--sweep-windows 0,6,10] [--sweep-k 0,2,4] [--sweep-neutralize transform,mean,bank] [--sweep-choices 1,3]
                                 [--bank-size 1024] [--neighbors 3] [--fpr 0.2]
                                 [--patch-cache <folder>] [--strong-steps 500] [--strong-restarts 2] [--strong-eot 16] [--evasion 0,1,10]

        Calibrates the defense on all --calib images (clean training images) and scores the first --count --images.
        Each of --images and --calib is a gzipped IDX file (labels in the matching *labels-idx1* file beside it) or a
        folder with one subfolder of images per class (torchvision's ImageFolder layout; folder names matching the
        model's labels get those labels, else their sorted order).
        --split names the run: report (default) for the reported test images (samples/fashion-mnist/test-1000-*),
        tune for the held-out images the defaults are chosen on (samples/fashion-mnist/tune-500-*, disjoint
        from test-1000). Writes <output>/results-<split>.json and <output>/tables-<split>.md. Labels come from the
        matching *labels-idx1* file next to each images file. The defense options default to the service's
        (Defense:* defaults); --sweep adds the grid the defaults are chosen from (run it on the tune split).
        """;

    public int Run(CliArguments args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Positionals.Count != 1) throw new CliUsageException("expected exactly one <model-dir>");
        var calibPath = args.RequiredOption("calib");
        var split = args.Option("split") ?? "report";
        var imagesPath = args.RequiredOption("images");
        if (split is not ("report" or "tune")) throw new CliUsageException("--split must be report or tune");
        var count = (int)CliNumbers.Double(args, "count", 500, 10, 100_000);
        var output = args.Option("output") ?? Path.Combine("docs", "evaluation");
        var settings = new EvaluationSettings
        {
            Seed = (int)CliNumbers.Double(args, "seed", 0, 0, int.MaxValue),
            PatchSizes = (args.Option("sizes") ?? "4,6,8").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(),
            PatchSteps = (int)CliNumbers.Double(args, "steps", 100, 1, 10_000),
            UniversalSteps = (int)CliNumbers.Double(args, "universal-steps", 300, 0, 100_000),
            UniversalTarget = (int)CliNumbers.Double(args, "target", 8, 0, 100_000),
            AdaptiveCount = (int)CliNumbers.Double(args, "adaptive-count", 200, 0, 100_000),
            EotSamples = (int)CliNumbers.Double(args, "eot-samples", 4, 1, 64),
            Sweep = args.Option("sweep") is "true" or "1",
            SweepScores = List(args.Option("sweep-scores"), "jsd,knn", v => Enum.Parse<TokenScore>(v, ignoreCase: true)),
            SweepWindows = List(args.Option("sweep-windows"), "0,6,10", v => int.Parse(v, CultureInfo.InvariantCulture)),
            SweepK = List(args.Option("sweep-k"), "0,2,4", v => int.Parse(v, CultureInfo.InvariantCulture)),
            SweepBankChoices = List(args.Option("sweep-choices"), "1", v => int.Parse(v, CultureInfo.InvariantCulture)),
            SweepNeutralizations = List(args.Option("sweep-neutralize"), "transform,mean,bank", v => Enum.Parse<Neutralization>(v, ignoreCase: true)),
            PatchCache = args.Option("patch-cache"),
            StrongSteps = (int)CliNumbers.Double(args, "strong-steps", 500, 0, 100_000),
            StrongRestarts = (int)CliNumbers.Double(args, "strong-restarts", 2, 1, 100),
            StrongEotSamples = (int)CliNumbers.Double(args, "strong-eot", 16, 1, 256),
            EvasionWeights = (args.Option("evasion") ?? "0,1,10").Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray(),
            Bank = new BankSettings(
                Size: (int)CliNumbers.Double(args, "bank-size", new BankSettings().Size, 16, 1_000_000),
                Neighbors: (int)CliNumbers.Double(args, "neighbors", new BankSettings().Neighbors, 1, 64),
                FalsePositiveRate: CliNumbers.Double(args, "fpr", new BankSettings().FalsePositiveRate, 0, 1)),
        };
        var defaults = new DefenseOptions();
        var options = new DefenseOptions
        {
            MinTokens = (int)CliNumbers.Double(args, "k", defaults.MinTokens, 0, 10_000),
            ThresholdScale = CliNumbers.Double(args, "threshold-scale", defaults.ThresholdScale, 1e-6, 1e12),
            WindowPixels = (int)CliNumbers.Double(args, "window", defaults.WindowPixels, 0, 100_000),
            Score = args.Option("score") is { } score ? Enum.Parse<TokenScore>(score, ignoreCase: true) : defaults.Score,
            Neutralization = args.Option("neutralize") is { } n ? Enum.Parse<Neutralization>(n, ignoreCase: true) : defaults.Neutralization,
            BankChoices = (int)CliNumbers.Double(args, "bank-choices", defaults.BankChoices, 1, 64),
        };
        settings = settings with { AdaptivePatchSize = settings.PatchSizes.Contains(6) ? 6 : settings.PatchSizes[0] };
        args.RejectUnknownOptions();

        var package = ModelPackage.Load(args.Positionals[0]);
        var test = CliData.Load(imagesPath, package, count);
        var reference = CliData.Load(calibPath, package, 100_000);

        using var runtime = CliRuntime.Load(package, new ModelRuntimeOptions { Inference = new InferenceOptions { Device = InferenceDevice.Cpu }, TokenSplit = true }, gradients: true);
        var classifier = runtime.Classifier;
        var tokens = runtime.TokenModel ?? throw new ModelPackageException("model.json has no 'tokens' entry, so the token defense cannot be evaluated.");
        using var tokenGradients = TokenGradients.Create(package, tokens, runtime.Sessions);
        var undefended = new OnnxDifferentiableClassifier(runtime.Gradients!, classifier);

        stdout.WriteLine($"evaluate {package.Manifest.Name}: split {split}, {test.Count} images, reference from {reference.Count} clean images, K={options.MinTokens}");
        var report = new DefenseEvaluation(package, classifier, tokens, tokenGradients, undefended, options, settings, stdout).Run(test, reference);

        Directory.CreateDirectory(output);
        var json = Path.Combine(output, $"results-{split}.json");
        File.WriteAllText(json, JsonSerializer.Serialize(report, JsonOptions));
        var tables = Path.Combine(output, $"tables-{split}.md");
        File.WriteAllText(tables, Tables(report));
        stdout.WriteLine($"wrote {json} and {tables} in {report.Seconds:F0} s");
        return ExitCodes.Ok;
    }

    private static T[] List<T>(string? text, string fallback, Func<string, T> parse) => (text ?? fallback).Split(',').Select(v => parse(v.Trim())).ToArray();

    private static string Tables(EvaluationReport report)
    {
        var sb = new StringBuilder();
        var o0 = report.Options;
        sb.AppendLine(CultureInfo.InvariantCulture, $"Model {report.Model}; {report.Images} images; reference from {report.CalibrationImages} clean images; token defense: score {o0.Score}, window {o0.WindowPixels} px, K={o0.MinTokens}, threshold x{o0.ThresholdScale}, neutralisation {o0.Neutralization}; token (paper): JSD, K=4, random composite transforms; seed {report.Settings.Seed}.");
        sb.AppendLine();
        foreach (var section in report.Rows.GroupBy(r => r.Section))
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"### {section.Key}");
            sb.AppendLine();
            sb.AppendLine("| scenario | defense | accuracy | on fooled images | images flagged | tokens flagged | patch coverage (mean / median) | top token on patch | attack success (undefended) |");
            sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
            foreach (var r in section)
            {
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {r.Scenario} | {r.Defense} | {r.Accuracy:P1} | {Pct(r.OnAttacked)} | {Pct(r.Flagged)} | {(r.TokensFlagged is { } tf ? tf.ToString("F1", CultureInfo.InvariantCulture) : "-")} | {Pct(r.Coverage)} / {Pct(r.MedianCoverage)} | {Pct(r.TopInPatch)} | {Pct(r.AttackSuccess)} |");
            }

            sb.AppendLine();
        }

        sb.AppendLine("### overhead (ms per image, batch 1, CPU)");
        sb.AppendLine();
        sb.AppendLine("| forward | token defense | token (paper) | pixel defense | token / forward | paper / forward | pixel / forward |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        var o = report.OverheadMs;
        sb.AppendLine(CultureInfo.InvariantCulture, $"| {o["forward"]:F3} | {o["token"]:F3} | {o["paper"]:F3} | {o["pixel"]:F3} | {o["tokenRatio"]:F2}x | {o["paperRatio"]:F2}x | {o["pixelRatio"]:F2}x |");
        return sb.ToString();

        static string Pct(double? v) => v is { } x ? x.ToString("P1", CultureInfo.InvariantCulture) : "-";
    }
}
