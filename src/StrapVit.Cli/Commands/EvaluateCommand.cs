using System.CommandLine;
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
internal sealed class EvaluateCommand : CliVerb
{
    private static readonly DefenseOptions Defaults = new();

    private readonly Argument<string> modelDir = CliOptions.ModelDir();
    private readonly Option<string> images = CliOptions.Text("--images", "test images: a gzipped IDX file (labels in the *labels-idx1* file beside it) or an ImageFolder tree", required: true, helpName: "test-images-idx3.gz");
    private readonly Option<string> calib = CliOptions.Text("--calib", "clean training images the defense is calibrated on, same formats as --images", required: true, helpName: "clean-images-idx3.gz");
    private readonly Option<string> verifyCalib = CliOptions.Text("--verify-calib", "clean images, not the --calib ones, that --verify-clean-rate counts replaced answers on (the bank holds the --calib images' own tokens, so the check disagrees less there); default --calib", helpName: "clean-images-idx3.gz");
    private readonly Option<int> count = CliOptions.Number("--count", 500, 10, 100_000, "how many of --images to score (the first ones)");
    private readonly Option<string> split = CliOptions.Choice("--split", "report", "the run's name: report (the reported test images) or tune (held-out images the defaults are chosen on)", "report", "tune");
    private readonly Option<string> output = CliOptions.Text("--output", "folder for results-<split>.json and tables-<split>.md (default docs/evaluation)", helpName: "folder");
    private readonly Option<int> seed = CliOptions.Number("--seed", 0, 0, int.MaxValue, "random seed");
    private readonly ListOption<int> sizes = CliOptions.NumberList("--sizes", [4, 6, 8], 1, 4096, "per-image patch sides in pixels");
    private readonly Option<int> steps = CliOptions.Number("--steps", 100, 1, 10_000, "per-image patch attack steps");
    private readonly Option<int> universalSteps = CliOptions.Number("--universal-steps", 300, 0, 100_000, "universal patch training steps (0: none)");
    private readonly Option<int> target = CliOptions.Number("--target", 8, 0, 100_000, "universal patch target class");
    private readonly Option<int> adaptiveCount = CliOptions.Number("--adaptive-count", 200, 0, 100_000, "images attacked by the adaptive EOT attack");
    private readonly Option<int> eotSamples = CliOptions.Number("--eot-samples", 4, 1, 64, "EOT samples per adaptive step");
    private readonly Option<int> k = CliOptions.Number("--k", Defaults.MinTokens, 0, 10_000, "tokens always neutralised (Defense:MinTokens)");
    private readonly Option<double> thresholdScale = CliOptions.Number("--threshold-scale", Defaults.ThresholdScale, 1e-6, 1e12, "multiplier of the calibrated threshold (Defense:ThresholdScale)");
    private readonly Option<TokenScore> score = new("--score") { Description = "token score (Defense:Score)", DefaultValueFactory = _ => Defaults.Score };
    private readonly Option<int> window = CliOptions.Number("--window", Defaults.WindowPixels, 0, 100_000, "scoring window in pixels (Defense:WindowPixels)");
    private readonly Option<string> windowWhen = CliOptions.Choice("--window-when", Defaults.WindowOnlyOverThreshold ? "over-threshold" : "always",
        "when the window is flagged: always (whenever anything is flagged, the K minimum included) or over-threshold (only when a token is over its threshold) (Defense:WindowOnlyOverThreshold)", "always", "over-threshold");
    private readonly Option<double> windowGrow = CliOptions.Number("--window-grow", Defaults.WindowGrowRatio, 0, 1e6, "grow the flagged window by each neighbouring token whose score is at least this share of its threshold (Defense:WindowGrowRatio; 0: no growth)");
    private readonly Option<double> windowMinSum = CliOptions.Number("--window-min-sum", Defaults.WindowMinRatioSum, 0, 1e6, "when no token is over threshold, flag the window only if its score-to-threshold ratios add up to this (Defense:WindowMinRatioSum; 0: whenever anything is flagged)");
    private readonly ListOption<double> sweepWindowMinSum = CliOptions.NumberList("--sweep-window-min-sum", [Defaults.WindowMinRatioSum], 0, 1e6, "window ratio sums of the sweep (Defense:WindowMinRatioSum; 0: whenever anything is flagged), for windows flagged not only over threshold");
    private readonly ListOption<double> sweepWindowGrow = CliOptions.NumberList("--sweep-window-grow", [Defaults.WindowGrowRatio], 0, 1e6, "window growth ratios of the sweep (Defense:WindowGrowRatio; 0: no growth)");
    private readonly Option<VerifyRule> verifyRule = new("--verify-rule") { Description = "the masking check's second-round rule (Defense:VerifyRule)", DefaultValueFactory = _ => Defaults.VerifyRule };
    private readonly ListOption<VerifyRule> sweepVerifyRule = CliOptions.EnumList("--sweep-verify-rule", [Defaults.VerifyRule], "second-round rules of the sweep, for checked configurations");
    private readonly Option<string> verifyComplete = CliOptions.Choice("--verify-complete", Defaults.VerifyComplete ? (Defaults.VerifyCompleteUnflagged ? "unflagged" : "on") : "off",
        "when no window passes the masking check's second round, take the first disagreeing window next to a token over threshold (on: Defense:VerifyComplete), or with no token over threshold any disagreeing window (unflagged: and Defense:VerifyCompleteUnflagged)",
        "off", "on", "unflagged");
    private readonly ListOption<bool> sweepVerifyComplete = CliOptions.OnOffList("--sweep-verify-complete", [Defaults.VerifyComplete], "Defense:VerifyComplete values of the sweep, for checked configurations");
    private readonly Option<Neutralization> neutralize = new("--neutralize") { Description = "what a flagged token becomes (Defense:Neutralization)", DefaultValueFactory = _ => Defaults.Neutralization };
    private readonly Option<int> bankChoices = CliOptions.Number("--bank-choices", Defaults.BankChoices, 1, 64, "bank entries a neutralised token picks from (Defense:BankChoices)");
    private readonly Option<bool> sweep = new("--sweep") { Description = "also run the grid the defaults are chosen from (run it on the tune split)" };
    private readonly Option<bool> ablation = new("--ablation") { Description = "run the one-knob ablation when there is no --sweep (true or false; on thousands of images it takes most of the run)", DefaultValueFactory = _ => true };
    private readonly ListOption<TokenScore> sweepScores = CliOptions.EnumList("--sweep-scores", [TokenScore.Jsd, TokenScore.Knn], "token scores of the sweep");
    private readonly ListOption<int> sweepWindows = CliOptions.NumberList("--sweep-windows", [0, 6, 10], 0, 100_000, "scoring windows (pixels) of the sweep");
    private readonly ListOption<int> sweepK = CliOptions.NumberList("--sweep-k", [0, 2, 4], 0, 10_000, "K values of the sweep");
    private readonly ListOption<Neutralization> sweepNeutralize = CliOptions.EnumList("--sweep-neutralize", [Neutralization.Transform, Neutralization.Mean, Neutralization.Bank], "neutralisations of the sweep");
    private readonly Option<int> verify = CliOptions.Number("--verify", Defaults.VerifyWindows, 0, 16, "candidate windows of the masking check (Defense:VerifyWindows; 0: none)");
    private readonly Option<int> partners = CliOptions.Number("--partners", Defaults.VerifyPartners, 1, 64, "second-round partner windows of the masking check (Defense:VerifyPartners)");
    private readonly Option<int> verifyWindow = CliOptions.Number("--verify-window", Defaults.VerifyWindowPixels, 0, 1024, "patch budget in pixels that sizes the masking check's windows (Defense:VerifyWindowPixels; 0: --window's)");
    private readonly ListOption<int> sweepVerify = CliOptions.NumberList("--sweep-verify", [Defaults.VerifyWindows], 0, 16, "masking-check window counts of the sweep (0: no check)");
    private readonly ListOption<int> sweepPartners = CliOptions.NumberList("--sweep-partners", [Defaults.VerifyPartners], 1, 64, "masking-check partner counts of the sweep");
    private readonly Option<int> verifyGroup = CliOptions.Number("--verify-group", Defaults.VerifyGroup, 1, 16, "first-round windows of the masking check hidden together in one view (Defense:VerifyGroup)");
    private readonly Option<int> occlusionGroup = CliOptions.Number("--occlusion-group", 0, 0, 16, "windows each occlusion view of the strong attacks hides (0: as many as the check's first-round groups, --verify-group)");
    private readonly ListOption<int> sweepVerifyGroup = CliOptions.NumberList("--sweep-verify-group", [Defaults.VerifyGroup], 1, 16, "masking-check group sizes of the sweep");
    private readonly Option<double> verifyCleanRate = CliOptions.Number("--verify-clean-rate", 0.0, 0, 0.99, "share of clean answers (--verify-calib's images, else --calib's) the masking check may replace: sets Defense:VerifyMargin for it before anything runs (0: --verify-margin)");
    private readonly Option<double> verifyMargin = CliOptions.Number("--verify-margin", 0.0, 0, 1e6, "logit margin each second-round view of the masking check needs (Defense:VerifyMargin)");
    private readonly ListOption<double> sweepVerifyCleanRate = CliOptions.NumberList("--sweep-verify-clean-rate", [0.0], 0, 0.99, "clean replacement rates of the sweep, each calibrated to a masking-check margin (0: --verify-margin)");
    private readonly ListOption<string> sweepWindowWhen = CliOptions.List("--sweep-window-when", [Defaults.WindowOnlyOverThreshold ? "over-threshold" : "always"], (string text, out string value) => (value = text) is "always" or "over-threshold",
        "when the sweep's windows are flagged: always (whenever anything is flagged) and/or over-threshold (only when a token is over its threshold)", "always or over-threshold");
    private readonly ListOption<bool> strongOcclusion = CliOptions.OnOffList("--strong-occlusion", [false],
        "strong attacks without (off) and/or with (on) occlusion views aimed at the masking check: every check-sized window over the patch hidden must leave the same wrong answer");
    private readonly ListOption<int> sweepChoices = CliOptions.NumberList("--sweep-choices", [1], 1, 64, "bank choices of the sweep");
    private readonly BankOptions bankOptions = new();
    private readonly Option<string> patchCache = CliOptions.Text("--patch-cache", "folder caching the per-image (non-adaptive) patches between runs; the adaptive attacks are always rerun", helpName: "folder");
    private readonly Option<string> saveAttacks = CliOptions.Text("--save-attacks", "folder to write each adaptive attack's images to (gzipped IDX with labels, and attacks.json: scenario, placements, which images each side answers right), for offline study", helpName: "folder");
    private readonly Option<int> strongSteps = CliOptions.Number("--strong-steps", 500, 0, 100_000, "steps of the strong adaptive attack");
    private readonly Option<int> strongRestarts = CliOptions.Number("--strong-restarts", 2, 1, 100, "restarts of the strong adaptive attack");
    private readonly Option<int> strongLocation = CliOptions.Number("--strong-location-stride", 0, 0, 64,
        "pixels the strong attacks try moving the patch by, in four directions, at every check, keeping the move the real defense answers worst (location optimisation; 0: fixed random placements)");
    private readonly Option<int> strongEot = CliOptions.Number("--strong-eot", 16, 1, 256, "EOT samples of the strong adaptive attack");
    private readonly ListOption<double> evasionMargins = CliOptions.NumberList("--evasion-margins", [0.9], 0, 1e6, "score-to-threshold ratios the evasion term pushes patch tokens under (each with each weight)");
    private readonly ListOption<double> evasion = CliOptions.NumberList("--evasion", [0.0, 1, 10], 0, 1e12, "detector-evasion weights of the strong adaptive attack");

