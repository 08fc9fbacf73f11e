using System.Diagnostics;
using StrapVit.Core.Attacks;
using StrapVit.Core.Certification;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Numerics;

namespace StrapVit.Core.Evaluation;

/// <summary>What the certified-mode evaluation runs.</summary>
public sealed record CertifySettings
{
    /// <summary>Patch sides in pixels to certify against.</summary>
    public IReadOnlyList<int> PatchSizes { get; init; } = [4, 6];

    /// <summary>Mask strides (tokens) to compare; the soundness check runs on the first.</summary>
    public IReadOnlyList<int> Strides { get; init; } = [1];

    /// <summary>Strides of the top and bottom row of masks (tokens; 0 = the stride, PatchCleanser's uniform set) to compare with each stride; the soundness check runs on the first.</summary>
    public IReadOnlyList<int> RowBorderStrides { get; init; } = [0];

    /// <summary>Strides of the leftmost and rightmost column of masks, as <see cref="RowBorderStrides"/>.</summary>
    public IReadOnlyList<int> ColBorderStrides { get; init; } = [0];

    public int Seed { get; init; }

    /// <summary>Signed steps of each per-image patch attack.</summary>
    public int AttackSteps { get; init; } = 100;

    /// <summary>Random placements per certified image and attack.</summary>
    public int Placements { get; init; } = 2;

    /// <summary>Most certified images attacked on the plain model (the first ones, in set order).</summary>
    public int SoundnessCount { get; init; } = 100;

    /// <summary>Certified images attacked through the certify surrogate (its steps cost k encoder views each).</summary>
    public int AdaptiveCount { get; init; } = 25;

    /// <summary>Signed steps of the attack on the certify surrogate.</summary>
    public int AdaptiveSteps { get; init; } = 50;

    /// <summary>Run the soundness check (patch attacks on certified images).</summary>
    public bool Soundness { get; init; } = true;

    /// <summary>
    /// Images (the first ones) whose certify-mode answer is attacked where a patch can change it (0: none): every
    /// uncertified image answered right is patched at up to <see cref="RobustPlacements"/> of its vulnerable placements
    /// (<see cref="PlacementAnalysis"/>), each optimised on the certify surrogate, and classified again in certify mode.
    /// </summary>
    public int RobustCount { get; init; }

    /// <summary>Vulnerable placements tried per image, drawn at random among all of them.</summary>
    public int RobustPlacements { get; init; } = 4;

    /// <summary>Signed steps of each attack on the certify surrogate at a vulnerable placement.</summary>
    public int RobustSteps { get; init; } = 200;

    /// <summary>
    /// Sides (pixels) of the plain per-image patches certify mode's answer is scored on, with every mask set (empty:
    /// none). They are the patches <see cref="DefenseEvaluation"/> scores the empirical defense on: LaVAN-style,
    /// optimised on the undefended model (<see cref="PlainPatchSteps"/> signed steps, <see cref="Seed"/>), the 8-bit image.
    /// </summary>
    public IReadOnlyList<int> PlainPatchSizes { get; init; } = [];

    /// <summary>Steps of the plain per-image patch attack.</summary>
    public int PlainPatchSteps { get; init; } = 100;

    /// <summary>
    /// Folder the plain per-image patches are cached in, shared with <see cref="DefenseEvaluation"/> (null: none). A path
    /// of the machine that ran it: left out of the report file.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string? PatchCache { get; init; }
}

