using System.Globalization;
using System.Text;
using System.Text.Json;
using StrapVit.Core.Attacks;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit certify-eval MODEL-DIR</c>: certified mode (PatchCleanser) measured, with its soundness check.</summary>
internal sealed class CertifyEvalCommand : ICliCommand
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    public string Name => "certify-eval";

    public string Summary => "Evaluate certified mode: clean/certified accuracy, forwards and ms per image, soundness under patch attacks.";

    public string Usage => """
        Usage: strapvit certify-eval <model-dir> --images <images-idx3.gz> [--count 500] [--split report|tune]
                                     [--sizes 4,6] [--strides 1] [--steps 100] [--placements 2]
                                     [--soundness-count 100] [--adaptive-count 25] [--adaptive-steps 50] [--soundness true|false]
                                     [--masking auto|drop|replace]
                                     [--output docs/evaluation] [--seed 0]

        Certifies the first --count --images (labels from the matching *labels-idx1* file) against patches of each
        --sizes side (pixels) with masks every --strides tokens: clean accuracy in certify mode, certified accuracy,
        masked forwards and milliseconds per image (one image at a time, as served). Then, on the first stride, the
        soundness check: the first --soundness-count images certified with their label get per-image patch attacks of that size (--steps
        signed steps, --placements random places) optimised on the plain model and, for the first --adaptive-count,
        on the certify surrogate (mean of the one-mask views, --adaptive-steps steps); each patched 8-bit image is certified again and any
        changed answer is counted as an exception (must be 0). --split names the run: report (test-1000) or tune
        (tune-500, where the stride is chosen). --masking forces dropping masked tokens or replacing them by the
        clean mean token (needs the package's defense calibration). Writes <output>/certify-<model>-<split>.json and .md.
        """;

    public int Run(CliArguments args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Positionals.Count != 1) throw new CliUsageException("expected exactly one <model-dir>");
        var imagesPath = args.RequiredOption("images");
        var split = args.Option("split") ?? "report";
        if (split is not ("report" or "tune")) throw new CliUsageException("--split must be report or tune");
        var count = (int)CliNumbers.Double(args, "count", 500, 1, 100_000);
        var output = args.Option("output") ?? Path.Combine("docs", "evaluation");
        var soundness = (args.Option("soundness") ?? "true") switch
        {
            "true" => true,
            "false" => false,
            var other => throw new CliUsageException($"--soundness must be true or false, not '{other}'"),
        };
        var settings = new CertifySettings
        {
            PatchSizes = Ints(args, "sizes", "4,6"),
            Strides = Ints(args, "strides", "1"),
            Seed = (int)CliNumbers.Double(args, "seed", 0, 0, int.MaxValue),
            AttackSteps = (int)CliNumbers.Double(args, "steps", 100, 1, 10_000),
            Placements = (int)CliNumbers.Double(args, "placements", 2, 1, 100),
            SoundnessCount = (int)CliNumbers.Double(args, "soundness-count", 100, 0, 100_000),
            AdaptiveCount = (int)CliNumbers.Double(args, "adaptive-count", 25, 0, 100_000),
            AdaptiveSteps = (int)CliNumbers.Double(args, "adaptive-steps", 50, 1, 10_000),
            Soundness = soundness,
        };
        var masking = (args.Option("masking") ?? "auto") switch
        {
            "auto" => MaskingChoice.Auto,
            "drop" => MaskingChoice.Drop,
            "replace" => MaskingChoice.Replace,
            var other => throw new CliUsageException($"--masking must be auto, drop or replace, not '{other}'"),
        };
        args.RejectUnknownOptions();

        var package = ModelPackage.Load(args.Positionals[0]);
        var set = CliData.Load(imagesPath, package, count);

        var options = new CertifyOptions { PatchSize = settings.PatchSizes[0], MaskStride = settings.Strides[0], MaxPatchSize = settings.PatchSizes.Max(), MaxForwards = int.MaxValue, Masking = masking };
        using var runtime = CliRuntime.Load(package, new ModelRuntimeOptions { Inference = new InferenceOptions { Device = InferenceDevice.Cpu }, Certify = options }, gradients: true);
        var certifier = runtime.Certify?.Certifier ?? throw new ModelPackageException($"certified mode is unavailable: {runtime.Certify?.UnavailableReason}");
        var classifier = runtime.Classifier;
        var sessions = runtime.Sessions;
        using var embeddingGradients = TokenGradients.CreateEmbeddingVjp(package, certifier.Classifier.Model, sessions);
        var undefended = new OnnxDifferentiableClassifier(runtime.Gradients!, classifier);

        var f = certifier.Field;
        stdout.WriteLine($"certify-eval {package.Manifest.Name}: split {split}, {set.Count} images, masking by {certifier.Classifier.MethodName}, "
            + $"token receptive field {f.Rows.Size}x{f.Cols.Size} px (offset {f.Rows.Offset}, stride {f.Rows.Stride})");
        var report = new CertifyEvaluation(package, classifier, certifier, undefended, embeddingGradients, sessions, settings, stdout).Run(set, split);

        Directory.CreateDirectory(output);
        var stem = Path.Combine(output, $"certify-{package.Manifest.Name}-{split}");
        File.WriteAllText(stem + ".json", JsonSerializer.Serialize(report, JsonOptions));
        File.WriteAllText(stem + ".md", Tables(report));
        stdout.WriteLine($"wrote {stem}.json and {stem}.md in {report.Seconds:F0} s");
        return report.Soundness.Any(s => s.Exceptions > 0) ? ExitCodes.Failed : ExitCodes.Ok;
    }

    private static int[] Ints(CliArguments args, string name, string fallback)
    {
        var text = args.Option(name) ?? fallback;
        try
        {
            var values = text.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
            return values.Length > 0 && values.All(v => v >= 1) ? values : throw new FormatException();
        }
        catch (FormatException)
        {
            throw new CliUsageException($"--{name} must be a comma-separated list of positive integers, not '{text}'");
        }
    }

    private static string Tables(CertifyEvaluationReport report)
    {
        var sb = new StringBuilder();
        var f = report.ReceptiveField;
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"Model {report.Model}; split {report.Split}; {report.Images} images; masking by {report.Method}; token receptive field {f.Rows.Size}x{f.Cols.Size} px, offset {f.Rows.Offset}, stride {f.Rows.Stride}; seed {report.Settings.Seed}; {report.Seconds:F0} s.");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Plain model: {report.PlainAccuracy:P1} clean, {report.PlainMsPerImage:F2} ms/image (batch 1, CPU).");
        sb.AppendLine();
        sb.AppendLine("| patch | area | stride | masks | mask (tokens) | clean (certify mode) | certified | certified (any label) | forwards/image | ms/image | cases |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in report.Rows)
        {
            var cases = string.Join(", ", r.Cases.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => $"{c.Key} {c.Value}"));
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.PatchSize}x{r.PatchSize} | {r.AreaPercent:F1}% | {r.Stride} | {r.Masks} | {r.MaskRows}x{r.MaskCols} | {r.CleanAccuracy:P1} | {r.CertifiedAccuracy:P1} | {r.CertifiedRate:P1} | {r.ForwardsPerImage:F0} | {r.MsPerImage:F1} | {cases} |");
        }

        if (report.Soundness.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"Soundness: images certified with their label, patched ({report.Settings.AttackSteps} steps on the plain model, {report.Settings.AdaptiveSteps} on the certify surrogate; {report.Settings.Placements} random places each), certified again.");
            sb.AppendLine();
            sb.AppendLine("| patch | attack optimised on | images | patched images | attack success | plain model fooled | still certified | exceptions |");
            sb.AppendLine("|---|---|---|---|---|---|---|---|");
            foreach (var s in report.Soundness)
            {
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {s.PatchSize}x{s.PatchSize} | {s.Attack} | {s.Images} | {s.Attempts} | {s.AttackSuccess:P1} | {s.PlainFooled:P1} | {s.CertifiedAfter:P1} | **{s.Exceptions}** |");
            }
        }

        return sb.ToString();
    }
}
