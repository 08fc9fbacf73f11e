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
    public int[] AblationK { get; init; } = [0, 1, 2, 4, 6, 8];
    public double[] AblationTemperature { get; init; } = [0.5, 1.0, 2.0];
    public double[] AblationThresholdScale { get; init; } = [0.75, 1.0, 1.5, 1e9];
    public int Seed { get; init; }
}

/// <summary>One row of a results table: a scenario, a defense configuration and its score.</summary>
public sealed record EvaluationRow(string Section, string Scenario, string Defense, double Accuracy, double? Flagged, double? Coverage, double? AttackSuccess);

/// <summary>Everything one run measured.</summary>
public sealed record EvaluationReport(
    string Model, int Images, int CalibrationImages, DefenseOptions Options, EvaluationSettings Settings,
    IReadOnlyList<EvaluationRow> Rows, IReadOnlyDictionary<string, double> OverheadMs, double Seconds);

/// <summary>
/// The evaluation of issue 5: clean and attacked accuracy without and with both defense variants, per-image and
/// universal patches at several sizes, detection coverage, false positives, overhead, an ablation, and an adaptive
/// (EOT) attacker who differentiates through the token defense.
/// </summary>
public sealed class DefenseEvaluation(
    ModelPackage package, VitClassifier classifier, TokenSpaceModel tokens, TokenGradients tokenGradients,
    IDifferentiableClassifier undefended, DefenseOptions options, EvaluationSettings settings, TextWriter log)
{
    public EvaluationReport Run(EvaluationSet test, EvaluationSet calibration)
    {
        var started = Stopwatch.GetTimestamp();
        var rows = new List<EvaluationRow>();
        var reference = Calibrate(calibration, settings.Temperature);
        var token = new TokenPatchDefense(tokens, reference.Tokens!, options);
        var pixel = new PixelPatchDefense(classifier, reference.Pixels, options);
        var seed = settings.Seed;

        void Score(string section, string scenario, EvaluationSet set, PatchedSet? patched, double? attackSuccess)
        {
            rows.Add(new(section, scenario, "none", DefenseScoring.Undefended(classifier, set).Accuracy, null, null, attackSuccess));
            foreach (var defense in new IPatchDefense[] { token, pixel })
            {
                // Flagging happens before any transform, so the mitigate run's report also gives detection and coverage.
                var s = DefenseScoring.Defended(defense, set, DefenseMode.Mitigate, seed, patched?.Placements, package.Manifest.PatchSize);
                rows.Add(new(section, scenario, defense.Variant, s.Accuracy, s.Flagged, s.Coverage, attackSuccess));
            }

            log.WriteLine($"  {section} / {scenario}: " + string.Join(", ", rows.Where(r => r.Section == section && r.Scenario == scenario).Select(r => $"{r.Defense} {r.Accuracy:P1}")));
        }

        log.WriteLine($"clean ({test.Count} images)");
        Score("clean", "clean", test, null, null);

        var perImage = new Dictionary<int, PatchedSet>();
        foreach (var size in settings.PatchSizes)
        {
            log.WriteLine($"per-image patch {size}x{size} ({settings.PatchSteps} steps)");
            var patched = PatchScenarios.PerImage(undefended, test, size, settings.PatchSteps, seed);
            perImage[size] = patched;
            Score("per-image patch", Label(size), patched.Images, patched, patched.AttackSuccessRate);
        }

        foreach (var size in settings.PatchSizes)
        {
            log.WriteLine($"universal patch {size}x{size} ({settings.UniversalSteps} steps, target {settings.UniversalTarget})");
            var (patched, _) = PatchScenarios.Universal(undefended, calibration, test, size, settings.UniversalTarget, settings.UniversalSteps, seed);
            Score("universal patch", Label(size), patched.Images, patched, patched.AttackSuccessRate);
        }

        Adaptive(rows, test, calibration, reference, token);
        Ablation(rows, test, perImage.GetValueOrDefault(settings.AdaptivePatchSize) ?? perImage.Values.First(), calibration, reference);
        var overhead = Overhead(test, token, pixel);
        return new EvaluationReport(package.Manifest.Name, test.Count, calibration.Count, options, settings, rows, overhead,
            Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    private void Adaptive(List<EvaluationRow> rows, EvaluationSet test, EvaluationSet calibration, DefenseCalibration reference, TokenPatchDefense token)
    {
        var size = settings.AdaptivePatchSize;
        var subset = Take(test, settings.AdaptiveCount);
        var eot = new EotTokenDefenseClassifier(tokens, reference.Tokens!, options, tokenGradients, settings.EotSamples, settings.Seed);

        log.WriteLine($"adaptive per-image patch {size}x{size} through the token defense (EOT {settings.EotSamples}, {subset.Count} images)");
        var plain = PatchScenarios.PerImage(undefended, subset, size, settings.PatchSteps, settings.Seed);
        var adaptive = PatchScenarios.PerImage(eot, subset, size, settings.PatchSteps, settings.Seed);
        foreach (var (name, set) in new[] { ("non-adaptive", plain), ("adaptive (EOT)", adaptive) })
        {
            var none = DefenseScoring.Undefended(classifier, set.Images).Accuracy;
            var defended = DefenseScoring.Defended(token, set.Images, DefenseMode.Mitigate, settings.Seed + 7);
            rows.Add(new("adaptive per-image patch", $"{Label(size)} {name}", "none", none, null, null, set.AttackSuccessRate));
            rows.Add(new("adaptive per-image patch", $"{Label(size)} {name}", "token", defended.Accuracy, null, null, set.AttackSuccessRate));
            log.WriteLine($"  {name}: none {none:P1}, token {defended.Accuracy:P1}");
        }

        log.WriteLine($"adaptive universal patch {size}x{size} through the token defense");
        var (universal, _) = PatchScenarios.Universal(eot, calibration, subset, size, settings.UniversalTarget, settings.UniversalSteps, settings.Seed);
        var u = DefenseScoring.Defended(token, universal.Images, DefenseMode.Mitigate, settings.Seed + 7);
        rows.Add(new("adaptive universal patch", $"{Label(size)} adaptive (EOT)", "none", DefenseScoring.Undefended(classifier, universal.Images).Accuracy, null, null, universal.AttackSuccessRate));
        rows.Add(new("adaptive universal patch", $"{Label(size)} adaptive (EOT)", "token", u.Accuracy, null, null, universal.AttackSuccessRate));
        log.WriteLine($"  token {u.Accuracy:P1}");
    }

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

        foreach (var k in settings.AblationK) Add($"K={k}", Copy(options, o => o.MinTokens = k), reference.Tokens!);
        foreach (var t in new[] { TokenTransforms.LpProjection, TokenTransforms.AffineShrink, TokenTransforms.Temperature, TokenTransforms.All })
        {
            Add($"transforms={t}", Copy(options, o => o.Transforms = t), reference.Tokens!);
        }

        foreach (var s in settings.AblationThresholdScale) Add($"threshold x{s:G3}", Copy(options, o => o.ThresholdScale = s), reference.Tokens!);
        foreach (var t in settings.AblationTemperature)
        {
            // Only a different temperature needs a new reference.
            var tokens = t == settings.Temperature ? reference.Tokens! : Calibrate(calibration, t).Tokens!;
            Add($"T={t:G3}", options, tokens);
        }
    }

    private Dictionary<string, double> Overhead(EvaluationSet set, TokenPatchDefense token, PixelPatchDefense pixel)
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
        var pixelMs = Time(i => pixel.Run(set.Image(i), 1, DefenseMode.Mitigate, [i]));
        log.WriteLine($"overhead per image: forward {forward:F3} ms, token {tokenMs:F3} ms, pixel {pixelMs:F3} ms");
        return new Dictionary<string, double>
        {
            ["forward"] = forward, ["token"] = tokenMs, ["pixel"] = pixelMs,
            ["tokenRatio"] = tokenMs / forward, ["pixelRatio"] = pixelMs / forward,
        };
    }

    private DefenseCalibration Calibrate(EvaluationSet calibration, double temperature)
    {
        var manifest = package.Manifest.Input;
        var images = Enumerable.Range(0, calibration.Count)
            .Select(i => new Imaging.ImageTensor(calibration.Image(i).ToArray(), manifest.Channels, manifest.Height, manifest.Width)).ToList();
        return DefenseCalibration.Compute(package, tokens, images, temperature, settings.HistogramBins, settings.Quantile);
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