/// <summary>
/// Certified mode at one patch size and mask stride. CleanAccuracy: the certify-mode prediction equals the label;
/// CertifiedAccuracy: certified and equal to the label; CertifiedRate: certified, whatever the label; Cases: images
/// per branch of the double-masking algorithm.
/// </summary>
public sealed record CertifyRow(
    int PatchSize, double AreaPercent, int Stride, int Masks, int MaskRows, int MaskCols,
    double CleanAccuracy, double CertifiedAccuracy, double CertifiedRate, double ForwardsPerImage, double MsPerImage,
    IReadOnlyDictionary<string, int> Cases)
{
    /// <summary>Stride of the top and bottom row of masks (equal to <see cref="Stride"/> for the uniform set).</summary>
    public int RowBorderStride { get; init; } = Stride;

    /// <summary>Stride of the leftmost and rightmost column of masks.</summary>
    public int ColBorderStride { get; init; } = Stride;

    /// <summary>Largest mask (a border mask), tokens.</summary>
    public int LargestRows { get; init; } = MaskRows;

    /// <summary>Largest mask (a border mask), tokens.</summary>
    public int LargestCols { get; init; } = MaskCols;

    /// <summary>Median wall time per image, ms: a certified image runs every view, an uncertified one stops early.</summary>
    public double MedianMsPerImage { get; init; }

    /// <summary>Mean wall time per image certified (whatever its label), ms.</summary>
    public double CertifiedMsPerImage { get; init; }

    /// <summary>One character per image, in order: <c>1</c> where certify mode answers the clean image with its label.</summary>
    public string? CorrectImages { get; init; }

    /// <summary>One character per clean image, in order: which branch answered (<see cref="CaseLetters"/>).</summary>
    public string? CaseImages { get; init; }

    /// <summary>Answers per branch of the double-masking algorithm (<see cref="Cases"/>).</summary>
    public static IReadOnlyDictionary<string, int> CaseCounts(IEnumerable<CertifiedClassification> results) =>
        results.GroupBy(r => r.Report.Case).ToDictionary(g => g.Key, g => g.Count());

    /// <summary>
    /// Each answer's branch of the double-masking algorithm as one character: <c>a</c> agreement, <c>s</c> second round,
    /// <c>m</c> majority; upper case where the answer is certified (whatever its label).
    /// </summary>
    public static string CaseLetters(IEnumerable<CertifiedClassification> results) => string.Concat(results.Select(r =>
    {
        var letter = r.Report.Case switch { "agreement" => 'a', "second-round" => 's', "majority" => 'm', _ => '?' };
        return r.Report.Certified ? char.ToUpperInvariant(letter) : letter;
    }));

    /// <summary>
    /// One character per image, in order: <c>1</c> where the image is certified with its label (no patch of this size
    /// can change that answer), else <c>0</c>. The same form as an evaluation row's correct images, so that a
    /// certificate can be set beside the empirical defense's worst case on the same images.
    /// </summary>
    public string? CertifiedImages { get; init; }
}

/// <summary>
/// Certify mode's answer on the plain per-image patches (<see cref="CertifySettings.PlainPatchSizes"/>): masks sized for
/// MaskSize, patches of PatchSize optimised on the undefended model. Undefended: the plain model's accuracy on the same
/// patched images; Accuracy: certify mode answers the label; Certified: certified with the label although patched;
/// Cases: images per branch of the double-masking algorithm.
/// </summary>
public sealed record CertifyPatchedRow(
    int MaskSize, int PatchSize, int Images, int Steps, double Undefended, double Accuracy, double Certified, double ForwardsPerImage, double MsPerImage,
    IReadOnlyDictionary<string, int> Cases)
{
    /// <summary>One character per image: <c>1</c> where certify mode answers the patched image with its label.</summary>
    public string? CorrectImages { get; init; }

    /// <summary>One character per patched image, in order: which branch answered (<see cref="CertifyRow.CaseLetters"/>).</summary>
    public string? CaseImages { get; init; }
}

/// <summary>
/// Certified mode's answer under attack at one patch size (<see cref="CertifySettings.RobustCount"/>): Images attacked
/// (the first ones); Certified: certified with their label (no patch of this size changes that answer, so not attacked);
/// Attacked: the other images answered right, patched at their vulnerable placements; Broken: of those, answered
/// otherwise in certify mode under some patch; Accuracy: right under every patch tried, over Images (an image answered
/// wrong clean counts as wrong); NoVulnerable: attacked images with no placement to attack (robust by the placement
/// argument); VulnerableShare: mean share of all placements that are vulnerable on the attacked images;
/// SurrogateFooled: share of the patches that fooled the surrogate they were optimised on (8-bit image).
/// </summary>
public sealed record CertifyAttackRow(
    int PatchSize, int Images, int Certified, int Attacked, int Broken, double Accuracy, int NoVulnerable, double VulnerableShare,
    int Placements, int Steps, double SurrogateFooled)
{
    /// <summary>One character per image: <c>1</c> where certify mode answered right under every patch tried.</summary>
    public string? RightImages { get; init; }
}

