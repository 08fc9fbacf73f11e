using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit calibrate MODEL-DIR --images FOLDER</c>: the defense's clean reference for a package.</summary>
internal sealed class CalibrateCommand : ICliCommand
{
    public string Name => "calibrate";

    public string Summary => "Compute the patch defense's clean reference for a model package from clean images.";

    public string Usage => """
        Usage: strapvit calibrate <model-dir> (--images <folder> | --idx <images-idx3-ubyte[.gz]>)
                                  [--output <file>] [--cache <folder>] [--temperature 1.0] [--quantile 0.99] [--bins 16]

        Embeds every clean image and stores, per token position, the mean channel distribution softmax(z/T), the
        mean token, the mean token norm and the q-quantile of clean Jensen-Shannon scores (the threshold), plus the
        same per-patch statistics of pixel histograms for the pixel-space variant.

          <model-dir>     model package folder
          --images        folder of PNG/JPEG files (decoded like uploads: oriented, converted, resized, [0,1])
          --idx           or a gzipped IDX image file (MNIST layout), e.g. samples/fashion-mnist/calib-500-images-idx3-ubyte.gz
          --output        where to write; default: beside the package if writable, else the cache folder
          --cache         cache folder (default: Model:CacheDirectory's default, ~/.cache/strapvit)
          --temperature   softmax temperature T (default 1.0)
          --quantile      clean-score quantile used as threshold (default 0.99)
          --bins          pixel histogram bins (default 16)
          --bank-size     clean tokens kept in the bank by greedy coreset subsampling (default 1024)
          --neighbors     k of the bank's nearest-neighbour score (default 3)
          --fpr           share of clean images allowed a token over its bank threshold (default 0.2)

        Exit codes: 0 written; 1 bad package or images; 2 bad arguments.
        """;

    public int Run(CliArguments args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Positionals.Count != 1) throw new CliUsageException("expected exactly one <model-dir>");
        var folder = args.Option("images");
        var idx = args.Option("idx");
        if ((folder is null) == (idx is null)) throw new CliUsageException("give exactly one of --images or --idx");
        var output = args.Option("output");
        var cache = args.Option("cache");
        var temperature = CliNumbers.Double(args, "temperature", 1.0, 1e-3, 1e3);
        var quantile = CliNumbers.Double(args, "quantile", 0.99, 0.5, 1.0);
        var bins = (int)CliNumbers.Double(args, "bins", 16, 2, 256);
        var defaults = new BankSettings();
        var bank = new BankSettings(
            Size: (int)CliNumbers.Double(args, "bank-size", defaults.Size, 16, 1_000_000),
            Neighbors: (int)CliNumbers.Double(args, "neighbors", defaults.Neighbors, 1, 64),
            FalsePositiveRate: CliNumbers.Double(args, "fpr", defaults.FalsePositiveRate, 0, 1));
        args.RejectUnknownOptions();

        try
        {
            var package = ModelPackage.Load(args.Positionals[0]);
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

            var path = output ?? Destination(package, cache);
            calibration.Save(path);
            stdout.WriteLine($"{Path.GetFullPath(path)}: defense calibration of {package.Manifest.Name} from {images.Count} images "
                + $"(token reference: {(calibration.Tokens is null ? "none, no tokens tensor" : $"{calibration.Tokens.TokenCount}x{calibration.Tokens.Dim}, T={temperature}, bank {calibration.Tokens.Bank?.Count} tokens, k={bank.Neighbors}, clean images flagged {calibration.Tokens.BankFalsePositiveRate:P1}")}; quantile {quantile})");
            return ExitCodes.Ok;
        }
        catch (Exception ex) when (ex is ModelPackageException or ImageRejectedException or IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException)
        {
            stderr.WriteLine($"strapvit calibrate: {ex.Message.Split('\n')[0]}");
            return ExitCodes.Failed;
        }
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
}

/// <summary>Numeric options with a range check.</summary>
internal static class CliNumbers
{
    public static double Double(CliArguments args, string name, double fallback, double min, double max)
    {
        var text = args.Option(name);
        if (text is null) return fallback;
        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) || v < min || v > max)
        {
            throw new CliUsageException($"--{name} must be a number in [{min}, {max}], not '{text}'");
        }

        return v;
    }
}
