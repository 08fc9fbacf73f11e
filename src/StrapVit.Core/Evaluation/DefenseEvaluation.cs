using System.Diagnostics;
using StrapVit.Core.Attacks;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Core.Evaluation;

/// <summary>Knobs of one evaluation run.</summary>
public sealed record EvaluationSettings
{
    public int[] PatchSizes { get; init; } = [4, 6, 8];
    public int PatchSteps { get; init; } = 100;
    public int UniversalSteps { get; init; } = 300;
    public int UniversalTarget { get; init; } = 8;
    public int AdaptivePatchSize { get; init; } = 6;
    public int AdaptiveCount { get; init; } = 200;
    public int EotSamples { get; init; } = 4;
    public int OverheadImages { get; init; } = 200;
    public double Temperature { get; init; } = 1.0;
    public int HistogramBins { get; init; } = 16;
    public double Quantile { get; init; } = 0.99;
    public int[] AblationK { get; init; } = [0, 1, 2, 4];
    public double[] AblationTemperature { get; init; } = [0.5, 1.0, 2.0];
    public double[] AblationThresholdScale { get; init; } = [0.75, 1.0, 1.5];
    public int Seed { get; init; }

    /// <summary>Run the grid of defense configurations (score x window x K x neutralisation) on clean and every per-image patch size.</summary>
    public bool Sweep { get; init; }

    /// <summary>
    /// Run the one-knob ablation (about two dozen configurations, each on clean and patched images) when there is no
    /// sweep. On thousands of images it takes most of the run.
    /// </summary>
    public bool Ablation { get; init; } = true;

    public TokenScore[] SweepScores { get; init; } = [TokenScore.Jsd, TokenScore.Knn];

    /// <summary>Window budgets in pixels.</summary>
    public int[] SweepWindows { get; init; } = [0, 6, 10];

    public int[] SweepK { get; init; } = [0, 2, 4];

    public Neutralization[] SweepNeutralizations { get; init; } = [Neutralization.Transform, Neutralization.Mean, Neutralization.Bank];

    public int[] SweepBankChoices { get; init; } = [1];

    /// <summary>Masking-check candidate counts of the sweep (<see cref="DefenseOptions.VerifyWindows"/>; 0: no check).</summary>
    public int[] SweepVerify { get; init; } = [0];

    /// <summary>Window triggers of the sweep: false (whenever anything is flagged) and/or true (only over threshold, the service default).</summary>
    public bool[] SweepWindowOnlyOverThreshold { get; init; } = [new DefenseOptions().WindowOnlyOverThreshold];

    /// <summary>Window growth ratios of the sweep (<see cref="DefenseOptions.WindowGrowRatio"/>; 0: none), for configurations with a window.</summary>
    public double[] SweepWindowGrowRatios { get; init; } = [0];

    /// <summary>Window ratio sums of the sweep (<see cref="DefenseOptions.WindowMinRatioSum"/>; 0: none), for configurations with a window.</summary>
    public double[] SweepWindowMinRatioSums { get; init; } = [0];

    /// <summary>Second-round rules of the sweep (<see cref="DefenseOptions.VerifyRule"/>), for checked configurations.</summary>
    public VerifyRule[] SweepVerifyRules { get; init; } = [VerifyRule.Unanimous];

    /// <summary><see cref="DefenseOptions.VerifyComplete"/> values of the sweep, for checked configurations.</summary>
    public bool[] SweepVerifyComplete { get; init; } = [false];

    /// <summary>Second-round partner counts of the sweep (<see cref="DefenseOptions.VerifyPartners"/>), for checked configurations.</summary>
    public int[] SweepVerifyPartners { get; init; } = [new DefenseOptions().VerifyPartners];

    /// <summary>First-round group sizes of the sweep (<see cref="DefenseOptions.VerifyGroup"/>), for checked configurations.</summary>
    public int[] SweepVerifyGroups { get; init; } = [new DefenseOptions().VerifyGroup];

    /// <summary>
    /// Clean replacement rates of the sweep, for checked configurations: each sets <see cref="DefenseOptions.VerifyMargin"/>
    /// by <see cref="CheckMargin"/> on the check's clean images (<c>--verify-calib</c>, else the calibration images; 0:
    /// the configured margin, not calibrated).
    /// </summary>
    public double[] SweepVerifyCleanRates { get; init; } = [0];

    /// <summary>
    /// Clean replacement rate for the evaluated defense (main rows, ablation and attacks): its <see cref="DefenseOptions.VerifyMargin"/>
    /// is set by <see cref="CheckMargin"/> on the check's clean images before anything runs (0: the configured margin).
    /// </summary>
    public double VerifyCleanRate { get; init; }

    /// <summary>Steps per restart of the strong adaptive attack (0 skips it).</summary>
    public int StrongSteps { get; init; } = 500;

    public int StrongRestarts { get; init; } = 2;

    /// <summary>Folder that keeps per-image patched sets between runs (null: none). A path of the machine that ran it: left out of the results file.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string? PatchCache { get; init; }

    /// <summary>EOT draws per step of the strong adaptive attack (used when the defense is random).</summary>
    public int StrongEotSamples { get; init; } = 16;

    /// <summary>λ values of the detector-evasion term; each is a separate attack, and the worst case is over all.</summary>
    public double[] EvasionWeights { get; init; } = [0, 1, 10];