/// <summary>
/// The soundness check for one attack on images certified with their label. Attack: "undefended" (patch optimised
/// on the plain model) or "certify-surrogate" (on the mean of the one-mask views); Attempts: patched images scored
/// (images x placements); AttackSuccess: share of attempts whose patch fooled the model it was optimised on (8-bit
/// image); PlainFooled: share the undefended model misclassifies; Exceptions: attempts answered other than the label
/// in certify mode (must be 0); CertifiedAfter: share still certified (a patched image need not be).
/// </summary>
public sealed record SoundnessRow(int PatchSize, string Attack, int Images, int Attempts, double AttackSuccess, double PlainFooled, int Exceptions, double CertifiedAfter);

public sealed record CertifyEvaluationReport(
    string Model, string Split, int Images, string Method, ReceptiveField ReceptiveField, double PlainAccuracy, double PlainMsPerImage,
    CertifySettings Settings, IReadOnlyList<CertifyRow> Rows, IReadOnlyList<SoundnessRow> Soundness, double Seconds)
{
    /// <summary>Certified mode under attack where a patch can change it (<see cref="CertifySettings.RobustCount"/>).</summary>
    public IReadOnlyList<CertifyAttackRow> UnderAttack { get; init; } = [];

    /// <summary>Certify mode's answer on the plain per-image patches (<see cref="CertifySettings.PlainPatchSizes"/>).</summary>
    public IReadOnlyList<CertifyPatchedRow> PlainPatches { get; init; } = [];
}

