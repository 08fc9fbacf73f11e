using System.CommandLine;
using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Cli.Commands;

/// <summary>
/// <c>strapvit defense-flags MODEL-DIR --idx FILE --output FILE</c>: the tokens the service's patch defense flags on
/// each image and on its mirror image, for defense-aware training (tools/model/train_fashion_vit.py --defense-flags).
/// </summary>
internal sealed class DefenseFlagsCommand : CliVerb
{
    private readonly Argument<string> modelDir = CliOptions.ModelDir("model package folder (with its defense calibration)");
    private readonly Option<string> idx = CliOptions.Text("--idx", "gzipped IDX image file (MNIST layout), e.g. the training images; its labels file (images-idx3 -> labels-idx1) must lie beside it", required: true, helpName: "images-idx3-ubyte[.gz]");
    private readonly Option<string> output = CliOptions.Text("--output", "file to write", required: true, helpName: "file");
    private readonly Option<string> cache = CliOptions.Text("--cache", "cache folder (default: Model:CacheDirectory's default, ~/.cache/strapvit)", helpName: "folder");

    public DefenseFlagsCommand()
        : base("defense-flags", """
            Write the tokens the patch defense flags on each IDX image and its mirror image, for defense-aware training.

            The defense is the service's: its default options and the package's calibration.

            Output: per image, the image's flags then the mirror image's, each ceil(P/64) little-endian uint64 words of
            a bitmask over the P patch tokens (bit r*cols + c is the token in row r, column c; the mirror image's bits
            are in its own grid).

            Exit codes: 0 written; 1 bad package or images; 2 bad arguments.
            """)
    {
        Arguments.Add(modelDir);
        foreach (var option in new Option[] { idx, output, cache }) Options.Add(option);
    }

    protected override int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            var package = ModelPackage.Load(parseResult.GetRequiredValue(modelDir));
            var path = parseResult.GetRequiredValue(idx);
            var set = IdxDataset.Load(path, IdxDataset.LabelsBeside(path));
            if (set.Count == 0) throw new InvalidDataException($"{path} holds no images.");
            var input = package.Manifest.Input;
            if (set.Rows != input.Height || set.Cols != input.Width || input.Channels != 1)
            {
                throw new InvalidDataException($"IDX images are 1x{set.Rows}x{set.Cols}; the model takes {input.Channels}x{input.Height}x{input.Width}.");
            }

            using var runtime = CliRuntime.Load(package, new ModelRuntimeOptions
            {
                Inference = new InferenceOptions { Device = InferenceDevice.Cpu },
                CacheDirectory = parseResult.GetValue(cache),
                Defense = new DefenseOptions(),
            }, gradients: false);
            var defense = runtime.Defense?.Defense as TokenPatchDefense
                ?? throw new ModelPackageException("the package loads no token defense (no tokens tensor or no calibration)");
            var tokens = runtime.TokenModel!.GridRows * runtime.TokenModel.GridCols;
            var outputPath = parseResult.GetRequiredValue(output);
            var (total, flagged) = Write(defense, set, tokens, outputPath);
            stdout.WriteLine($"{Path.GetFullPath(outputPath)}: defense flags of {total} images and their mirror images, {flagged / (double)total:F2} tokens flagged per image");
            return ExitCodes.Ok;
        }
        catch (Exception ex) when (ex is ModelPackageException or IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException)
        {
            stderr.WriteLine($"strapvit defense-flags: {ex.Message.Split('\n')[0]}");
            return ExitCodes.Failed;
        }
    }

    private static (int Images, long Flagged) Write(TokenPatchDefense defense, IdxDataset set, int tokens, string path)
    {
        const int Batch = 100;
        int rows = set.Rows, cols = set.Cols, size = rows * cols, words = (tokens + 63) / 64;
        using var writer = new BinaryWriter(File.Create(path));
        var flagged = 0L;
        for (var start = 0; start < set.Count; start += Batch)
        {
            var n = Math.Min(Batch, set.Count - start);
            var pixels = new float[n * size];
            var mirror = new float[n * size];
            for (var i = 0; i < n; i++)
            {
                var image = set.Image(start + i).Data;
                image.CopyTo(pixels, i * size);
                for (var r = 0; r < rows; r++)
                {
                    for (var c = 0; c < cols; c++) mirror[(i * size) + (r * cols) + c] = image[(r * cols) + cols - 1 - c];
                }
            }

            var seeds = Enumerable.Range(start, n).ToArray();
            var own = defense.Run(pixels, n, DefenseMode.Detect, seeds);
            var mirrored = defense.Run(mirror, n, DefenseMode.Detect, seeds);
            for (var i = 0; i < n; i++)
            {
                flagged += own[i].Report.FlaggedTokens.Count;
                foreach (var report in new[] { own[i].Report, mirrored[i].Report })
                {
                    var bits = new ulong[words];
                    foreach (var token in report.FlaggedTokens) bits[token.Index / 64] |= 1UL << (token.Index % 64);
                    foreach (var word in bits) writer.Write(word);
                }
            }
        }

        return (set.Count, flagged);
    }
}