    /// <summary>
    /// Ratios γ the evasion term pushes every token's score-to-threshold ratio under; each weight runs with each margin.
    /// Below 1 the patch must look cleaner than the threshold asks, which also pushes it down the ranking the
    /// masking check takes its windows from.
    /// </summary>
    public double[] EvasionMargins { get; init; } = [0.9];

    /// <summary>
    /// Whether each strong attack runs without (false) and/or with (true) occlusion views aimed at the masking check
    /// (<see cref="AdaptiveAttackSettings.OcclusionViews"/>), grouped as the check groups its first round
    /// (<see cref="DefenseOptions.VerifyGroup"/>); each is a separate attack in the worst case.
    /// </summary>
    public bool[] StrongOcclusion { get; init; } = [false];

    /// <summary>Windows each occlusion view hides (<see cref="AdaptiveAttackSettings.OcclusionGroup"/>); null: as many as the check's groups.</summary>
    public int? OcclusionGroup { get; init; }

    /// <summary>Pixels the strong attacks try moving the patch by at each check (<see cref="AdaptiveAttackSettings.LocationStride"/>); 0: placements stay where each restart drew them.</summary>
    public int StrongLocationStride { get; init; }

    /// <summary>
    /// Folder the adaptive section writes each attack's images to (null: none): gzipped IDX images and labels per attack
    /// and <c>attacks.json</c> (scenario, placements, which images the undefended model and the defense answer right),
    /// for offline study of what the attacks made. A path of the machine that ran it: left out of the results file.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string? SaveAttacks { get; init; }

    /// <summary>How the token bank is built (size, k, clean false-positive rate).</summary>
    public BankSettings Bank { get; init; } = new();
}

/// <summary>One row of a results table: a scenario, a defense configuration and its score.</summary>
public sealed record EvaluationRow(string Section, string Scenario, string Defense, double Accuracy, double? Flagged, double? Coverage, double? AttackSuccess)
{
    /// <summary>Accuracy on the images the attack fooled (clean top-1 right, undefended patched top-1 wrong).</summary>
    public double? OnAttacked { get; init; }

    /// <summary>Median share of the patch covered by flagged tokens.</summary>
    public double? MedianCoverage { get; init; }

    /// <summary>Share of images whose most anomalous token lies on the patch.</summary>
    public double? TopInPatch { get; init; }

    /// <summary>Mean tokens flagged (and neutralised) per image.</summary>
    public double? TokensFlagged { get; init; }

    /// <summary>Images whose answer the masking check replaced; null without a check.</summary>
    public int? CheckRecovered { get; init; }

    /// <summary>Of <see cref="CheckRecovered"/>, those answered right afterwards (the answer before was then wrong; the rest are wrong after it).</summary>
    public int? CheckRecoveredCorrect { get; init; }

    /// <summary>Mean masked encoder runs of the masking check per image; null without a check.</summary>
    public double? CheckForwards { get; init; }

    /// <summary>Loss rows: how many images fall in the row's category.</summary>
    public int? Count { get; init; }

    /// <summary>Loss rows by the patch's tokens: the images (clean version answered right) whose patch sits over that many tokens.</summary>
    public int? OutOf { get; init; }

    /// <summary>Loss rows of patched images: of <see cref="Count"/>, how many the same neutralisation of the true patch's tokens (oracle flags) answers right.</summary>
    public int? OracleRight { get; init; }

    /// <summary>
    /// One character per image of the row's images, in order, <c>1</c> where the answer was right: on adaptive rows so
    /// that runs of different attacks on the same images can be combined into one worst case
    /// (tools/evaluation/worst_case.py); on the clean and per-image rows so that two runs (or another mode, as
    /// certify-eval's rows) can be paired image by image on the same images (tools/evaluation/modes.py).
    /// </summary>
    public string? CorrectImages { get; init; }

    /// <summary>
    /// Rows of a defense with a masking check: one character per image, in order, for the check's outcome (the first
    /// letter of agreed, kept, recovered or completed; <c>-</c> where it did not run), so that another mode's answers
    /// can be set beside it where the check could not decide (tools/evaluation/modes.py).
    /// </summary>
    public string? CheckOutcomes { get; init; }

    /// <summary>The first letter of each image's check outcome, <c>-</c> where none ran.</summary>
    public static string Outcomes(IReadOnlyList<ImageOutcome> images) => string.Concat(images.Select(o => o.Check is { Length: > 0 } c ? c[0] : '-'));

    /// <summary><c>1</c> for each right answer, <c>0</c> for each wrong one.</summary>
    public static string Mask(IReadOnlyList<bool> correct) => string.Concat(correct.Select(c => c ? '1' : '0'));
}

/// <summary>Everything one run measured.</summary>
public sealed record EvaluationReport(
    string Model, int Images, int CalibrationImages, DefenseOptions Options, EvaluationSettings Settings,
    IReadOnlyList<EvaluationRow> Rows, IReadOnlyDictionary<string, double> OverheadMs, double Seconds)
{
    /// <summary>How the evaluation's JSON files are written (results, saved attacks): indented, camelCase, enums by name.</summary>
    public static System.Text.Json.JsonSerializerOptions Json { get; } = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.CamelCase,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };
}