/// <summary>
/// Certified mode (PatchCleanser) measured: clean and certified accuracy, forwards and time per image, per patch size
/// and mask stride; then an empirical soundness check: every image certified with its label is patched (per-image
/// patch attacks of the certified size at several random places, against the plain model and against
/// <see cref="CertifySurrogateClassifier"/>) and classified again in certify mode. Any change is a bug.
/// </summary>
public sealed class CertifyEvaluation(
    ModelPackage package, VitClassifier classifier, PatchCertifier certifier, IDifferentiableClassifier undefended, GradientRunner embeddingVjp,
    OnnxSessionFactory sessions, CertifySettings settings, TextWriter log)
{
    public CertifyEvaluationReport Run(EvaluationSet set, string split)
    {
        var total = Stopwatch.StartNew();
        var (plain, plainMs) = PlainAccuracy(set);
        log.WriteLine($"  plain model: {plain:P1}, {plainMs:F2} ms/image");
        var rows = new List<CertifyRow>();
        var soundness = new List<SoundnessRow>();
        var underAttack = new List<CertifyAttackRow>();
        var plainPatches = new List<CertifyPatchedRow>();
        var patchedSets = new Dictionary<int, PatchedSet>();
        var input = package.Manifest.Input;
        // Patch sizes that reach as many tokens share one mask set, and so every answer: certify each set once.
        var byMasks = new Dictionary<string, CertifiedClassification[]>(StringComparer.Ordinal);
        foreach (var size in settings.PatchSizes)
        {
            var sets = settings.Strides.SelectMany(s => settings.RowBorderStrides
                .SelectMany(r => settings.ColBorderStrides.Select(c => (Stride: s, Rows: r, Cols: c))));
            foreach (var (stride, rowBorder, colBorder) in sets)
            {
                MaskSet masks;
                try
                {
                    masks = certifier.MasksFor(size, stride, rowBorder, colBorder);
                }
                catch (CertificationException ex)
                {
                    log.WriteLine($"  {size}x{size}, stride {stride}, border strides {rowBorder}x{colBorder}: skipped ({ex.Message})");
                    continue;
                }

                var key = $"{string.Join(',', masks.RowStarts)}/{string.Join(',', masks.RowLengths)}:{string.Join(',', masks.ColStarts)}/{string.Join(',', masks.ColLengths)}";
                if (!byMasks.TryGetValue(key, out var results))
                {
                    results = CertifyAll(set, masks);
                    byMasks[key] = results;
                }

                var correct = Enumerable.Range(0, set.Count).Count(i => results[i].Label == set.Labels[i]);
                var certifiedCorrect = Enumerable.Range(0, set.Count).Count(i => results[i].Label == set.Labels[i] && results[i].Report.Certified);
                var row = new CertifyRow(size, Math.Round(100.0 * size * size / (input.Height * input.Width), 1), stride, masks.Count, masks.WindowRows, masks.WindowCols,
                    correct / (double)set.Count, certifiedCorrect / (double)set.Count, results.Count(r => r.Report.Certified) / (double)set.Count,
                    results.Average(r => r.Report.Forwards), results.Average(r => r.Report.ElapsedMs),
                    CertifyRow.CaseCounts(results))
                {
                    RowBorderStride = masks.RowBorderStride,
                    ColBorderStride = masks.ColBorderStride,
                    LargestRows = masks.LargestRows,
                    LargestCols = masks.LargestCols,
                    MedianMsPerImage = DefenseScoring.Median(results.Select(r => r.Report.ElapsedMs).ToArray()),
                    CertifiedMsPerImage = results.Any(r => r.Report.Certified) ? results.Where(r => r.Report.Certified).Average(r => r.Report.ElapsedMs) : 0,
                    CertifiedImages = EvaluationRow.Mask(Enumerable.Range(0, set.Count).Select(i => results[i].Report.Certified && results[i].Label == set.Labels[i]).ToArray()),
                    CorrectImages = EvaluationRow.Mask(Enumerable.Range(0, set.Count).Select(i => results[i].Label == set.Labels[i]).ToArray()),
                    CaseImages = CertifyRow.CaseLetters(results),
                };
                rows.Add(row);
                log.WriteLine($"  {size}x{size} stride {stride}, border strides {masks.RowBorderStride}x{masks.ColBorderStride}: {masks.Count} masks of {masks.WindowRows}x{masks.WindowCols} (largest {masks.LargestRows}x{masks.LargestCols}); "
                    + $"clean {row.CleanAccuracy:P1}, certified {row.CertifiedAccuracy:P1}, {row.ForwardsPerImage:F0} forwards, {row.MsPerImage:F1} ms/image (median {row.MedianMsPerImage:F1}, certified images {row.CertifiedMsPerImage:F1})");

                // The soundness check and the attack run on the first mask set of each size.
                var firstSet = stride == settings.Strides[0] && rowBorder == settings.RowBorderStrides[0] && colBorder == settings.ColBorderStrides[0];
                if (settings.Soundness && firstSet)
                {
                    var certified = Enumerable.Range(0, set.Count).Where(i => results[i].Report.Certified && results[i].Label == set.Labels[i]).ToArray();
                    soundness.Add(Soundness(set.Subset(certified.Take(settings.SoundnessCount).ToArray()), masks, undefended, "undefended"));
                    if (settings.AdaptiveCount > 0)
                    {
                        using var surrogate = new CertifySurrogateClassifier(package, certifier.Classifier, masks, embeddingVjp, sessions);
                        soundness.Add(Soundness(set.Subset(certified.Take(settings.AdaptiveCount).ToArray()), masks, surrogate, "certify-surrogate"));
                    }
                }

                if (settings.RobustCount > 0 && firstSet)
                {
                    underAttack.Add(UnderAttack(set, masks, results));
                }

                foreach (var patchSize in settings.PlainPatchSizes)
                {
                    if (!patchedSets.TryGetValue(patchSize, out var patched))
                    {
                        log.WriteLine($"  plain per-image patches {patchSize}x{patchSize} ({settings.PlainPatchSteps} steps on the undefended model)");
                        patched = PatchScenarios.PerImageCached(undefended, package.Sha256, set, patchSize, settings.PlainPatchSteps, settings.Seed, settings.PatchCache);
                        patchedSets[patchSize] = patched;
                    }

                    plainPatches.Add(PlainPatched(masks, patched));
                }
            }
        }

        return new CertifyEvaluationReport(package.Manifest.Name, split, set.Count, certifier.Classifier.MethodName, certifier.Field, plain, plainMs,
            settings, rows, soundness, Math.Round(total.Elapsed.TotalSeconds, 1)) { UnderAttack = underAttack, PlainPatches = plainPatches };
    }

    /// <summary>Certify mode (one mask set) on one set of plain per-image patches, beside the undefended model on the same images.</summary>
    private CertifyPatchedRow PlainPatched(MaskSet masks, PatchedSet patched)
    {
        var images = patched.Images;
        var plainAccuracy = DefenseScoring.Undefended(classifier, images).Accuracy;
        var results = CertifyAll(images, masks);
        var right = Enumerable.Range(0, images.Count).Select(i => results[i].Label == images.Labels[i]).ToArray();
        var row = new CertifyPatchedRow(masks.PatchSize, patched.PatchSize, images.Count, settings.PlainPatchSteps,
            plainAccuracy, right.Count(r => r) / (double)images.Count,
            Enumerable.Range(0, images.Count).Count(i => right[i] && results[i].Report.Certified) / (double)images.Count,
            results.Average(r => r.Report.Forwards), results.Average(r => r.Report.ElapsedMs),
            CertifyRow.CaseCounts(results))
        {
            CorrectImages = EvaluationRow.Mask(right),
            CaseImages = CertifyRow.CaseLetters(results),
        };
        log.WriteLine($"  certify mode ({masks.PatchSize}x{masks.PatchSize} masks) on plain {patched.PatchSize}x{patched.PatchSize} patches: {row.Accuracy:P1} right "
            + $"(undefended {row.Undefended:P1}; certified with the label {row.Certified:P1}), {row.ForwardsPerImage:F0} forwards, {row.MsPerImage:F1} ms/image");
        return row;
    }

    private CertifiedClassification[] CertifyAll(EvaluationSet set, MaskSet masks)
    {
        // One image at a time, as a request is served: the time per image is the served latency.
        var results = new CertifiedClassification[set.Count];
        for (var i = 0; i < set.Count; i++)
        {
            results[i] = certifier.Certify(set.Image(i), masks);
        }

        return results;
    }

    /// <summary>
    /// Certify mode attacked where it can be: each uncertified image answered right is patched at up to
    /// <see cref="CertifySettings.RobustPlacements"/> of its vulnerable placements, the patch optimised on the certify
    /// surrogate (mean of the one-mask views) there, and certified again; the image is broken at its first changed answer.
    /// </summary>
    private CertifyAttackRow UnderAttack(EvaluationSet set, MaskSet masks, CertifiedClassification[] results)
    {
        var n = Math.Min(settings.RobustCount, set.Count);
        var input = package.Manifest.Input;
        using var surrogate = new CertifySurrogateClassifier(package, certifier.Classifier, masks, embeddingVjp, sessions);
        var right = new bool[n];
        int certified = 0, attacked = 0, broken = 0, none = 0, patches = 0, fooled = 0;
        double vulnerableShare = 0;
        var all = (input.Height - masks.PatchSize + 1) * (input.Width - masks.PatchSize + 1);
        for (var i = 0; i < n; i++)
        {
            var label = set.Labels[i];
            if (results[i].Label != label) continue;
            if (results[i].Report.Certified)
            {
                certified++;
                right[i] = true;
                continue;
            }

            attacked++;
            var pixels = set.Image(i);
            var sound = PlacementAnalysis.SoundMasks(certifier.Classifier, masks, pixels, label);
            var vulnerable = PlacementAnalysis.Vulnerable(masks, certifier.Field, input.Height, input.Width, sound);
            vulnerableShare += vulnerable.Length / (double)all;
            if (vulnerable.Length == 0) none++;
            right[i] = true;
            var rng = new Random(settings.Seed + i);
            foreach (var place in vulnerable.OrderBy(_ => rng.Next()).Take(settings.RobustPlacements))
            {
                var attack = new PatchAttack(masks.PatchSize, place.X, place.Y, settings.RobustSteps);
                var result = attack.Run(surrogate, pixels, 1, AttackGoal.Untargeted([label]), settings.Seed + i);
                patches++;
                fooled += result.Samples[0].SuccessQuantized ? 1 : 0;
                if (certifier.Certify(result.QuantizedOf(0), masks).Label != label)
                {
                    right[i] = false;
                    broken++;
                    break;
                }
            }
        }

        var row = new CertifyAttackRow(masks.PatchSize, n, certified, attacked, broken, right.Count(r => r) / (double)n, none,
            attacked > 0 ? vulnerableShare / attacked : 0, settings.RobustPlacements, settings.RobustSteps, fooled / (double)Math.Max(1, patches))
        {
            RightImages = EvaluationRow.Mask(right),
        };
        log.WriteLine($"  certify mode under attack, {masks.PatchSize}x{masks.PatchSize}: {row.Accuracy:P1} right of {n} ({certified} certified; {attacked} attacked at up to "
            + $"{settings.RobustPlacements} vulnerable placements, {broken} broken, {none} with none; vulnerable share {row.VulnerableShare:P1}; surrogate fooled by {row.SurrogateFooled:P1} of {patches} patches)");
        return row;
    }

    private (double Accuracy, double MsPerImage) PlainAccuracy(EvaluationSet set)
    {
        var sw = Stopwatch.StartNew();
        var correct = 0;
        for (var i = 0; i < set.Count; i++)
        {
            var logits = classifier.Logits(set.Image(i), 1);
            correct += Probabilities.ArgMax(logits) == set.Labels[i] ? 1 : 0;
        }

        return (correct / (double)set.Count, sw.Elapsed.TotalMilliseconds / set.Count);
    }

    private SoundnessRow Soundness(EvaluationSet certified, MaskSet masks, IDifferentiableClassifier target, string name)
    {
        const int Chunk = 25;
        var attack = new PatchAttack(masks.PatchSize, steps: name == "undefended" ? settings.AttackSteps : settings.AdaptiveSteps);
        int attempts = 0, successes = 0, fooled = 0, exceptions = 0, stillCertified = 0;
        for (var placement = 0; placement < settings.Placements; placement++)
        {
            for (var start = 0; start < certified.Count; start += Chunk)
            {
                var n = Math.Min(Chunk, certified.Count - start);
                var labels = certified.Labels.Skip(start).Take(n).ToArray();
                var result = attack.Run(target, certified.Pixels.AsSpan(start * certified.SampleSize, n * certified.SampleSize), n,
                    AttackGoal.Untargeted(labels), settings.Seed + (placement * 100_003) + start);
                var plainLogits = classifier.Logits(result.Quantized, n);
                for (var i = 0; i < n; i++)
                {
                    attempts++;
                    successes += result.Samples[i].SuccessQuantized ? 1 : 0;
                    fooled += Probabilities.ArgMax(plainLogits.AsSpan(i * classifier.ClassCount, classifier.ClassCount)) != labels[i] ? 1 : 0;
                    var answer = certifier.Certify(result.QuantizedOf(i), masks);
                    stillCertified += answer.Report.Certified ? 1 : 0;
                    if (answer.Label != labels[i])
                    {
                        exceptions++;
                        log.WriteLine($"  SOUNDNESS EXCEPTION: {name} {masks.PatchSize}x{masks.PatchSize} patch at {result.Samples[i].Patch} turned certified label {labels[i]} into {answer.Label}");
                    }
                }
            }
        }

        log.WriteLine($"  soundness {masks.PatchSize}x{masks.PatchSize} vs {name}: {certified.Count} images, {attempts} patched, attack success {successes / (double)Math.Max(1, attempts):P1}, exceptions {exceptions}");
        return new SoundnessRow(masks.PatchSize, name, certified.Count, attempts, successes / (double)Math.Max(1, attempts),
            fooled / (double)Math.Max(1, attempts), exceptions, stillCertified / (double)Math.Max(1, attempts));
    }
}
