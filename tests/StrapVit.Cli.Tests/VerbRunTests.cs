using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Onnx;
using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Cli.Tests;

/// <summary>The fixed contract of the two verbs the README documents, run end to end on real packages.</summary>
public sealed class VerbRunTests : IDisposable
{
    private readonly string temp = Directory.CreateTempSubdirectory("strapvit-cli-").FullName;

    /// <summary>The shipped tuning and calibration images (gzipped IDX, labels beside them).</summary>
    private static readonly string TuneImages = RepoPaths.Sample(Path.Combine("fashion-mnist", "tune-500-images-idx3-ubyte.gz"));

    private static readonly string CalibImages = RepoPaths.Sample(Path.Combine("fashion-mnist", "calib-500-images-idx3-ubyte.gz"));

    public void Dispose() => Directory.Delete(temp, recursive: true);

    [Theory]
    [InlineData(null, "cross-entropy", new[] { "logits", "loss", "pixel_grad" })]
    [InlineData("vjp", "vjp", new[] { "logits", "pixel_grad" })]
    public void Gradient_graph_writes_the_model_and_exits_0(string? objective, string expected, string[] outputs)
    {
        var output = Path.Combine(temp, "out", "grad.onnx");
        string[] args = ["gradient-graph", RepoPaths.DefaultModel, "--output", output, .. objective is null ? Array.Empty<string>() : ["--objective", objective]];
        var (exit, stdout, stderr) = CliHarness.Run(args);
        Assert.True(exit == 0, stderr);
        Assert.StartsWith($"{output}: {expected} gradient of fashion-vit-tiny (", stdout, StringComparison.Ordinal);
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(output));
        Assert.Equal(outputs, model.Graph.Output.Select(o => o.Name));
        Assert.Equal(expected, model.MetadataProps.Single(p => p.Key == "strapvit.gradient.objective").Value);
    }

    [Fact]
    public void Gradient_graph_names_the_op_and_node_it_cannot_differentiate_and_exits_1()
    {
        var package = Path.Combine(temp, "topk");
        Directory.CreateDirectory(package);
        File.WriteAllBytes(Path.Combine(package, "model.onnx"), TopKModel().ToByteArray());
        File.WriteAllText(Path.Combine(package, "model.json"), """
            {"name": "topk", "input": {"name": "input", "channels": 1, "height": 4, "width": 4, "mean": [0.5], "std": [0.5]},
             "output": "logits", "labels": ["a", "b", "c"], "patchSize": 2}
            """);
        var output = Path.Combine(temp, "grad.onnx");
        var (exit, stdout, stderr) = CliHarness.Run("gradient-graph", package, "--output", output);
        Assert.Equal(1, exit);
        Assert.Empty(stdout);
        var line = Assert.Single(CliHarness.Lines(stderr));
        Assert.StartsWith("strapvit gradient-graph: ", line, StringComparison.Ordinal);
        Assert.Contains("TopK", line, StringComparison.Ordinal);
        Assert.Contains("top_node", line, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void Calibrate_from_a_folder_of_pngs_writes_a_calibration_and_exits_0()
    {
        var package = UncalibratedPackage();
        var images = Pngs("clean", "calib-500-images-idx3-ubyte.gz", 40);
        var (exit, stdout, stderr) = CliHarness.Run("calibrate", package, "--images", images, "--bank-size", "64", "--quantile", "0.9");
        Assert.True(exit == 0, stderr);
        var written = Path.Combine(package, DefenseCalibration.FileName);
        Assert.StartsWith($"{written}: defense calibration of fashion-vit-tiny from 40 images", stdout, StringComparison.Ordinal);
        Assert.Contains("quantile 0.9)", stdout, StringComparison.Ordinal);
        var calibration = DefenseCalibration.Load(written, ModelPackage.Load(package));
        Assert.Equal(64, calibration.Tokens!.Bank!.Count);
    }

    [Fact]
    public void Calibrate_sets_the_checks_margin_for_its_clean_rate_and_the_service_loads_it()
    {
        var package = UncalibratedPackage();
        // A small bank flags more, so the check disagrees on some of the other clean images.
        var clean = Pngs("clean", "calib-500-images-idx3-ubyte.gz", 40);
        // The default drops nothing from a clean image without a token over threshold, so the check disagrees on few.
        const int Others = 500;
        var other = Pngs("other", "tune-500-images-idx3-ubyte.gz", Others);
        var (exit, stdout, stderr) = CliHarness.Run("calibrate", package, "--images", clean, "--bank-size", "64", "--check-images", other, "--check-rate", "0");
        Assert.True(exit == 0, stderr);
        var loaded = ModelPackage.Load(package);
        var calibration = DefenseCalibration.Load(Path.Combine(package, DefenseCalibration.FileName), loaded);
        var check = calibration.Check!;
        Assert.StartsWith(FormattableString.Invariant($"masking check: margin {check.Margin:F3}, 0 of {Others} clean answers replaced"), stdout, StringComparison.Ordinal);
        // None of them replaced bounds the rate by 1 - 0.05^(1/n), which the command says is loose.
        Assert.Contains(FormattableString.Invariant($"95% upper bound on the rate {1 - Math.Pow(0.05, 1.0 / Others):P1})"), stdout, StringComparison.Ordinal);
        Assert.Contains($"{Others} clean images bound the check's replacement rate only by", stderr, StringComparison.Ordinal);
        Assert.Equal((0.0, Others, 0), (check.CleanRate, check.Images, check.Replaced));
        Assert.True(check.Margin > 0, "the check replaced no answer without a margin: the test needs one that it must set");

        // The service's loader applies it unless Defense:VerifyMargin is set; count what the check replaces its own way.
        var sessions = new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance);
        using var classifier = new VitClassifier(loaded, sessions, new InferenceOptions { Device = InferenceDevice.Cpu });
        var decoder = new StrapVit.Core.Imaging.ImageDecoder(new StrapVit.Core.Imaging.ImageLimits());
        var input = loaded.Manifest.Input;
        var images = Directory.GetFiles(other, "*.png").Order(StringComparer.Ordinal)
            .Select(f => decoder.Decode(File.ReadAllBytes(f), input.Channels, input.Height, input.Width).Data).ToArray();
        int Replaced(DefenseOptions options, double expectedMargin)
        {
            using var setup = DefenseLoader.Create(loaded, classifier, sessions, options, cacheDirectory: null);
            var reports = images.Select((pixels, i) => setup.Defense!.Run(pixels, 1, DefenseMode.Mitigate, [i])[0].Report.Verification!).ToArray();
            Assert.All(reports, r => Assert.Equal(expectedMargin, r.Margin));
            return reports.Count(r => r.Outcome == "recovered");
        }

        Assert.Equal(0, Replaced(new DefenseOptions(), check.Margin));
        Assert.True(Replaced(new DefenseOptions { VerifyMargin = check.Margin - 0.002 }, check.Margin - 0.002) > 0, "the margin is not the smallest that keeps to the rate");
        // Counted under other settings, the margin does not carry over: the check keeps PatchCleanser's rule there.
        Replaced(new DefenseOptions { VerifyGroup = 1 }, 0);
        Assert.True(check.AppliesTo(new DefenseOptions()));
        Assert.False(check.AppliesTo(new DefenseOptions { VerifyGroup = 1 }));
        Assert.False(check.AppliesTo(new DefenseOptions { MinTokens = 2, WindowOnlyOverThreshold = false }));   // the defaults before session 19
    }

    /// <summary>The embedded model's token-space encoder on CPU, as the certifier runs it.</summary>
    private static TokenSpaceModel DefaultTokenModel() =>
        new(ModelPackage.Load(RepoPaths.DefaultModel), new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance));

    /// <summary>The service's mask set (default certify options) for patches of <paramref name="patchSize"/> pixels: patch-grid cells per mask.</summary>
    private static IReadOnlyList<int[]> ServiceMasks(TokenSpaceModel model, int patchSize) =>
        new StrapVit.Core.Certification.PatchCertifier(new StrapVit.Core.Certification.MaskedTokenClassifier(model, null), new StrapVit.Core.Certification.CertifyOptions()).MasksFor(patchSize).Masks;

    [Fact]
    public void Certify_eval_marks_each_image_certified_with_its_label_as_every_one_and_two_mask_view_agrees()
    {
        // The mark is checked against PatchCleanser's condition computed here by brute force: every view hiding one
        // mask, or two, answers the label (no early stop, no decision branches; only the mask geometry is shared).
        const int count = 16;
        var output = Path.Combine(temp, "certify");
        var (exit, _, stderr) = CliHarness.Run("certify-eval", RepoPaths.DefaultModel, "--images", TuneImages, "--split", "tune",
            "--count", $"{count}", "--sizes", "6", "--soundness", "false", "--output", output);
        Assert.True(exit == 0, stderr);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "certify-fashion-vit-tiny-tune.json")));
        var row = json.RootElement.GetProperty("rows")[0];
        var marks = row.GetProperty("certifiedImages").GetString()!;

        using var model = DefaultTokenModel();
        var masks = ServiceMasks(model, 6);
        var views = new List<IReadOnlyCollection<int>>();
        for (var a = 0; a < masks.Count; a++)
        {
            // Masks are patch-grid cells; the encoder's sequence starts with the class token.
            for (var b = a; b < masks.Count; b++) views.Add(masks[a].Union(masks[b]).Select(c => c + model.FirstPatchToken).ToArray());
        }

        var set = IdxDataset.Load(TuneImages, IdxDataset.LabelsBeside(TuneImages));
        var expected = new char[count];
        for (var i = 0; i < count; i++)
        {
            var tokens = model.Embed(set.Image(i).Data, 1);
            var all = new float[views.Count * tokens.Length];
            for (var v = 0; v < views.Count; v++) tokens.CopyTo(all, v * tokens.Length);
            var logits = model.EncodeDropping(all, views.Count, views);
            var classes = logits.Length / views.Count;
            var agree = Enumerable.Range(0, views.Count).All(v => StrapVit.Core.Numerics.Probabilities.ArgMax(logits.AsSpan(v * classes, classes)) == set.Labels[i]);
            expected[i] = agree ? '1' : '0';
        }

        Assert.Equal(new string(expected), marks);
        Assert.Equal(marks.Count(c => c == '1') / (double)count, row.GetProperty("certifiedAccuracy").GetDouble(), 9);
        // Not a degenerate sample: some images are certified and some are not.
        Assert.Contains('1', marks);
        Assert.Contains('0', marks);
    }

    [Fact]
    public void Certify_eval_answers_evaluates_plain_patches_by_double_masking()
    {
        // evaluate makes the plain per-image patches and caches them; certify-eval reads the same file and answers each
        // patched image in certify mode. The answers are checked against Algorithm 1 of PatchCleanser written out here
        // from the paper over every one- and two-mask view (majority label, smallest on a tie; the first minority mask,
        // in mask order, whose two-mask views all give its label; else the majority), on the cached pixels themselves.
        const int count = 24;
        var cache = Path.Combine(temp, "patches");
        var (exit, _, stderr) = CliHarness.Run("evaluate", RepoPaths.DefaultModel, "--images", TuneImages, "--calib", CalibImages, "--split", "tune",
            "--count", $"{count}", "--sizes", "6", "--steps", "100", "--universal-steps", "0", "--adaptive-count", "0", "--bank-size", "256",
            "--ablation", "false", "--output", Path.Combine(temp, "evaluate"), "--patch-cache", cache);
        Assert.True(exit == 0, stderr);
        var output = Path.Combine(temp, "certify");
        (exit, _, stderr) = CliHarness.Run("certify-eval", RepoPaths.DefaultModel, "--images", TuneImages, "--split", "tune", "--count", $"{count}",
            "--sizes", "6", "--soundness", "false", "--plain-patches", "6", "--plain-patch-steps", "100", "--patch-cache", cache, "--output", output);
        Assert.True(exit == 0, stderr);

        // One cached set: certify-eval found evaluate's patches rather than making its own.
        var cached = Assert.Single(Directory.GetFiles(cache));
        using var cacheJson = System.Text.Json.JsonDocument.Parse(File.ReadAllText(cached));
        var pixels = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(cacheJson.RootElement.GetProperty("Pixels").GetBytesFromBase64()).ToArray();
        using var evaluation = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(temp, "evaluate", "results-tune.json")));
        Assert.DoesNotContain(evaluation.RootElement.GetProperty("rows").EnumerateArray(), r => r.GetProperty("section").GetString() == "ablation");
        var undefended = evaluation.RootElement.GetProperty("rows").EnumerateArray()
            .Single(r => r.GetProperty("section").GetString() == "per-image patch" && r.GetProperty("defense").GetString() == "none");
        // The defense's per-image check outcomes, which tools/evaluation/modes.py sets beside certify mode's answers.
        var token = evaluation.RootElement.GetProperty("rows").EnumerateArray()
            .Single(r => r.GetProperty("section").GetString() == "per-image patch" && r.GetProperty("defense").GetString() == "token");
        var outcomes = token.GetProperty("checkOutcomes").GetString()!;
        Assert.Equal(count, outcomes.Length);
        Assert.All(outcomes, c => Assert.Contains(c, "akrc-"));
        Assert.Equal(token.GetProperty("checkRecovered").GetInt32(), outcomes.Count(c => c is 'r' or 'c'));
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "certify-fashion-vit-tiny-tune.json")));
        var row = Assert.Single(json.RootElement.GetProperty("plainPatches").EnumerateArray());
        Assert.Equal((6, 6, count), (row.GetProperty("maskSize").GetInt32(), row.GetProperty("patchSize").GetInt32(), row.GetProperty("images").GetInt32()));
        Assert.Equal(undefended.GetProperty("accuracy").GetDouble(), row.GetProperty("undefended").GetDouble(), 9);

        using var model = DefaultTokenModel();
        var masks = ServiceMasks(model, 6);
        var labels = IdxDataset.Load(TuneImages, IdxDataset.LabelsBeside(TuneImages)).Labels;
        var k = masks.Count;
        var right = new char[count];
        var cases = new char[count];
        var certified = 0;
        var sample = pixels.Length / count;
        // Every ordered pair (a, b) of masks, a one-mask view where a = b; masks are patch-grid cells, after the class token.
        var views = new List<IReadOnlyCollection<int>>();
        for (var a = 0; a < k; a++)
        {
            for (var b = 0; b < k; b++) views.Add(masks[a].Union(masks[b]).Select(c => c + model.FirstPatchToken).ToArray());
        }

        for (var i = 0; i < count; i++)
        {
            var tokens = model.Embed(pixels.AsSpan(i * sample, sample).ToArray(), 1);
            var all = new float[views.Count * tokens.Length];
            for (var v = 0; v < views.Count; v++) tokens.CopyTo(all, v * tokens.Length);
            var logits = model.EncodeDropping(all, views.Count, views);
            var classes = logits.Length / views.Count;
            int Label(int a, int b) => StrapVit.Core.Numerics.Probabilities.ArgMax(logits.AsSpan(((a * k) + b) * classes, classes));
            var first = Enumerable.Range(0, k).Select(a => Label(a, a)).ToArray();
            var counts = new int[classes];
            foreach (var l in first) counts[l]++;
            var majority = Array.IndexOf(counts, counts.Max());
            var (answer, branch) = first.All(l => l == majority) ? (majority, 'a') : (majority, 'm');
            for (var a = 0; a < k && branch == 'm'; a++)
            {
                if (first[a] != majority && Enumerable.Range(0, k).All(b => Label(a, b) == first[a]))
                {
                    (answer, branch) = (first[a], 's');
                }
            }

            right[i] = answer == labels[i] ? '1' : '0';
            var everyView = Enumerable.Range(0, k).All(a => Enumerable.Range(0, k).All(b => Label(a, b) == answer));
            cases[i] = everyView ? char.ToUpperInvariant(branch) : branch;
            certified += everyView && answer == labels[i] ? 1 : 0;
        }

        Assert.Equal(new string(right), row.GetProperty("correctImages").GetString());
        Assert.Equal(new string(cases), row.GetProperty("caseImages").GetString());
        // Not a degenerate sample: the patches pushed some images past the first round.
        Assert.Contains(cases, c => c is 's' or 'm');
        Assert.Equal(right.Count(c => c == '1') / (double)count, row.GetProperty("accuracy").GetDouble(), 9);
        Assert.Equal(certified / (double)count, row.GetProperty("certified").GetDouble(), 9);
    }

    [Fact]
    public void Evaluate_saves_each_adaptive_attacks_images_placements_and_answers()
    {
        // What --save-attacks writes is read back here with ONNX Runtime on the raw model.onnx (normalised by hand), not
        // the service's classifier: the saved bytes must be the attacked images, the source outside each patch.
        const int count = 10;
        var saved = Path.Combine(temp, "attacks");
        var (exit, _, stderr) = CliHarness.Run("evaluate", RepoPaths.DefaultModel, "--images", TuneImages, "--calib", CalibImages, "--split", "tune",
            "--count", $"{count}", "--sizes", "4", "--steps", "5", "--universal-steps", "0", "--adaptive-count", $"{count}", "--strong-steps", "0",
            "--sweep", "--sweep-scores", "knn", "--sweep-windows", "6", "--sweep-k", "2", "--sweep-neutralize", "drop", "--sweep-verify", "0",
            "--output", Path.Combine(temp, "evaluate"), "--save-attacks", saved);
        Assert.True(exit == 0, stderr);

        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(saved, "attacks.json")));
        Assert.Equal("fashion-vit-tiny", json.RootElement.GetProperty("model").GetString());
        var attacks = json.RootElement.GetProperty("attacks").EnumerateArray().ToArray();
        Assert.Equal(["4x4 (2.0%) non-adaptive", "4x4 (2.0%) EOT through the defense (4 draws, 5 steps)"], attacks.Select(a => a.GetProperty("scenario").GetString()));

        var source = IdxDataset.Load(TuneImages, IdxDataset.LabelsBeside(TuneImages));
        var manifest = ModelPackage.Load(RepoPaths.DefaultModel).Manifest;
        using var raw = new Microsoft.ML.OnnxRuntime.InferenceSession(Path.Combine(RepoPaths.DefaultModel, "model.onnx"));
        foreach (var attack in attacks)
        {
            var file = Path.Combine(saved, attack.GetProperty("images").GetString()!);
            var images = IdxDataset.Load(file, IdxDataset.LabelsBeside(file));
            Assert.Equal(source.Labels[..count], images.Labels);
            var placements = attack.GetProperty("placements").EnumerateArray().ToArray();
            Assert.Equal(count, placements.Length);
            var changedInside = 0;
            var answers = new char[count];
            for (var i = 0; i < count; i++)
            {
                int x0 = placements[i].GetProperty("x").GetInt32(), y0 = placements[i].GetProperty("y").GetInt32();
                Assert.Equal(4, placements[i].GetProperty("size").GetInt32());
                Assert.InRange(x0, 0, 24);
                Assert.InRange(y0, 0, 24);
                for (var y = 0; y < 28; y++)
                {
                    for (var x = 0; x < 28; x++)
                    {
                        byte got = images.Pixels[(i * 784) + (y * 28) + x], was = source.Pixels[(i * 784) + (y * 28) + x];
                        var inside = x >= x0 && x < x0 + 4 && y >= y0 && y < y0 + 4;
                        if (!inside) Assert.Equal(was, got);
                        else if (got != was) changedInside++;
                    }
                }

                var input = new float[784];
                for (var j = 0; j < 784; j++) input[j] = ((images.Pixels[(i * 784) + j] / 255f) - manifest.Input.Mean[0]) / manifest.Input.Std[0];
                using var results = raw.Run([Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("input",
                    new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(input, [1, 1, 28, 28]))]);
                var logits = results[0].AsEnumerable<float>().ToArray();
                answers[i] = Array.IndexOf(logits, logits.Max()) == images.Labels[i] ? '1' : '0';
            }

            Assert.True(changedInside > count * 4, $"only {changedInside} patch pixels differ from the source");
            Assert.Equal(new string(answers), attack.GetProperty("undefendedCorrect").GetString());
            Assert.Matches($"^[01]{{{count}}}$", attack.GetProperty("defendedCorrect").GetString());
        }
    }

    /// <summary>A copy of the default model's package without its calibration.</summary>
    private string UncalibratedPackage()
    {
        var package = Path.Combine(temp, "package");
        Directory.CreateDirectory(package);
        foreach (var file in Directory.GetFiles(RepoPaths.DefaultModel)) File.Copy(file, Path.Combine(package, Path.GetFileName(file)));
        File.Delete(Path.Combine(package, DefenseCalibration.FileName));
        return package;
    }

    /// <summary>The first <paramref name="count"/> images of a sample IDX set as PNG files in a new folder <paramref name="name"/>.</summary>
    private string Pngs(string name, string idxName, int count)
    {
        var folder = Path.Combine(temp, name);
        Directory.CreateDirectory(folder);
        var idx = RepoPaths.Sample(Path.Combine("fashion-mnist", idxName));
        var set = IdxDataset.Load(idx, IdxDataset.LabelsBeside(idx));
        for (var i = 0; i < count; i++)
        {
            var image = set.Image(i);
            File.WriteAllBytes(Path.Combine(folder, $"{i:D3}.png"), TestImages.PngFromTensor(image.Data, image.Channels, image.Height, image.Width));
        }

        return folder;
    }

    [Fact]
    public void Defense_flags_writes_each_image_and_its_mirror_as_bitmasks_and_exits_0()
    {
        // Images 2 and 3 are images 0 and 1 mirrored, so what the verb writes as the mirror of one must be what it
        // writes for the other: the mirroring and the file layout are checked against pixels mirrored here. Image 0
        // has an 8x8 checkerboard drawn on it (pixels 2-9 of rows and columns), so that it has tokens to flag.
        var idx = RepoPaths.Sample(Path.Combine("fashion-mnist", "test-1000-images-idx3-ubyte.gz"));
        var set = IdxDataset.Load(idx, IdxDataset.LabelsBeside(idx));
        var marked = Slice(set, 0);
        for (var p = 0; p < 28 * 28; p++)
        {
            int y = p / 28, x = p % 28;
            if (y is >= 2 and < 10 && x is >= 2 and < 10) marked[p] = ((x + y) & 1) == 0 ? (byte)255 : (byte)0;
        }

        var images = new List<byte[]> { marked, Slice(set, 1) };
        images.AddRange(images.Select(image => Enumerable.Range(0, 28 * 28).Select(p => image[(p / 28 * 28) + 27 - (p % 28)]).ToArray()).ToList());
        var file = Path.Combine(temp, "four-images-idx3-ubyte");
        File.WriteAllBytes(file, [0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0, 28, .. images.SelectMany(b => b)]);
        File.WriteAllBytes(Path.Combine(temp, "four-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 4, set.Labels[0], set.Labels[1], set.Labels[0], set.Labels[1]]);
        var output = Path.Combine(temp, "flags.bin");

        var (exit, stdout, stderr) = CliHarness.Run("defense-flags", RepoPaths.DefaultModel, "--idx", file, "--output", output);

        Assert.True(exit == 0, stderr);
        Assert.StartsWith($"{Path.GetFullPath(output)}: defense flags of 4 images and their mirror images, ", stdout, StringComparison.Ordinal);
        var bytes = File.ReadAllBytes(output);
        Assert.Equal(4 * 2 * 8, bytes.Length);   // 49 tokens: one uint64 per view
        var words = Enumerable.Range(0, 8).Select(i => BitConverter.ToUInt64(bytes, i * 8)).ToArray();
        Assert.Equal(words[0], words[5]);        // image 0 == mirror of image 2
        Assert.Equal(words[1], words[4]);        // mirror of image 0 == image 2
        Assert.Equal(words[2], words[7]);
        Assert.Equal(words[3], words[6]);
        Assert.All(words, w => Assert.Equal(0UL, w >> 49));
        // The bit layout, against the flagged tokens' rows and columns from the defense run here on image 0.
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        using var tokens = new TokenSpaceModel(package, new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance));
        var reference = DefenseCalibration.Load(Path.Combine(package.Directory, DefenseCalibration.FileName), package).Tokens!;
        var report = new TokenPatchDefense(tokens, reference, new DefenseOptions()).Run(marked.Select(b => b / 255f).ToArray(), 1, DefenseMode.Detect, [0])[0].Report;
        Assert.Equal(report.FlaggedTokens.Aggregate(0UL, (bits, f) => bits | (1UL << ((f.Row * 7) + f.Col))), words[0]);
        // The checkerboard is flagged: a 2x2 window or more among tokens 0-2 of rows and columns (of columns 4-6 mirrored).
        Assert.InRange(System.Numerics.BitOperations.PopCount(words[0]), 4, 49);
        Assert.NotEqual(0UL, words[0] & 0b0000111_0000111_0000111UL);
        Assert.NotEqual(0UL, words[1] & 0b1110000_1110000_1110000UL);
        // The default flags nothing unless a token is over its threshold, and then its 2x2 window: never 1 to 3 tokens.
        Assert.All(words, w => Assert.True(System.Numerics.BitOperations.PopCount(w) is 0 or >= 4, $"{System.Numerics.BitOperations.PopCount(w)} tokens flagged"));
    }

    [Fact]
    public void Defense_flags_without_an_output_is_a_usage_error()
    {
        var (exit, _, stderr) = CliHarness.Run("defense-flags", RepoPaths.DefaultModel, "--idx", "x-images-idx3-ubyte");
        Assert.Equal(2, exit);
        Assert.Contains("--output", stderr, StringComparison.Ordinal);
    }

    private static byte[] Slice(IdxDataset set, int index) => set.Pixels.AsSpan(index * 28 * 28, 28 * 28).ToArray();

    /// <summary>pixels [N,1,4,4] -> Flatten -> TopK(3): the values as logits; TopK has no gradient the builder knows.</summary>
    private static ModelProto TopKModel()
    {
        var model = new ModelProto { IrVersion = 8, ProducerName = "strapvit-tests", Graph = new GraphProto { Name = "topk" } };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        model.Graph.Input.Add(Tensor("input", TensorProto.Types.DataType.Float, ["N", 1, 4, 4]));
        var k = new TensorProto { Name = "k", DataType = (int)TensorProto.Types.DataType.Int64 };
        k.Dims.Add(1);
        k.Int64Data.Add(3);
        model.Graph.Initializer.Add(k);
        var flatten = new NodeProto { OpType = "Flatten", Name = "flatten_node", Input = { "input" }, Output = { "flat" } };
        flatten.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        var top = new NodeProto { OpType = "TopK", Name = "top_node", Input = { "flat", "k" }, Output = { "logits", "indices" } };
        model.Graph.Node.Add(flatten);
        model.Graph.Node.Add(top);
        model.Graph.Output.Add(Tensor("logits", TensorProto.Types.DataType.Float, ["N", 3]));
        return model;
    }

    private static ValueInfoProto Tensor(string name, TensorProto.Types.DataType type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d is string p ? new TensorShapeProto.Types.Dimension { DimParam = p } : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d, System.Globalization.CultureInfo.InvariantCulture) });
        }

        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }
}