/// <summary>
/// The evaluation of issue 5: clean and attacked accuracy without and with both defense variants, per-image and
/// universal patches at several sizes, detection coverage, false positives, overhead, an ablation, and an adaptive
/// (EOT) attacker who differentiates through the token defense.
/// </summary>
public sealed class DefenseEvaluation(
    ModelPackage package, VitClassifier classifier, TokenSpaceModel tokens, TokenGradients tokenGradients,
    IDifferentiableClassifier undefended, DefenseOptions options, EvaluationSettings settings, TextWriter log)
{
    /// <summary>
    /// Runs the evaluation on <paramref name="test"/> with the reference calibrated on <paramref name="calibration"/>.
    /// <paramref name="checkCalibration"/>: clean images on which a clean replacement rate sets the masking check's margin
    /// (<see cref="EvaluationSettings.VerifyCleanRate"/>); default <paramref name="calibration"/>.
    /// </summary>
    public EvaluationReport Run(EvaluationSet test, EvaluationSet calibration, EvaluationSet? checkCalibration = null)
    {
        // The sweep's rows without a clean rate keep the configured margin, not the one calibrated below for the main rows.
        var configuredMargin = options.VerifyMargin;
        checkCalibration ??= calibration;
        var started = Stopwatch.GetTimestamp();
        var rows = new List<EvaluationRow>();
        var reference = Calibrate(calibration, settings.Temperature);
        log.WriteLine($"token bank: {reference.Tokens!.Bank!.Count} entries{(reference.Tokens.Bank.PositionStarts is null ? "" : " per position")}, k={reference.Tokens.Bank.Neighbors}, clean images flagged at calibration {reference.Tokens.BankFalsePositiveRate:P1}{(reference.Tokens.BankFreshRate is { } fresh ? $" (thresholds for {fresh:P1} of fresh clean images, cross-fitted)" : "")}");
        if (settings.VerifyCleanRate > 0 && options.VerifyWindows > 0)
        {
            options = options.Clone();
            options.VerifyMargin = CalibrateMargin(options, reference.Tokens, checkCalibration, settings.VerifyCleanRate);
            log.WriteLine($"masking check: margin {options.VerifyMargin:F3} for at most {settings.VerifyCleanRate:P1} of {checkCalibration.Count} clean images replaced");
        }

        var token = new TokenPatchDefense(tokens, reference.Tokens!, options);
        var paper = new TokenPatchDefense(tokens, reference.Tokens!, options.PaperFaithful());
        var pixel = new PixelPatchDefense(classifier, reference.Pixels, options);
        var seed = settings.Seed;
        var cleanCorrect = DefenseScoring.Undefended(classifier, test).Correct;

        void Score(string section, string scenario, EvaluationSet set, PatchedSet? patched, double? attackSuccess)
        {
            var none = DefenseScoring.Undefended(classifier, set);
            var attacked = patched is null ? null : Enumerable.Range(0, set.Count).Select(i => cleanCorrect[i] && !none.Correct[i]).ToArray();
            EvaluationRow Row(string defense, DefenseScore s) => new(section, scenario, defense, s.Accuracy,
                s.Flagged, s.Coverage, attackSuccess)
            {
                OnAttacked = attacked is null ? null : s.AccuracyOn(attacked),
                MedianCoverage = s.MedianCoverage,
                TopInPatch = s.TopInPatch,
                TokensFlagged = s.TokensFlagged,
                CheckRecovered = s.CheckRecovered,
                CheckRecoveredCorrect = s.CheckRecoveredCorrect,
                CheckForwards = s.CheckForwards,
                CorrectImages = EvaluationRow.Mask(s.Correct),
                CheckOutcomes = s.CheckRecovered is null ? null : EvaluationRow.Outcomes(s.Images),
            };

            rows.Add(Row("none", none) with { Flagged = null, TokensFlagged = null });
            EvaluationRow[] losses = [];
            foreach (var (name, defense) in new (string, IPatchDefense)[] { ("token", token), ("token (paper)", paper), ("pixel", pixel) })
            {
                // Flagging happens before any transform, so the mitigate run's report also gives detection and coverage.
                var s = DefenseScoring.Defended(defense, set, DefenseMode.Mitigate, seed, patched?.Placements, package.Manifest.PatchSize);
                rows.Add(Row(name, s));
                if (name != "token") continue;
                DefenseScore? oracle = null;
                if (patched is not null)
                {
                    // Same neutralisation on the true patch's tokens (oracle), and on as many random tokens as the defense flagged.
                    oracle = DefenseScoring.WithFlags(token, set, i => OracleTokens(patched.Placements[i]), seed, classifier.ClassCount);
                    rows.Add(Row("token, oracle flags", oracle) with { Flagged = null, Coverage = 1.0, TokensFlagged = null });
                    var random = new Random(seed + 11);
                    var counts = RandomCounts(s, set.Count);
                    var randomFlags = counts.Select(c => RandomTokens(random, c)).ToArray();
                    var randomScore = DefenseScoring.WithFlags(token, set, i => randomFlags[i], seed, classifier.ClassCount);
                    rows.Add(Row("token, random flags", randomScore) with { Flagged = null, TokensFlagged = s.TokensFlagged });
                }

                losses = Losses(section == scenario ? scenario : $"{section} {scenario}", s, cleanCorrect, oracle).ToArray();
            }

            log.WriteLine($"  {section} / {scenario}: " + string.Join(", ", rows.Where(r => r.Section == section && r.Scenario == scenario)
                .Select(r => $"{r.Defense} {r.Accuracy:P1}" + (r.OnAttacked is { } a ? $" (attacked {a:P1})" : "")
                    + (CheckNote(r.CheckRecovered, r.CheckRecoveredCorrect) is { } note ? $" [{note}]" : ""))));
            rows.AddRange(losses);
            log.WriteLine(LossLine(losses));
        }

        log.WriteLine($"clean ({test.Count} images)");
        Score("clean", "clean", test, null, null);

        var perImage = new Dictionary<int, PatchedSet>();
        foreach (var size in settings.PatchSizes)
        {
            log.WriteLine($"per-image patch {size}x{size} ({settings.PatchSteps} steps)");
            var patched = PatchScenarios.PerImageCached(undefended, package.Sha256, test, size, settings.PatchSteps, seed, settings.PatchCache);
            perImage[size] = patched;
            Score("per-image patch", Label(size), patched.Images, patched, patched.AttackSuccessRate);
        }

        if (settings.Sweep)
        {
            Sweep(rows, test, perImage, reference.Tokens!, checkCalibration, configuredMargin);
        }

        foreach (var size in settings.UniversalSteps > 0 ? settings.PatchSizes : [])
        {
            log.WriteLine($"universal patch {size}x{size} ({settings.UniversalSteps} steps, target {settings.UniversalTarget})");
            var (patched, _) = PatchScenarios.Universal(undefended, calibration, test, size, settings.UniversalTarget, settings.UniversalSteps, seed);
            Score("universal patch", Label(size), patched.Images, patched, patched.AttackSuccessRate);
        }

        if (settings.AdaptiveCount > 0)
        {
            Adaptive(rows, test, calibration, reference, token);
        }

        if (!settings.Sweep && settings.Ablation)
        {
            // On the tuning split the sweep supersedes the one-knob ablation.
            Ablation(rows, test, perImage.GetValueOrDefault(settings.AdaptivePatchSize) ?? perImage.Values.First(), calibration, reference);
        }

        var overhead = Overhead(test, token, paper, pixel);
        return new EvaluationReport(package.Manifest.Name, test.Count, calibration.Count, options, settings, rows, overhead,
            Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    /// <summary>
    /// Where the defense loses: the images it answers wrong whose clean version the undefended model answers right, by
    /// what the detector found (on a patched image: the patch's tokens all flagged, some, none; on a clean image: a token
    /// over threshold or only the forced K minimum and window) and by the masking check's outcome ("agreed": no window
    /// changed the answer; "kept": some did, none passed its second round; "recovered" or, with
    /// <see cref="DefenseOptions.VerifyComplete"/>, "completed": it replaced the answer, here wrongly); where it kept or
    /// agreed on a patched image, also by what its first round made of the patch (<see cref="ImageOutcome.PatchView"/>:
    /// no checked window on it, or the window over most of it and whether hiding that gave the label). Each such row's
    /// accuracy is the category's share of the set. On patched images, rows by the tokens the patch straddles follow,
    /// each with the share of those images lost; a last row counts the images gained the other way.
    /// </summary>
    internal static IEnumerable<EvaluationRow> Losses(string scenario, DefenseScore s, bool[] cleanCorrect, DefenseScore? oracle)
    {
        var n = s.Correct.Length;
        var lost = Enumerable.Range(0, n).Where(i => cleanCorrect[i] && !s.Correct[i]).ToArray();
        foreach (var category in lost.GroupBy(i => Category(s.Images[i])).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            yield return new EvaluationRow("losses", scenario, $"token: {category.Key}", category.Count() / (double)n, null, null, null)
            {
                Count = category.Count(),
                OracleRight = oracle is null ? null : category.Count(i => oracle.Correct[i]),
            };
        }

        // Patched images: the share lost by how many tokens the patch straddles (a patch split over more tokens leaves less in each).
        foreach (var sits in Enumerable.Range(0, n).Where(i => cleanCorrect[i] && s.Images[i].PatchTokens is not null).GroupBy(i => s.Images[i].PatchTokens!.Value).OrderBy(g => g.Key))
        {
            var lostHere = sits.Count(i => !s.Correct[i]);
            yield return new EvaluationRow("losses", scenario, $"token: patch over {sits.Key} tokens, share lost", lostHere / (double)sits.Count(), null, null, null)
            {
                Count = lostHere,
                OutOf = sits.Count(),
            };
        }

        var gained = Enumerable.Range(0, n).Count(i => !cleanCorrect[i] && s.Correct[i]);
        yield return new EvaluationRow("losses", scenario, "token: gained (clean answered wrong, defended right)", gained / (double)n, null, null, null) { Count = gained };
    }

    private static string LossLine(IEnumerable<EvaluationRow> losses) =>
        "    losses: " + string.Join("; ", losses.Select(r => $"{r.Defense["token: ".Length..]} {r.Count}" + (r.OutOf is { } of ? $" of {of}" : "")
            + (r.OracleRight is { } right ? $" (oracle right on {right})" : "")));

    private static string Category(ImageOutcome o)
    {
        var found = o.Coverage switch
        {
            null => o.Above > 0 ? "a token over threshold" : "no token over threshold",
            >= 1 - 1e-9 => "patch flagged whole",
            > 0 => "patch flagged in part",
            _ => "patch missed",
        };
        // Where the check kept a wrong answer or saw nothing to change, what its first round made of the patch.
        var view = o.PatchView is { } v && o.Check is "kept" or "agreed" ? $" ({v})" : "";
        return $"{found}, check {o.Check ?? "off"}{view}";
    }

    /// <summary>Token indices whose cell shares a pixel with the patch.</summary>
    private int[] OracleTokens(PatchPlacement patch) =>
        Enumerable.Range(0, tokens.GridRows * tokens.GridCols)
            .Where(c => DefenseScoring.Overlaps(c / tokens.GridCols, c % tokens.GridCols, patch, package.Manifest.PatchSize))
            .Select(c => c + tokens.FirstPatchToken).ToArray();

    private int[] RandomTokens(Random random, int count)
    {
        var cells = Enumerable.Range(tokens.FirstPatchToken, tokens.GridRows * tokens.GridCols).ToArray();
        random.Shuffle(cells);
        return cells[..Math.Min(count, cells.Length)];
    }

    /// <summary>For every image, the defense's mean count of neutralised tokens over the set, rounded.</summary>
    private static int[] RandomCounts(DefenseScore s, int count) => Enumerable.Repeat((int)Math.Round(s.TokensFlagged), count).ToArray();

    /// <summary>The masking-check margin at which the check replaces at most <paramref name="rate"/> of the answers on <paramref name="cleanSet"/> (<see cref="CheckMargin"/>).</summary>
    private double CalibrateMargin(DefenseOptions configured, TokenReference reference, EvaluationSet cleanSet, double rate) =>
        CheckMargin.Calibrate(tokens, reference, configured, cleanSet, rate, settings.Seed).Margin;

    /// <summary>
    /// The grid the defaults are chosen from: score x window x K x neutralisation, each on clean images and every
    /// per-image patch size. Rule (fixed before the run): highest mean patched accuracy over the sizes among the
    /// configurations that cost at most 0.5 point of clean accuracy and flag at most 30% of clean images; ties go
    /// to fewer tokens neutralised on clean images.
    /// </summary>

    private void Sweep(List<EvaluationRow> rows, EvaluationSet clean, Dictionary<int, PatchedSet> perImage, TokenReference reference, EvaluationSet calibrationSet, double? configuredMargin)
    {
        log.WriteLine("sweep: score x window x K x neutralisation");
        var baseline = DefenseScoring.Undefended(classifier, clean).Accuracy;
        var results = new List<(string Name, double Clean, double Flagged, double Tokens, double Patched)>();
        // Bank choices vary only the neutralisations that pick from the bank.
        var neutralizations = settings.SweepNeutralizations
            .SelectMany(n => n is Neutralization.Bank or Neutralization.Hybrid ? settings.SweepBankChoices.Select(c => (n, c)) : [(n, 1)]).ToArray();
        // The check's settings vary only a check that runs; the window's only a window (and its ratio sum only a window
        // flagged not just over threshold).
        var checks = (from v in settings.SweepVerify
                      from p in v == 0 ? [1] : settings.SweepVerifyPartners
                      from g in v == 0 ? [1] : settings.SweepVerifyGroups
                      from r in v == 0 ? [0.0] : settings.SweepVerifyCleanRates
                      from rule in v == 0 ? [VerifyRule.Unanimous] : settings.SweepVerifyRules
                      from complete in v == 0 ? [false] : settings.SweepVerifyComplete
                      select (v, p, g, r, rule, complete)).ToArray();
        var windows = (from w in settings.SweepWindows
                       from onlyOver in w == 0 ? [false] : settings.SweepWindowOnlyOverThreshold
                       from grow in w == 0 ? [0.0] : settings.SweepWindowGrowRatios
                       from minSum in w == 0 || onlyOver ? [0.0] : settings.SweepWindowMinRatioSums
                       select (w, onlyOver, grow, minSum)).ToArray();
        foreach (var score in settings.SweepScores)
        {
            foreach (var (window, onlyOver, grow, minSum) in windows)
            {
                foreach (var k in settings.SweepK)
                {
                    foreach (var ((neutralization, choices), (checkWindows, partners, group, cleanRate, rule, complete)) in neutralizations.SelectMany(n => checks.Select(c => (n, c))))
                    {
                        var o = options.Clone();
                        (o.Score, o.WindowPixels, o.MinTokens, o.Neutralization, o.BankChoices, o.VerifyWindows, o.VerifyPartners, o.VerifyGroup, o.WindowOnlyOverThreshold, o.WindowGrowRatio, o.WindowMinRatioSum, o.VerifyRule, o.VerifyComplete) =
                            (score, window, k, neutralization, choices, checkWindows, partners, group, onlyOver, grow, minSum, rule, complete);
                        var name = $"{(score == TokenScore.Knn ? "knn" : "jsd")} window {window}px ({o.WindowTokens(package.Manifest.PatchSize)} tokens{(onlyOver ? ", only over threshold" : "")}{(grow > 0 ? $", grown at {grow.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}" : "")}{(minSum > 0 ? $", else at a sum of {minSum.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}" : "")}) K={k} {TokenPatchDefense.Name(neutralization)}"
                            + (neutralization is Neutralization.Bank or Neutralization.Hybrid ? $" of {choices}" : "")
                            + (checkWindows > 0 ? $" verify {checkWindows} of {partners}" + (group > 1 ? $" in groups of {group}" : "") + (rule == VerifyRule.Veto ? " by veto" : "") + (complete ? " completing" : "") : "");
                        o.VerifyMargin = configuredMargin;
                        if (checkWindows > 0 && cleanRate > 0)
                        {
                            o.VerifyMargin = CalibrateMargin(o, reference, calibrationSet, cleanRate);
                            name += $" margin {o.VerifyMargin.Value.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)} (clean rate {cleanRate.ToString("P1", System.Globalization.CultureInfo.InvariantCulture)})";
                        }

                        var defense = new TokenPatchDefense(tokens, reference, o);
                        var c = DefenseScoring.Defended(defense, clean, DefenseMode.Mitigate, settings.Seed);
                        rows.Add(new("sweep", $"{name} clean", "token", c.Accuracy, c.Flagged, null, null)
                        {
                            TokensFlagged = c.TokensFlagged, CheckRecovered = c.CheckRecovered, CheckRecoveredCorrect = c.CheckRecoveredCorrect,
                            CheckForwards = c.CheckForwards,
                        });
                        var patched = new List<double>();
                        foreach (var (size, set) in perImage.OrderBy(p => p.Key))
                        {
                            var p = DefenseScoring.Defended(defense, set.Images, DefenseMode.Mitigate, settings.Seed, set.Placements, package.Manifest.PatchSize);
                            rows.Add(new("sweep", $"{name} {Label(size)}", "token", p.Accuracy, p.Flagged, p.Coverage, set.AttackSuccessRate)
                            {
                                MedianCoverage = p.MedianCoverage, TopInPatch = p.TopInPatch, TokensFlagged = p.TokensFlagged,
                                CheckForwards = p.CheckForwards,
                            });
                            patched.Add(p.Accuracy);
                        }

                        results.Add((name, c.Accuracy, c.Flagged, c.TokensFlagged, patched.Average()));
                        log.WriteLine($"  {name}: clean {c.Accuracy:P1} (flagged {c.Flagged:P1}, {c.TokensFlagged:F1} tokens{(CheckNote(c.CheckRecovered, c.CheckRecoveredCorrect) is { } note ? $", {note}, {c.CheckForwards:F2} masked runs per image" : "")}), patched mean {patched.Average():P1} [{string.Join(", ", patched.Select(x => x.ToString("P1", System.Globalization.CultureInfo.InvariantCulture)))}]");
                    }
                }
            }
        }

        var eligible = results.Where(r => r.Clean >= baseline - 0.005 - 1e-9 && r.Flagged <= 0.30).ToList();
        if (eligible.Count > 0)
        {
            var best = eligible.OrderByDescending(r => Math.Round(r.Patched, 6)).ThenBy(r => r.Tokens).First();
            log.WriteLine($"sweep winner by the rule (clean >= {baseline - 0.005:P1}, flagged <= 30%): {best.Name}, clean {best.Clean:P1}, patched mean {best.Patched:P1}");
            rows.Add(new("sweep", $"winner: {best.Name}", "token", best.Patched, best.Flagged, null, null));
        }
        else
        {
            log.WriteLine("sweep: no configuration meets the clean-cost and false-positive limits");
        }
    }

    private void Adaptive(List<EvaluationRow> rows, EvaluationSet test, EvaluationSet calibration, DefenseCalibration reference, TokenPatchDefense token)
    {
        var size = settings.AdaptivePatchSize;
        var subset = Take(test, settings.AdaptiveCount);
        var section = "adaptive per-image patch";
        var clean = DefenseScoring.Undefended(classifier, subset).Correct;
        var worst = Enumerable.Repeat(true, subset.Count).ToArray();
        var eot = new EotTokenDefenseClassifier(tokens, reference.Tokens!, options, tokenGradients, settings.EotSamples, settings.Seed);
        var saved = new List<SavedAttack>();
        if (settings.SaveAttacks is { } saveTo)
        {
            // Checked before any attack runs: IDX holds gray images only.
            if (package.Manifest.Input.Channels != 1)
            {
                throw new InvalidOperationException($"--save-attacks writes gray IDX images; {package.Manifest.Name} takes {package.Manifest.Input.Channels} channels.");
            }

            Directory.CreateDirectory(saveTo);
        }

        void Add(string name, PatchedSet set)
        {
            var none = DefenseScoring.Undefended(classifier, set.Images);
            var defended = DefenseScoring.Defended(token, set.Images, DefenseMode.Mitigate, settings.Seed + 7, set.Placements, package.Manifest.PatchSize);
            var fooled = Enumerable.Range(0, subset.Count).Select(i => clean[i] && !none.Correct[i]).ToArray();
            for (var i = 0; i < worst.Length; i++) worst[i] &= defended.Correct[i];
            rows.Add(new(section, $"{Label(size)} {name}", "none", none.Accuracy, null, null, set.AttackSuccessRate) { CorrectImages = EvaluationRow.Mask(none.Correct) });
            rows.Add(new(section, $"{Label(size)} {name}", "token", defended.Accuracy, defended.Flagged, defended.Coverage, set.AttackSuccessRate)
            {
                OnAttacked = defended.AccuracyOn(fooled), MedianCoverage = defended.MedianCoverage, TopInPatch = defended.TopInPatch,
                TokensFlagged = defended.TokensFlagged, CheckForwards = defended.CheckForwards, CorrectImages = EvaluationRow.Mask(defended.Correct),
            });
            log.WriteLine($"  {name}: none {none.Accuracy:P1}, token {defended.Accuracy:P1} (flagged {defended.Flagged:P1}, coverage {defended.Coverage:P1}); worst case so far {worst.Average(b => b ? 1.0 : 0.0):P1}");
            // Where this attack wins: the same breakdown as the plain patches', with the oracle on its own patches.
            var oracle = DefenseScoring.WithFlags(token, set.Images, i => OracleTokens(set.Placements[i]), settings.Seed + 7, classifier.ClassCount);
            var losses = Losses($"{section} {Label(size)} {name}", defended, clean, oracle).ToArray();
            rows.AddRange(losses);
            log.WriteLine(LossLine(losses));
            if (settings.SaveAttacks is { } folder)
            {
                saved.Add(SaveAttack(folder, saved.Count, $"{Label(size)} {name}", set, none.Correct, defended.Correct));
            }
        }

        log.WriteLine($"adaptive per-image patch {size}x{size} against the token defense ({subset.Count} images)");
        Add("non-adaptive", PatchScenarios.PerImageCached(undefended, package.Sha256, subset, size, settings.PatchSteps, settings.Seed, settings.PatchCache));
        Add($"EOT through the defense ({settings.EotSamples} draws, {settings.PatchSteps} steps)", PatchScenarios.PerImage(eot, subset, size, settings.PatchSteps, settings.Seed));
        if (settings.StrongSteps > 0)
        {
            var strong = new AdaptivePatchAttack(tokens, reference.Tokens!, options, tokenGradients, token);
            var attacks = settings.StrongOcclusion.SelectMany(o => settings.EvasionWeights.SelectMany(l => (l > 0 ? settings.EvasionMargins : [0.9]).Select(g => (l, g, o))));
            foreach (var (lambda, gamma, occlusion) in attacks)
            {
                var s = new AdaptiveAttackSettings(size, settings.StrongSteps, settings.StrongRestarts, settings.StrongEotSamples, lambda, gamma, OcclusionViews: occlusion,
                    OcclusionGroup: settings.OcclusionGroup ?? options.VerifyGroup, LocationStride: settings.StrongLocationStride);
                var started = Stopwatch.GetTimestamp();
                var set = strong.Run(subset, s, settings.Seed + 101);
                var margin = gamma == 0.9 ? "" : $", γ={gamma:G3}";
                var views = !occlusion ? "" : s.OcclusionGroup > 1 ? $", occlusion views in groups of {s.OcclusionGroup}" : ", occlusion views";
                var moving = s.LocationStride > 0 ? $", location-optimised by {s.LocationStride} px" : "";
                Add($"strong adaptive (margin, straight-through{views}{moving}, λ={lambda:G3}{margin}, {s.Steps} steps x {s.Restarts} restarts, EOT {s.EotSamples})", set);
                log.WriteLine($"    {Stopwatch.GetElapsedTime(started).TotalSeconds:F0} s");
            }
        }

        rows.Add(new(section, $"{Label(size)} worst case over all attacks above", "token", worst.Average(b => b ? 1.0 : 0.0), null, null, null) { CorrectImages = EvaluationRow.Mask(worst) });
        if (settings.SaveAttacks is { } savedTo)
        {
            File.WriteAllText(Path.Combine(savedTo, "attacks.json"), System.Text.Json.JsonSerializer.Serialize(
                new SavedAttacks(package.Manifest.Name, options, saved), EvaluationReport.Json));
            log.WriteLine($"  {saved.Count} attacks' images written to {savedTo}");
        }
        log.WriteLine($"  worst case over all attacks: token {worst.Average(b => b ? 1.0 : 0.0):P1}");

        if (settings.UniversalSteps == 0)
        {
            return;
        }

        log.WriteLine($"adaptive universal patch {size}x{size} through the token defense");
        var (universal, _) = PatchScenarios.Universal(eot, calibration, subset, size, settings.UniversalTarget, settings.UniversalSteps, settings.Seed);
        var u = DefenseScoring.Defended(token, universal.Images, DefenseMode.Mitigate, settings.Seed + 7);
        rows.Add(new("adaptive universal patch", $"{Label(size)} adaptive (EOT)", "none", DefenseScoring.Undefended(classifier, universal.Images).Accuracy, null, null, universal.AttackSuccessRate));
        rows.Add(new("adaptive universal patch", $"{Label(size)} adaptive (EOT)", "token", u.Accuracy, null, null, universal.AttackSuccessRate));
        log.WriteLine($"  token {u.Accuracy:P1}");
    }

    /// <summary>
    /// Writes one attack's images as <c>attack-N-images-idx3-ubyte.gz</c> (and its labels beside it) in <paramref name="folder"/>,
    /// each pixel rounded to 8 bits: the strong attacks' images are on the 8-bit grid already. One-channel models only (IDX
    /// is gray; checked, and the folder made, before the attacks run).
    /// </summary>
    private SavedAttack SaveAttack(string folder, int index, string scenario, PatchedSet set, bool[] undefendedCorrect, bool[] defendedCorrect)
    {
        var input = package.Manifest.Input;
        var file = $"attack-{index}-images-idx3-ubyte.gz";
        var pixels = set.Images.Pixels.Select(Imaging.PngEncoding.ToByte).ToArray();
        var labels = set.Images.Labels.Select(l => (byte)l).ToArray();
        Datasets.IdxDataset.Write(Path.Combine(folder, file), pixels, labels, input.Height, input.Width);
        return new SavedAttack(scenario, file, set.Placements.ToArray(), EvaluationRow.Mask(undefendedCorrect), EvaluationRow.Mask(defendedCorrect));
    }

    /// <summary>What the masking check did to a row's answers, for the log; null without a check.</summary>
    private static string? CheckNote(int? replaced, int? right) => replaced is { } n ? $"check replaced {n} answers, {right} right" : null;

    private void Ablation(List<EvaluationRow> rows, EvaluationSet clean, PatchedSet patched, EvaluationSet calibration, DefenseCalibration reference)
    {
        log.WriteLine($"ablation on clean and {Label(patched.PatchSize)} per-image patches");
        void Add(string knob, DefenseOptions o, TokenReference r)
        {
            var defense = new TokenPatchDefense(tokens, r, o);
            var c = DefenseScoring.Defended(defense, clean, DefenseMode.Mitigate, settings.Seed);
            var p = DefenseScoring.Defended(defense, patched.Images, DefenseMode.Mitigate, settings.Seed);
            rows.Add(new("ablation", $"{knob} clean", "token", c.Accuracy, null, null, null));
            rows.Add(new("ablation", $"{knob} patched", "token", p.Accuracy, null, null, patched.AttackSuccessRate));
            log.WriteLine($"  {knob}: clean {c.Accuracy:P1}, patched {p.Accuracy:P1}");
        }

        // One knob at a time away from the configured defense.
        foreach (var k in settings.AblationK) Add($"K={k}", Copy(options, o => o.MinTokens = k), reference.Tokens!);
        foreach (var w in new[] { 0, 6, 10 }) Add($"window={w}px ({Copy(options, o => o.WindowPixels = w).WindowTokens(package.Manifest.PatchSize)} tokens)", Copy(options, o => o.WindowPixels = w), reference.Tokens!);
        foreach (var score in new[] { TokenScore.Jsd, TokenScore.Knn }) Add($"score={score}", Copy(options, o => o.Score = score), reference.Tokens!);
        foreach (var n in new[] { Neutralization.Transform, Neutralization.Mean, Neutralization.Bank, Neutralization.Hybrid, Neutralization.Drop, Neutralization.HybridDrop })
        {
            if (n is Neutralization.Drop or Neutralization.HybridDrop && !tokens.AcceptsShorterSequences) continue;
            Add($"neutralization={n}", Copy(options, o => o.Neutralization = n), reference.Tokens!);
        }

        foreach (var s in settings.AblationThresholdScale) Add($"threshold x{s:G3}", Copy(options, o => o.ThresholdScale = s), reference.Tokens!);

        // The paper's own knobs, on the paper's configuration: each transform alone, and the softmax temperature.
        var paper = options.PaperFaithful();
        foreach (var t in new[] { TokenTransforms.LpProjection, TokenTransforms.AffineShrink, TokenTransforms.Temperature, TokenTransforms.All })
        {
            Add($"paper, transforms={t}", Copy(paper, o => o.Transforms = t), reference.Tokens!);
        }

        foreach (var t in settings.AblationTemperature)
        {
            // Only a different temperature needs a new reference.
            var tokens = t == settings.Temperature ? reference.Tokens! : Calibrate(calibration, t).Tokens!;
            Add($"paper, T={t:G3}", paper, tokens);
        }
    }

    private Dictionary<string, double> Overhead(EvaluationSet set, TokenPatchDefense token, TokenPatchDefense paper, PixelPatchDefense pixel)
    {
        var n = Math.Min(settings.OverheadImages, set.Count);
        double Time(Action<int> run)
        {
            run(0);
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < n; i++) run(i);
            return sw.Elapsed.TotalMilliseconds / n;
        }

        var forward = Time(i => classifier.Logits(set.Image(i), 1));
        var tokenMs = Time(i => token.Run(set.Image(i), 1, DefenseMode.Mitigate, [i]));
        var paperMs = Time(i => paper.Run(set.Image(i), 1, DefenseMode.Mitigate, [i]));
        var pixelMs = Time(i => pixel.Run(set.Image(i), 1, DefenseMode.Mitigate, [i]));
        log.WriteLine($"overhead per image: forward {forward:F3} ms, token {tokenMs:F3} ms, pixel {pixelMs:F3} ms");
        return new Dictionary<string, double>
        {
            ["forward"] = forward, ["token"] = tokenMs, ["paper"] = paperMs, ["pixel"] = pixelMs, ["paperRatio"] = paperMs / forward,
            ["tokenRatio"] = tokenMs / forward, ["pixelRatio"] = pixelMs / forward,
        };
    }

    private DefenseCalibration Calibrate(EvaluationSet calibration, double temperature)
    {
        var manifest = package.Manifest.Input;
        var images = Enumerable.Range(0, calibration.Count)
            .Select(i => new Imaging.ImageTensor(calibration.Image(i).ToArray(), manifest.Channels, manifest.Height, manifest.Width)).ToList();
        return DefenseCalibration.Compute(package, tokens, images, temperature, settings.HistogramBins, settings.Quantile, settings.Bank);
    }

    private static EvaluationSet Take(EvaluationSet set, int count)
    {
        count = Math.Min(count, set.Count);
        return new EvaluationSet(set.Pixels[..(count * set.SampleSize)], set.Labels[..count], set.SampleSize);
    }

    private static DefenseOptions Copy(DefenseOptions o, Action<DefenseOptions> change)
    {
        var copy = o.Clone();
        change(copy);
        return copy;
    }

    private string Label(int size)
    {
        var input = package.Manifest.Input;
        return $"{size}x{size} ({100.0 * size * size / (input.Height * input.Width):F1}%)";
    }
}

/// <summary>What <see cref="EvaluationSettings.SaveAttacks"/> writes beside the images: the model, the defense attacked, and each attack.</summary>
public sealed record SavedAttacks(string Model, DefenseOptions Defense, IReadOnlyList<SavedAttack> Attacks);

/// <summary>
/// One saved attack: its scenario (as in the results file), its images file, each image's patch placement, and which
/// images the undefended model and the defense answer right ('1'/'0' per image, as <see cref="EvaluationRow.CorrectImages"/>).
/// </summary>
public sealed record SavedAttack(string Scenario, string Images, PatchPlacement[] Placements, string UndefendedCorrect, string DefendedCorrect);
