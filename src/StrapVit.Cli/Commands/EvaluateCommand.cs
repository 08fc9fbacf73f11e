using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Attacks;
using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

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

        Calibrates the defense on all --calib images (clean training images) and scores the first --count --images.
        --split names the run: report (default) for the reported test images (samples/fashion-mnist/test-1000-*),
        tune for the held-out images the defaults are chosen on (samples/fashion-mnist/tune-500-*, disjoint
        from test-1000). Writes <output>/results-<split>.json and <output>/tables-<split>.md. Labels come from the
        matching *labels-idx1* file next to each images file.
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
            UniversalSteps = (int)CliNumbers.Double(args, "universal-steps", 300, 1, 100_000),
            UniversalTarget = (int)CliNumbers.Double(args, "target", 8, 0, 100_000),
            AdaptiveCount = (int)CliNumbers.Double(args, "adaptive-count", 200, 1, 100_000),
            EotSamples = (int)CliNumbers.Double(args, "eot-samples", 4, 1, 64),
        };
        var options = new DefenseOptions
        {
            MinTokens = (int)CliNumbers.Double(args, "k", new DefenseOptions().MinTokens, 0, 10_000),
            ThresholdScale = CliNumbers.Double(args, "threshold-scale", 1.0, 1e-6, 1e12),
        };
        settings = settings with { AdaptivePatchSize = settings.PatchSizes.Contains(6) ? 6 : settings.PatchSizes[0] };
        args.RejectUnknownOptions();

        var package = ModelPackage.Load(args.Positionals[0]);
        var calib = IdxDataset.Load(calibPath, LabelsFor(calibPath));
        var images = IdxDataset.Load(imagesPath, LabelsFor(imagesPath));
        var test = EvaluationSet.FromIdx(images, count);
        var reference = EvaluationSet.FromIdx(calib, calib.Count);

        var cpu = new InferenceOptions { Device = InferenceDevice.Cpu };
        var sessions = new OnnxSessionFactory(cpu, NullLogger<OnnxSessionFactory>.Instance);
        using var classifier = new VitClassifier(package, sessions, cpu);
        using var tokens = new TokenSpaceModel(package, sessions);
        using var tokenGradients = TokenGradients.Create(package, tokens, sessions);
        using var runner = GradientRunner.Create(package, new GradientGraphs(null, NullLogger<GradientGraphs>.Instance), sessions);
        var undefended = new OnnxDifferentiableClassifier(runner, classifier);

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

    private static string LabelsFor(string images) =>
        IdxDataset.LabelsBeside(images) is var labels && File.Exists(labels)
            ? labels
            : throw new CliUsageException($"no labels file next to {images}");

    private static string Tables(EvaluationReport report)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Model {report.Model}; {report.Images} images; reference from {report.CalibrationImages} clean images; K={report.Options.MinTokens}, threshold x{report.Options.ThresholdScale}; seed {report.Settings.Seed}.");
        sb.AppendLine();
        foreach (var section in report.Rows.GroupBy(r => r.Section))
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"### {section.Key}");
            sb.AppendLine();
            sb.AppendLine("| scenario | defense | accuracy | images flagged | patch coverage | attack success (undefended) |");
            sb.AppendLine("|---|---|---|---|---|---|");
            foreach (var r in section)
            {
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {r.Scenario} | {r.Defense} | {r.Accuracy:P1} | {Pct(r.Flagged)} | {Pct(r.Coverage)} | {Pct(r.AttackSuccess)} |");
            }

            sb.AppendLine();
        }

        sb.AppendLine("### overhead (ms per image, batch 1, CPU)");
        sb.AppendLine();
        sb.AppendLine("| forward | token defense | pixel defense | token / forward | pixel / forward |");
        sb.AppendLine("|---|---|---|---|---|");
        var o = report.OverheadMs;
        sb.AppendLine(CultureInfo.InvariantCulture, $"| {o["forward"]:F3} | {o["token"]:F3} | {o["pixel"]:F3} | {o["tokenRatio"]:F2}x | {o["pixelRatio"]:F2}x |");
        return sb.ToString();

        static string Pct(double? v) => v is { } x ? x.ToString("P1", CultureInfo.InvariantCulture) : "-";
    }
}