    public EvaluateCommand()
        : base("evaluate", """
            Evaluate the patch defenses: clean, per-image and universal patches, adaptive EOT attack, ablation, overhead.

            Calibrates the defense on all --calib images (clean training images) and scores the first --count --images.
            Each of --images and --calib is a gzipped IDX file (labels in the matching *labels-idx1* file beside it) or a
            folder with one subfolder of images per class (torchvision's ImageFolder layout; folder names matching the
            model's labels get those labels, else their sorted order).
            --split names the run: report (default) for the reported test images (samples/fashion-mnist/test-1000-*),
            tune for the held-out images the defaults are chosen on (samples/fashion-mnist/tune-500-*, disjoint
            from test-1000). Writes <output>/results-<split>.json and <output>/tables-<split>.md. Labels come from the
            matching *labels-idx1* file next to each images file. The defense options default to the service's
            (Defense:* defaults); --sweep adds the grid the defaults are chosen from (run it on the tune split).
            """)
    {
        Arguments.Add(modelDir);
        Option[] options =
        [
            images, calib, verifyCalib, count, split, output, seed, sizes, steps, universalSteps, target, adaptiveCount, eotSamples, k, thresholdScale,
            score, window, windowWhen, neutralize, bankChoices, verify, partners, verifyWindow, verifyGroup, sweep, ablation, sweepScores, sweepWindows, sweepK, sweepNeutralize, sweepChoices, sweepVerify, sweepPartners, sweepVerifyGroup, verifyCleanRate, verifyMargin, sweepVerifyCleanRate, occlusionGroup, sweepWindowWhen, windowGrow, sweepWindowGrow, windowMinSum, sweepWindowMinSum, verifyRule, sweepVerifyRule, verifyComplete, sweepVerifyComplete,
            .. bankOptions.All, patchCache, saveAttacks, strongSteps, strongRestarts, strongLocation, strongEot, evasion, evasionMargins, strongOcclusion,
        ];
        foreach (var option in options) Options.Add(option);
    }

