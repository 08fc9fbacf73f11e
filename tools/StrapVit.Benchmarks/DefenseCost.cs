using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Runtime;

namespace StrapVit.Benchmarks;

/// <summary>
/// <c>defense-cost MODEL-DIR [runs] [image] [verify-windows]</c>: what <c>defense=mitigate</c> adds to a batch-1 classification, as process CPU
/// time with one intra-op thread (robust to other jobs on the machine, like <see cref="CpuTimeRatio"/>). The model
/// runtime comes from the service's factory with the service's default defense options, so the defense is the one the
/// service would run on this package (the token defense when the package has a tokens entry and a calibration).
/// Plain and defended runs are interleaved; prints the medians and their ratio. Pass a real image (decoded and resized
/// as the service does): the defense's cost depends on how many tokens it flags, and random pixels flag nearly all.
/// <c>verify-windows</c> overrides <c>Defense:VerifyWindows</c> (0: the defense without its masking check);
/// <c>STRAPVIT_DEFENSE_PROFILE</c> sets <c>Defense:Profile</c> (e.g. <c>Light</c>), <c>STRAPVIT_DEFENSE_GROUP</c>
/// <c>Defense:VerifyGroup</c>, <c>STRAPVIT_DEFENSE_MARGIN</c> <c>Defense:VerifyMargin</c> (unset: the calibration's). Given an IDX image file (<c>*-images-idx3-ubyte.gz</c>) instead of one image, it runs
/// each of its first <c>runs</c> images (the check's cost depends on the image: whether a view disagrees), three
/// interleaved runs each, and prints the mean over the images of each one's median.
/// </summary>
public static class DefenseCost
{
    public static void Run(string packageDir, int runs, string? image, int? verifyWindows = null)
    {
        var options = new DefenseOptions();
        if (Enum.TryParse<DefenseProfile>(Environment.GetEnvironmentVariable("STRAPVIT_DEFENSE_PROFILE"), ignoreCase: true, out var profile)) options.Profile = profile;
        if (verifyWindows is { } v) options.VerifyWindows = v;
        options.VerifyGroup = BenchModels.EnvInt("STRAPVIT_DEFENSE_GROUP", options.VerifyGroup);
        if (double.TryParse(Environment.GetEnvironmentVariable("STRAPVIT_DEFENSE_MARGIN"), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var margin)) options.VerifyMargin = margin;
        using var runtime = BenchModels.Runtime(packageDir, threads: 1, defense: options);
        var defense = runtime.Defense?.Defense ?? throw new InvalidOperationException($"{packageDir} loads no defense (no calibration?)");
        var input = runtime.Package.Manifest.Input;
        if (image is not null && image.EndsWith("-idx3-ubyte.gz", StringComparison.Ordinal))
        {
            OverImages(runtime, defense, image, runs);
            return;
        }

        var rng = new Random(1);
        var pixels = image is null
            ? Enumerable.Range(0, input.Size).Select(_ => (float)rng.NextDouble()).ToArray()
            : BenchModels.Decode(image, input);
        var report = defense.Run(pixels, 1, DefenseMode.Mitigate, [1])[0].Report;
        var flagged = report.FlaggedTokens.Count;
        var check = report.Verification is { } c ? $", check of {c.Windows} windows: {c.Forwards} masked forwards, {c.Outcome}" : ", no check";

        void Plain() => runtime.Classifier.Logits(pixels, 1);

        void Defended() => defense.Run(pixels, 1, DefenseMode.Mitigate, [1]);

        Plain();
        Defended();
        var (pCpu, pWall, dCpu, dWall) = (new List<double>(), new List<double>(), new List<double>(), new List<double>());
        for (var i = 0; i < runs; i++)
        {
            CpuTimeRatio.Time(Plain, pCpu, pWall);
            CpuTimeRatio.Time(Defended, dCpu, dWall);
        }

        var (p, d) = (CpuTimeRatio.Median(pCpu), CpuTimeRatio.Median(dCpu));
        if (Environment.GetEnvironmentVariable("STRAPVIT_DEFENSE_PARTS") == "1" && runtime.TokenModel is { } tm && runtime.Defense?.Calibration?.Tokens is { } reference)
        {
            // Where the defense's time goes, each part timed alone (CPU time, median): embedding, scoring, encoder.
            var tokens = tm.Embed(pixels, 1);
            var scores = new double[tm.TokenCount];
            var nearest = new int[tm.TokenCount * reference.Bank!.Neighbors];
            IReadOnlyCollection<int>[] dropped = [report.FlaggedTokens.Select(f => f.Index + tm.FirstPatchToken).ToHashSet()];
            var parts = new (string Name, Action Run)[]
            {
                ("embed", () => tm.Embed(pixels, 1)),
                ("score", () => reference.Score(tokens, scores, options.Score, tm.FirstPatchToken, nearest)),
                ("encode, flagged dropped", () => tm.EncodeDropping(tokens, 1, dropped)),
                ("encode, all tokens", () => tm.Encode(tokens, 1)),
            };
            // The bank search as an ONNX graph: the service's on a GPU, else one made here on the CPU for comparison.
            using var own = runtime.Defense?.Search is null && reference.Bank is { } bank ? new BankSearch(bank, runtime.Sessions) : null;
            var search = runtime.Defense?.Search ?? own;
            if (search is not null)
            {
                parts = [.. parts, ($"score, bank search graph on {search.ExecutionProvider}", () => search.ScoreImage(tokens, tm.FirstPatchToken, scores, nearest))];
            }

            foreach (var (name, run) in parts)
            {
                var (cpu, wall) = (new List<double>(), new List<double>());
                for (var i = 0; i < runs; i++) CpuTimeRatio.Time(run, cpu, wall);
                Console.WriteLine($"  {name}: CPU ms {CpuTimeRatio.Median(cpu):F3} (wall min {wall.Min():F3})");
            }
        }

        Console.WriteLine($"{runtime.Package.Manifest.Name}: defense {defense.Variant}, {flagged} tokens flagged{check}, views {Views(runtime)}, {runs} runs, 1 intra-op thread: classify CPU ms {p:F2} (wall min {pWall.Min():F2}), mitigate CPU ms {d:F2} (wall min {dWall.Min():F2}), mitigate / off {d / p:F2} (CPU), {dWall.Min() / pWall.Min():F2} (wall min)");
    }

