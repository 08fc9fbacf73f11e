using System.CommandLine;
using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit calibrate MODEL-DIR --images FOLDER</c>: the defense's clean reference for a package.</summary>
internal sealed class CalibrateCommand : CliVerb
{
    private readonly Argument<string> modelDir = CliOptions.ModelDir("model package folder");
    private readonly Option<string> images = CliOptions.Text("--images", "folder of PNG/JPEG files (decoded like uploads: oriented, converted, resized, [0,1])", helpName: "folder");
    private readonly Option<string> idx = CliOptions.Text("--idx", "or a gzipped IDX image file (MNIST layout), e.g. samples/fashion-mnist/calib-500-images-idx3-ubyte.gz", helpName: "images-idx3-ubyte[.gz]");
    private readonly Option<string> output = CliOptions.Text("--output", "where to write; default: beside the package if writable, else the cache folder", helpName: "file");
    private readonly Option<string> cache = CliOptions.Text("--cache", "cache folder (default: Model:CacheDirectory's default, ~/.cache/strapvit)", helpName: "folder");
    private readonly Option<double> temperature = CliOptions.Number("--temperature", 1.0, 1e-3, 1e3, "softmax temperature T");
    private readonly Option<double> quantile = CliOptions.Number("--quantile", 0.99, 0.5, 1.0, "clean-score quantile used as threshold");
    private readonly Option<int> bins = CliOptions.Number("--bins", 16, 2, 256, "pixel histogram bins");
    private readonly BankOptions bankOptions = new();
    private readonly Option<string> checkIdx = CliOptions.Text("--check-idx", "other clean images (gzipped IDX, not the calibration ones) on which the masking check's margin is set for --check-rate", helpName: "images-idx3-ubyte[.gz]");
    private readonly Option<string> checkImages = CliOptions.Text("--check-images", "or a folder of them (PNG/JPEG)", helpName: "folder");
    private readonly Option<double> checkRate = CliOptions.Number("--check-rate", 0.01, 0, 0.99, "share of those clean answers the masking check (the service's default) may replace");

    public CalibrateCommand()
        : base("calibrate", """
            Compute the patch defense's clean reference for a model package from clean images (--images or --idx).

            Embeds every clean image and stores, per token position, the mean channel distribution softmax(z/T), the
            mean token, the mean token norm and the q-quantile of clean Jensen-Shannon scores (the threshold), plus the
            same per-patch statistics of pixel histograms for the pixel-space variant.

            Exit codes: 0 written; 1 bad package or images; 2 bad arguments.
            """)
    {
        Arguments.Add(modelDir);
        Option[] options = [images, idx, output, cache, temperature, quantile, bins, .. bankOptions.All, checkIdx, checkImages, checkRate];
        foreach (var option in options) Options.Add(option);
        Validators.Add(result =>
        {
            if ((result.GetResult(images) is null) == (result.GetResult(idx) is null)) result.AddError("give exactly one of --images or --idx");
            if (result.GetResult(checkImages) is not null && result.GetResult(checkIdx) is not null) result.AddError("give at most one of --check-images or --check-idx");
        });
    }