    protected override int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr)
    {
        var calibPath = parseResult.GetRequiredValue(calib);
        var split = parseResult.GetRequiredValue(this.split);
        var imagesPath = parseResult.GetRequiredValue(images);
        var count = parseResult.GetValue(this.count);
        var output = parseResult.GetValue(this.output) ?? Path.Combine("docs", "evaluation");
        var settings = new EvaluationSettings
        {
            Seed = parseResult.GetValue(seed),
            PatchSizes = parseResult.GetList(sizes),
            PatchSteps = parseResult.GetValue(steps),
            UniversalSteps = parseResult.GetValue(universalSteps),
            UniversalTarget = parseResult.GetValue(target),
            AdaptiveCount = parseResult.GetValue(adaptiveCount),
            EotSamples = parseResult.GetValue(eotSamples),
            Sweep = parseResult.GetValue(sweep),
            Ablation = parseResult.GetValue(ablation),
            SweepScores = parseResult.GetList(sweepScores),
            SweepWindows = parseResult.GetList(sweepWindows),
            SweepK = parseResult.GetList(sweepK),
            SweepBankChoices = parseResult.GetList(sweepChoices),
            SweepNeutralizations = parseResult.GetList(sweepNeutralize),
            SweepVerify = parseResult.GetList(sweepVerify),
            SweepVerifyPartners = parseResult.GetList(sweepPartners),
            SweepVerifyGroups = parseResult.GetList(sweepVerifyGroup),
            SweepVerifyCleanRates = parseResult.GetList(sweepVerifyCleanRate),
            VerifyCleanRate = parseResult.GetValue(verifyCleanRate),
            SweepWindowOnlyOverThreshold = parseResult.GetList(sweepWindowWhen).Select(w => w == "over-threshold").Distinct().ToArray(),
            SweepWindowGrowRatios = parseResult.GetList(sweepWindowGrow).Distinct().ToArray(),
            SweepWindowMinRatioSums = parseResult.GetList(sweepWindowMinSum).Distinct().ToArray(),
            SweepVerifyRules = parseResult.GetList(sweepVerifyRule).Distinct().ToArray(),
            SweepVerifyComplete = parseResult.GetList(sweepVerifyComplete).Distinct().ToArray(),
            PatchCache = parseResult.GetValue(patchCache),
            SaveAttacks = parseResult.GetValue(saveAttacks),
            StrongSteps = parseResult.GetValue(strongSteps),
            StrongRestarts = parseResult.GetValue(strongRestarts),
            StrongLocationStride = parseResult.GetValue(strongLocation),
            StrongEotSamples = parseResult.GetValue(strongEot),
            EvasionWeights = parseResult.GetList(evasion),
            EvasionMargins = parseResult.GetList(evasionMargins),
            StrongOcclusion = parseResult.GetList(strongOcclusion).Distinct().ToArray(),
            OcclusionGroup = parseResult.GetValue(occlusionGroup) is > 0 and var g ? g : null,
            Bank = bankOptions.Read(parseResult),
        };
        var options = new DefenseOptions
        {
            MinTokens = parseResult.GetValue(k),
            ThresholdScale = parseResult.GetValue(thresholdScale),
            WindowPixels = parseResult.GetValue(window),
            WindowOnlyOverThreshold = parseResult.GetValue(windowWhen) == "over-threshold",
            WindowGrowRatio = parseResult.GetValue(windowGrow),
            WindowMinRatioSum = parseResult.GetValue(windowMinSum),
            VerifyRule = parseResult.GetValue(verifyRule),
            VerifyComplete = parseResult.GetValue(verifyComplete) is "on" or "unflagged",
            VerifyCompleteUnflagged = parseResult.GetValue(verifyComplete) == "unflagged",
            Score = parseResult.GetValue(score),
            Neutralization = parseResult.GetValue(neutralize),
            BankChoices = parseResult.GetValue(bankChoices),
            VerifyWindows = parseResult.GetValue(verify),
            VerifyPartners = parseResult.GetValue(partners),
            VerifyWindowPixels = parseResult.GetValue(verifyWindow),
            VerifyGroup = parseResult.GetValue(verifyGroup),
            VerifyMargin = parseResult.GetValue(verifyMargin),
        };
        settings = settings with { AdaptivePatchSize = settings.PatchSizes.Contains(6) ? 6 : settings.PatchSizes[0] };

        var package = ModelPackage.Load(parseResult.GetRequiredValue(modelDir));
        var test = CliData.Load(imagesPath, package, count);
        var reference = CliData.Load(calibPath, package, 100_000);
        var checkReference = parseResult.GetValue(verifyCalib) is { } checkPath ? CliData.Load(checkPath, package, 100_000) : null;

        using var runtime = CliRuntime.Load(package, new ModelRuntimeOptions { Inference = new InferenceOptions { Device = InferenceDevice.Cpu }, TokenSplit = true }, gradients: true);
        var classifier = runtime.Classifier;
        var tokens = runtime.TokenModel ?? throw new ModelPackageException("model.json has no 'tokens' entry, so the token defense cannot be evaluated.");
        using var tokenGradients = TokenGradients.Create(package, tokens, runtime.Sessions);
        var undefended = new OnnxDifferentiableClassifier(runtime.Gradients!, classifier);

        stdout.WriteLine($"evaluate {package.Manifest.Name}: split {split}, {test.Count} images, reference from {reference.Count} clean images, K={options.MinTokens}");
        var report = new DefenseEvaluation(package, classifier, tokens, tokenGradients, undefended, options, settings, stdout).Run(test, reference, checkReference);

        Directory.CreateDirectory(output);
        var json = Path.Combine(output, $"results-{split}.json");
        File.WriteAllText(json, JsonSerializer.Serialize(report, EvaluationReport.Json));
        var tables = Path.Combine(output, $"tables-{split}.md");
        File.WriteAllText(tables, Tables(report));
        stdout.WriteLine($"wrote {json} and {tables} in {report.Seconds:F0} s");
        return ExitCodes.Ok;
    }

    private static string Tables(EvaluationReport report)
    {
        var sb = new StringBuilder();
        var o0 = report.Options;
        sb.AppendLine(CultureInfo.InvariantCulture, $"Model {report.Model}; {report.Images} images; reference from {report.CalibrationImages} clean images; token defense: score {o0.Score}, window {o0.WindowPixels} px, K={o0.MinTokens}, threshold x{o0.ThresholdScale}, neutralisation {o0.Neutralization}, masking check {(o0.VerifyWindows > 0 ? $"of {o0.VerifyWindows} windows{(o0.VerifyWindowPixels > 0 ? $" ({o0.VerifyWindowPixels} px)" : "")} with {o0.VerifyPartners} partners{(o0.VerifyGroup > 1 ? $", first round in groups of {o0.VerifyGroup}" : "")}{(o0.VerifyMargin > 0 ? $", second-round margin {o0.VerifyMargin:F3}" : "")}{(o0.VerifyRule == VerifyRule.Veto ? ", second round by veto" : "")}{(o0.VerifyComplete ? ", completing a patch flagged in part" : "")}" : "off")}{(o0.WindowGrowRatio > 0 ? $", window grown at {o0.WindowGrowRatio:0.###}" : "")}{(o0.WindowMinRatioSum > 0 ? $", window under threshold only at a ratio sum of {o0.WindowMinRatioSum:0.###}" : "")}; token (paper): JSD, K=4, random composite transforms; seed {report.Settings.Seed}.");
        sb.AppendLine();
        foreach (var section in report.Rows.GroupBy(r => r.Section))
        {
            if (section.Key == "losses")
            {
                sb.AppendLine("### losses (the configured token defense: images answered wrong whose clean version the undefended model answers right)");
                sb.AppendLine();
                sb.AppendLine("| scenario | where | images | share of the set | of them right with oracle flags |");
                sb.AppendLine("|---|---|---|---|---|");
                foreach (var r in section)
                {
                    var line = r.OutOf is { } of
                        ? string.Create(CultureInfo.InvariantCulture, $"| {r.Scenario} | {r.Defense} | {r.Count} of {of} | {r.Accuracy:P2} of those | - |")
                        : string.Create(CultureInfo.InvariantCulture, $"| {r.Scenario} | {r.Defense} | {r.Count} | {r.Accuracy:P2} | {(r.OracleRight is { } right ? right.ToString(CultureInfo.InvariantCulture) : "-")} |");
                    sb.AppendLine(line);
                }

                sb.AppendLine();
                continue;
            }

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