    /// <summary>How the masking check's views hide tokens in this runtime (Inference:ViewMasking, as it came out).</summary>
    private static string Views(ModelRuntime runtime) => runtime.TokenModel?.MasksKeys == true ? "key-masked" : "dropped";

    /// <summary>
    /// The mean cost over the first <paramref name="count"/> images of an IDX set, each image's median of three interleaved
    /// runs (CPU time), and each image's minimum wall time (what to read on a GPU, where the work is not CPU time).
    /// </summary>
    private static void OverImages(ModelRuntime runtime, IPatchDefense defense, string file, int count)
    {
        var input = runtime.Package.Manifest.Input;
        var set = EvaluationSet.FromIdx(IdxDataset.Load(file, IdxDataset.LabelsBeside(file)), count, input.Channels, input.Height, input.Width);
        var (plain, defended, forwards) = (new List<double>(), new List<double>(), new List<int>());
        var (plainWall, defendedWall) = (new List<double>(), new List<double>());
        var outcomes = new Dictionary<string, int>();
        for (var i = 0; i < set.Count; i++)
        {
            var pixels = set.Image(i).ToArray();
            var report = defense.Run(pixels, 1, DefenseMode.Mitigate, [i])[0].Report;
            var outcome = report.Verification?.Outcome ?? "no check";
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            forwards.Add(report.Verification?.Forwards ?? 0);
            var (pCpu, pWall, dCpu, dWall) = (new List<double>(), new List<double>(), new List<double>(), new List<double>());
            runtime.Classifier.Logits(pixels, 1);
            for (var r = 0; r < 3; r++)
            {
                CpuTimeRatio.Time(() => runtime.Classifier.Logits(pixels, 1), pCpu, pWall);
                CpuTimeRatio.Time(() => defense.Run(pixels, 1, DefenseMode.Mitigate, [i]), dCpu, dWall);
            }

            plain.Add(CpuTimeRatio.Median(pCpu));
            defended.Add(CpuTimeRatio.Median(dCpu));
            plainWall.Add(pWall.Min());
            defendedWall.Add(dWall.Min());
        }

        Console.WriteLine($"{runtime.Package.Manifest.Name}: defense {defense.Variant} over {set.Count} images of {Path.GetFileName(file)}, 1 intra-op thread: "
            + $"classify CPU ms {plain.Average():F3}, mitigate CPU ms {defended.Average():F3}, mitigate / off {defended.Average() / plain.Average():F2} (CPU, means of per-image medians); "
            + $"wall ms {plainWall.Average():F3} / {defendedWall.Average():F3} = {defendedWall.Average() / plainWall.Average():F2} (means of per-image minima); "
            + $"masked forwards per image {forwards.Average():F2}, views {Views(runtime)}; outcomes {string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key} {o.Value}"))}");
    }
}
