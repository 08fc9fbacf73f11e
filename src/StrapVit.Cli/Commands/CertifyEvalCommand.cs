using System.CommandLine;
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
using static System.FormattableString;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit certify-eval MODEL-DIR</c>: certified mode (PatchCleanser) measured, with its soundness check.</summary>
internal sealed class CertifyEvalCommand : CliVerb
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    private static readonly CertifyOptions Defaults = new();

    private readonly Argument<string> modelDir = CliOptions.ModelDir();
    private readonly Option<string> images = CliOptions.Text("--images", "images to certify: a gzipped IDX file (labels in the *labels-idx1* file beside it) or an ImageFolder tree", required: true, helpName: "images-idx3.gz");
    private readonly Option<int> count = CliOptions.Number("--count", 500, 1, 100_000, "how many of --images to certify (the first ones)");
    private readonly Option<string> split = CliOptions.Choice("--split", "report", "the run's name: report (test-1000) or tune (tune-500, where the stride is chosen)", "report", "tune");
    private readonly ListOption<int> sizes = CliOptions.NumberList("--sizes", [4, 6], 1, 4096, "patch sides (pixels) certified against");
    private readonly ListOption<int> strides = CliOptions.NumberList("--strides", [1], 1, 4096, "mask strides (tokens)");
    private readonly ListOption<int> rowBorderStrides = CliOptions.NumberList("--row-border-strides", [Defaults.RowBorderStride], 0, 4096, "strides of the top and bottom row of masks (tokens; 0 or up to the stride: the stride, PatchCleanser's uniform set)");
    private readonly ListOption<int> colBorderStrides = CliOptions.NumberList("--col-border-strides", [Defaults.ColBorderStride], 0, 4096, "strides of the leftmost and rightmost column of masks (tokens; up to the stride: the stride; the default is the service's)");
    private readonly Option<int> steps = CliOptions.Number("--steps", 100, 1, 10_000, "signed steps of the soundness attack on the plain model");
    private readonly Option<int> placements = CliOptions.Number("--placements", 2, 1, 100, "random patch places per soundness image");
    private readonly Option<int> soundnessCount = CliOptions.Number("--soundness-count", 100, 0, 100_000, "images of the soundness check");
    private readonly Option<int> adaptiveCount = CliOptions.Number("--adaptive-count", 25, 0, 100_000, "soundness images also attacked on the certify surrogate");
    private readonly Option<int> adaptiveSteps = CliOptions.Number("--adaptive-steps", 50, 1, 10_000, "steps of the attack on the certify surrogate");
    private readonly Option<int> robustCount = CliOptions.Number("--robust-count", 0, 0, 100_000, "images (the first ones) whose certify-mode answer is attacked at placements no sound mask covers (0: none)");
    private readonly Option<int> robustPlacements = CliOptions.Number("--robust-placements", 4, 1, 1000, "vulnerable placements tried per image under --robust-count");
    private readonly Option<int> robustSteps = CliOptions.Number("--robust-steps", 200, 1, 10_000, "steps of each attack on the certify surrogate under --robust-count");
    private readonly ListOption<int> plainPatches = CliOptions.NumberList("--plain-patches", [], 1, 4096, "sides (pixels) of plain per-image patches (made on the undefended model, as evaluate's) that certify mode's answer is scored on, with every mask set; none by default");
    private readonly Option<int> plainPatchSteps = CliOptions.Number("--plain-patch-steps", 100, 1, 10_000, "signed steps of the plain per-image patches (evaluate's --steps)");
    private readonly Option<string> patchCache = CliOptions.Text("--patch-cache", "folder caching the plain per-image patches between runs, shared with evaluate's --patch-cache", helpName: "folder");
    private readonly Option<bool> soundness = new("--soundness") { Description = "run the soundness check (true or false)", DefaultValueFactory = _ => true };
    private readonly Option<string> masking = CliOptions.Choice("--masking", "auto", "drop masked tokens, or replace them by the clean mean token (needs the package's defense calibration); auto: the package's choice", "auto", "drop", "replace");
    private readonly Option<string> output = CliOptions.Text("--output", "folder for certify-<model>-<split>.json and .md (default docs/evaluation)", helpName: "folder");
    private readonly Option<int> seed = CliOptions.Number("--seed", 0, 0, int.MaxValue, "random seed");

    public CertifyEvalCommand()
        : base("certify-eval", """
            Evaluate certified mode: clean/certified accuracy, forwards and ms per image, soundness under patch attacks.

            Certifies the first --count --images (labels from the matching *labels-idx1* file) against patches of each
            --sizes side (pixels) with masks every --strides tokens (the border rows and columns of masks every
            --row-border-strides and --col-border-strides, where larger): clean accuracy in certify mode, certified accuracy,
            masked forwards and milliseconds per image (one image at a time, as served). Then, on the first stride, the
            soundness check: the first --soundness-count images certified with their label get per-image patch attacks of that size (--steps
            signed steps, --placements random places) optimised on the plain model and, for the first --adaptive-count,
            on the certify surrogate (mean of the one-mask views, --adaptive-steps steps); each patched 8-bit image is certified again and any
            changed answer is counted as an exception (must be 0). With --robust-count, certify mode is attacked where
            it can be: a mask is sound when every view hiding it gives the label, and a patch inside a sound mask cannot
            change the answer, so each uncertified image answered right is patched at up to --robust-placements of the
            placements no sound mask covers (--robust-steps steps on the certify surrogate there) and answered again
            in certify mode; certified images count as right. With --plain-patches, certify mode's answer is also
            scored, with every mask set, on the plain per-image patches that evaluate scores the empirical defense on
            (the same attack, steps and seed, and with the same --patch-cache the very same images). --split names the run: report (test-1000) or tune
            (tune-500, where the stride is chosen). --masking forces dropping masked tokens or replacing them by the
            clean mean token (needs the package's defense calibration). Writes <output>/certify-<model>-<split>.json and .md.

            Exit codes: 0 measured and sound; 1 bad package or images, or a soundness exception; 2 bad arguments.
            """)
    {
        Arguments.Add(modelDir);
        Option[] options = [images, count, split, sizes, strides, rowBorderStrides, colBorderStrides, steps, placements, soundnessCount, adaptiveCount, adaptiveSteps, robustCount, robustPlacements, robustSteps, plainPatches, plainPatchSteps, patchCache, soundness, masking, output, seed];
        foreach (var option in options) Options.Add(option);
    }

    protected override int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr)
    {
        var imagesPath = parseResult.GetRequiredValue(images);
        var split = parseResult.GetRequiredValue(this.split);
        var count = parseResult.GetValue(this.count);
        var output = parseResult.GetValue(this.output) ?? Path.Combine("docs", "evaluation");
        var settings = new CertifySettings
        {
            PatchSizes = parseResult.GetList(sizes),
            Strides = parseResult.GetList(strides),
            RowBorderStrides = parseResult.GetList(rowBorderStrides),
            ColBorderStrides = parseResult.GetList(colBorderStrides),
            Seed = parseResult.GetValue(seed),
            AttackSteps = parseResult.GetValue(steps),
            Placements = parseResult.GetValue(placements),
            SoundnessCount = parseResult.GetValue(soundnessCount),
            AdaptiveCount = parseResult.GetValue(adaptiveCount),
            AdaptiveSteps = parseResult.GetValue(adaptiveSteps),
            Soundness = parseResult.GetValue(soundness),
            RobustCount = parseResult.GetValue(robustCount),
            RobustPlacements = parseResult.GetValue(robustPlacements),
            RobustSteps = parseResult.GetValue(robustSteps),
            PlainPatchSizes = parseResult.GetList(plainPatches),
            PlainPatchSteps = parseResult.GetValue(plainPatchSteps),
            PatchCache = parseResult.GetValue(patchCache),
        };
        var masking = parseResult.GetRequiredValue(this.masking) switch
        {
            "drop" => MaskingChoice.Drop,
            "replace" => MaskingChoice.Replace,
            _ => MaskingChoice.Auto,
        };

        var package = ModelPackage.Load(parseResult.GetRequiredValue(modelDir));
        var set = CliData.Load(imagesPath, package, count);

        var options = new CertifyOptions { PatchSize = settings.PatchSizes[0], MaskStride = settings.Strides[0], RowBorderStride = settings.RowBorderStrides[0], ColBorderStride = settings.ColBorderStrides[0], MaxPatchSize = settings.PatchSizes.Max(), MaxForwards = int.MaxValue, Masking = masking };
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

    /// <summary>Images per branch of the double-masking algorithm, as one table cell.</summary>
    private static string Cases(IReadOnlyDictionary<string, int> cases) =>
        string.Join(", ", cases.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => $"{c.Key} {c.Value}"));

    private static string Tables(CertifyEvaluationReport report)
    {
        var sb = new StringBuilder();
        var f = report.ReceptiveField;
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"Model {report.Model}; split {report.Split}; {report.Images} images; masking by {report.Method}; token receptive field {f.Rows.Size}x{f.Cols.Size} px, offset {f.Rows.Offset}, stride {f.Rows.Stride}; seed {report.Settings.Seed}; {report.Seconds:F0} s.");
        Table(sb, Invariant($"Plain model: {report.PlainAccuracy:P1} clean, {report.PlainMsPerImage:F2} ms/image (batch 1, CPU)."),
            ["patch", "area", "stride", "border strides (rows x cols)", "masks", "mask (tokens; largest)", "clean (certify mode)", "certified", "certified (any label)", "forwards/image", "ms/image (mean / median / certified images)", "cases"],
            report.Rows.Select(r => Invariant(
                $"| {r.PatchSize}x{r.PatchSize} | {r.AreaPercent:F1}% | {r.Stride} | {r.RowBorderStride}x{r.ColBorderStride} | {r.Masks} | {r.MaskRows}x{r.MaskCols}; {r.LargestRows}x{r.LargestCols} | {r.CleanAccuracy:P1} | {r.CertifiedAccuracy:P1} | {r.CertifiedRate:P1} | {r.ForwardsPerImage:F0} | {r.MsPerImage:F1} / {r.MedianMsPerImage:F1} / {r.CertifiedMsPerImage:F1} | {Cases(r.Cases)} |")));

        if (report.UnderAttack.Count > 0)
        {
            Table(sb, "Certify mode under attack where a patch can change it: uncertified images answered right, patched at placements no sound mask covers (the patch optimised on the certify surrogate there), answered again in certify mode.",
                ["patch", "images", "certified", "attacked", "broken", "right under attack", "attacked with no vulnerable placement", "vulnerable share of placements", "placements x steps", "surrogate fooled"],
                report.UnderAttack.Select(a => Invariant(
                    $"| {a.PatchSize}x{a.PatchSize} | {a.Images} | {a.Certified} | {a.Attacked} | {a.Broken} | **{a.Accuracy:P1}** | {a.NoVulnerable} | {a.VulnerableShare:P1} | {a.Placements} x {a.Steps} | {a.SurrogateFooled:P1} |")));
        }

        if (report.PlainPatches.Count > 0)
        {
            Table(sb, Invariant($"Certify mode on plain per-image patches ({report.PlainPatches[0].Steps} signed steps on the undefended model, seed {report.Settings.Seed}, the 8-bit image: the patches evaluate scores the empirical defense on)."),
                ["masks for", "patch", "images", "undefended", "certify mode", "certified with the label", "forwards/image", "ms/image", "cases"],
                report.PlainPatches.Select(p => Invariant(
                    $"| {p.MaskSize}x{p.MaskSize} | {p.PatchSize}x{p.PatchSize} | {p.Images} | {p.Undefended:P1} | **{p.Accuracy:P1}** | {p.Certified:P1} | {p.ForwardsPerImage:F0} | {p.MsPerImage:F1} | {Cases(p.Cases)} |")));
        }

        if (report.Soundness.Count > 0)
        {
            Table(sb, Invariant($"Soundness: images certified with their label, patched ({report.Settings.AttackSteps} steps on the plain model, {report.Settings.AdaptiveSteps} on the certify surrogate; {report.Settings.Placements} random places each), certified again."),
                ["patch", "attack optimised on", "images", "patched images", "attack success", "plain model fooled", "still certified", "exceptions"],
                report.Soundness.Select(s => Invariant(
                    $"| {s.PatchSize}x{s.PatchSize} | {s.Attack} | {s.Images} | {s.Attempts} | {s.AttackSuccess:P1} | {s.PlainFooled:P1} | {s.CertifiedAfter:P1} | **{s.Exceptions}** |")));
        }

        return sb.ToString();
    }

    /// <summary>One Markdown table after a blank line: its caption paragraph, the header and its separator, then the rows.</summary>
    private static void Table(StringBuilder sb, string caption, string[] columns, IEnumerable<string> rows)
    {
        sb.AppendLine();
        sb.AppendLine(caption);
        sb.AppendLine();
        sb.AppendLine($"| {string.Join(" | ", columns)} |");
        sb.AppendLine($"|{string.Concat(columns.Select(_ => "---|"))}");
        foreach (var row in rows) sb.AppendLine(row);
    }
}