    protected override int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr)
    {
        var folder = parseResult.GetValue(images);
        var idx = parseResult.GetValue(this.idx);
        var output = parseResult.GetValue(this.output);
        var cache = parseResult.GetValue(this.cache);
        var temperature = parseResult.GetValue(this.temperature);
        var quantile = parseResult.GetValue(this.quantile);
        var bins = parseResult.GetValue(this.bins);
        var bank = bankOptions.Read(parseResult);

        try
        {
            var package = ModelPackage.Load(parseResult.GetRequiredValue(modelDir));
            var input = package.Manifest.Input;
            var images = idx is not null ? LoadIdx(idx, input) : LoadFolder(folder!, input);
            using var runtime = CliRuntime.Load(package, new ModelRuntimeOptions
            {
                Inference = new InferenceOptions { Device = InferenceDevice.Cpu },
                CacheDirectory = cache,
                TokenSplit = true,
            }, gradients: false);
            if (package.Manifest.Tokens is not null && runtime.TokenModel is null)
            {
                throw new ModelPackageException("model.json names a tokens tensor but the model cannot be split there (see the warning above).");
            }

            var calibration = DefenseCalibration.Compute(package, runtime.TokenModel, images, temperature, bins, quantile, bank);
            var checkPath = parseResult.GetValue(checkIdx) ?? parseResult.GetValue(checkImages);
            if (checkPath is not null && runtime.TokenModel is { } tokenModel && calibration.Tokens is { Bank: not null } tokenReference)
            {
                var clean = parseResult.GetValue(checkIdx) is not null ? LoadIdx(checkPath, input) : LoadFolder(checkPath, input);
                if (clean.Count == 0) throw new IOException($"no PNG or JPEG images in '{checkPath}'");
                calibration = calibration with { Check = CalibrateCheck(tokenModel, tokenReference, clean, parseResult.GetValue(checkRate)) };
                var bound = CheckMargin.UpperBound(calibration.Check.Replaced, clean.Count);
                stdout.WriteLine($"masking check: margin {calibration.Check.Margin:F3}, {calibration.Check.Replaced} of {clean.Count} clean answers replaced (at most {calibration.Check.CleanRate:P1}; 95% upper bound on the rate {bound:P1})");
                if (bound > 2 * Math.Max(calibration.Check.CleanRate, 1.0 / clean.Count))
                {
                    stderr.WriteLine($"strapvit calibrate: {clean.Count} clean images bound the check's replacement rate only by {bound:P1}; count it on more (--check-idx) to know it better");
                }
            }
            else if (checkPath is not null)
            {
                stderr.WriteLine("strapvit calibrate: no token defense on this model, so no masking check to set a margin for; --check-* ignored");
            }

            var path = output ?? Destination(package, cache);
            calibration.Save(path);
            stdout.WriteLine($"{Path.GetFullPath(path)}: defense calibration of {package.Manifest.Name} from {images.Count} images "
                + $"(token reference: {(calibration.Tokens is null ? "none, no tokens tensor" : $"{calibration.Tokens.TokenCount}x{calibration.Tokens.Dim}, T={temperature}, bank {calibration.Tokens.Bank?.Count} tokens, k={bank.Neighbors}, clean images flagged {calibration.Tokens.BankFalsePositiveRate:P1}{Fresh(calibration.Tokens, bank)}")}; quantile {quantile})");
            return ExitCodes.Ok;
        }
        catch (Exception ex) when (ex is ModelPackageException or ImageRejectedException or IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            stderr.WriteLine($"strapvit calibrate: {ex.Message.Split('\n')[0]}");
            return ExitCodes.Failed;
        }
    }

    /// <summary>The service's default masking check with the margin <see cref="CheckMargin"/> finds for <paramref name="rate"/> on <paramref name="clean"/>.</summary>
    private static CheckCalibration CalibrateCheck(TokenSpaceModel model, TokenReference reference, List<ImageTensor> clean, double rate)
    {
        var defaults = new DefenseOptions();
        // Only the answers the check replaces are counted, so the images need no labels.
        var set = new EvaluationSet(clean.SelectMany(image => image.Data).ToArray(), new int[clean.Count], clean[0].Size);
        var (margin, replaced) = CheckMargin.Calibrate(model, reference, defaults, set, rate);
        return new CheckCalibration(margin, rate, clean.Count, replaced, CheckScope.Of(defaults));
    }

    private static string Destination(ModelPackage package, string? cache)
    {
        var beside = Path.Combine(package.Directory, DefenseCalibration.FileName);
        try
        {
            using (File.Open(beside, FileMode.OpenOrCreate, FileAccess.Write))
            {
            }

            return beside;
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
        {
            return Path.Combine(ModelCache.Resolve(cache), DefenseCalibration.CacheFileName(package));
        }
    }

    private static List<ImageTensor> LoadIdx(string path, ModelInputSpec input)
    {
        var labels = IdxDataset.LabelsBeside(path);
        var set = IdxDataset.Load(path, File.Exists(labels) ? labels : throw new IOException($"no label file '{labels}' next to '{path}'"));
        if (set.Rows != input.Height || set.Cols != input.Width || input.Channels != 1)
        {
            throw new InvalidDataException($"IDX images are 1x{set.Rows}x{set.Cols}; the model takes {input.Channels}x{input.Height}x{input.Width}. Use --images with a folder instead.");
        }

        return Enumerable.Range(0, set.Count).Select(set.Image).ToList();
    }

    private static List<ImageTensor> LoadFolder(string folder, ModelInputSpec input)
    {
        var decoder = new ImageDecoder(new ImageLimits());
        var files = Directory.EnumerateFiles(folder)
            .Where(f => Path.GetExtension(f).ToLowerInvariant() is ".png" or ".jpg" or ".jpeg")
            .Order(StringComparer.Ordinal)
            .ToList();
        return files.Select(f => decoder.Decode(File.ReadAllBytes(f), input.Channels, input.Height, input.Width)).ToList();
    }

    /// <summary>With --fpr-folds: the calibration rate chosen and the estimated share of fresh clean images flagged.</summary>
    private static string Fresh(TokenReference tokens, BankSettings bank) => tokens.BankFreshRate is { } fresh
        ? $" for {fresh:P1} of fresh clean images (cross-fitted; calibration rate {tokens.BankNominalRate:P1})"
        : bank.FprFolds > 1 ? $" (fewer than {BankSettings.MinImagesPerFold} images per fold: --fpr applies to the calibration images)" : "";
}
