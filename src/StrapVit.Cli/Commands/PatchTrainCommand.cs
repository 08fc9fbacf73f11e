using StrapVit.Core.Attacks;
using StrapVit.Core.Attacks.Universal;
using StrapVit.Core.Imaging;
using StrapVit.Core.Models;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit patch-train MODEL-DIR --target K --images IDX --labels IDX --output patch.png</c>: a universal patch offline.</summary>
internal sealed class PatchTrainCommand : ICliCommand
{
    public string Name => "patch-train";

    public string Summary => "Train a universal adversarial patch (Brown et al.) and report its held-out success.";

    public string Usage => """
        Usage: strapvit patch-train <model-dir> --target <class> --images <idx3.gz> --labels <idx1.gz> --output <patch.png>
                                    [--holdout-images <idx3.gz> --holdout-labels <idx1.gz>] [--holdout-count 500]
                                    [--patch-size 6] [--steps 500] [--batch 32] [--step-size 0.05] [--max-rotation 22.5]
                                    [--min-scale 0.8] [--max-scale 1] [--seed 0] [--threads 2] [--cache <folder>]

        Trains one square patch over the training images (those not of the target class) with a random place,
        rotation and scale per image and step (Adam on the targeted cross-entropy), writes it as a PNG, and reports
        the share of held-out images (not of the target class, clean prediction not the target) that the patch,
        pasted under random poses of the same range, turns into the target.

        Exit codes: 0 trained; 1 bad package or images; 2 bad arguments.
        """;

    public int Run(CliArguments args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Positionals.Count != 1) throw new CliUsageException("expected exactly one <model-dir>");
        var target = (int)CliNumbers.Double(args, "target", -1, 0, 100000);
        if (target < 0) throw new CliUsageException("missing --target");
        var images = args.RequiredOption("images");
        var labels = args.RequiredOption("labels");
        var output = args.RequiredOption("output");
        var holdImages = args.Option("holdout-images");
        var holdLabels = args.Option("holdout-labels");
        if ((holdImages is null) != (holdLabels is null)) throw new CliUsageException("give both --holdout-images and --holdout-labels, or neither");
        var holdCount = (int)CliNumbers.Double(args, "holdout-count", 500, 1, 1e6);
        var settings = new UniversalPatchSettings(
            (int)CliNumbers.Double(args, "patch-size", 6, 1, 4096), target,
            (int)CliNumbers.Double(args, "steps", 500, 1, 1e6), (int)CliNumbers.Double(args, "batch", 32, 1, 4096),
            (float)CliNumbers.Double(args, "step-size", 0.05, 1e-6, 10), (float)CliNumbers.Double(args, "max-rotation", 22.5, 0, 180),
            (float)CliNumbers.Double(args, "min-scale", 0.8, 0.01, 1), (float)CliNumbers.Double(args, "max-scale", 1, 0.01, 1));
        var seed = (int)CliNumbers.Double(args, "seed", 0, 0, int.MaxValue);
        var threads = (int)CliNumbers.Double(args, "threads", 2, 0, 256);
        var cache = args.Option("cache");
        args.RejectUnknownOptions();

        try
        {
            using var cli = new AttackCli(args.Positionals[0], threads, cache);
            var train = cli.LoadIdx(images, labels, int.MaxValue);
            var data = train.Without(target);

            var trainer = new UniversalPatchTrainer(settings);
            var lastShown = 0;
            var result = trainer.Train(cli.Model, data.Pixels, data.Count, seed, new Inline(p =>
            {
                if (p.Step == p.TotalSteps || p.Step - lastShown >= Math.Max(1, p.TotalSteps / 10))
                {
                    lastShown = p.Step;
                    stdout.WriteLine($"step {p.Step}/{p.TotalSteps}: batch success {p.SuccessRate:P1}, {p.Elapsed.TotalSeconds:F1} s, about {p.Remaining?.TotalSeconds ?? 0:F0} s left");
                }
            }));
            File.WriteAllBytes(output, PngEncoding.Encode(new ImageTensor(result.Patch, result.Channels, result.Size, result.Size)));
            var held = holdImages is null ? train : cli.LoadIdx(holdImages, holdLabels!, holdCount);
            var evaluation = trainer.Evaluate(cli.Model, result.Patch, held.Pixels, held.Count, held.Labels, seed + 1);
            stdout.WriteLine($"{Path.GetFullPath(output)}: {settings.PatchSize}x{settings.PatchSize} patch toward class {target} "
                + $"({cli.Package.Manifest.Labels[target]}), {settings.Steps} steps in {result.Elapsed.TotalSeconds:F1} s; "
                + $"{(holdImages is null ? "training" : "held-out")} success {evaluation.SuccessRate:P1} of {evaluation.Evaluated} images");
            return ExitCodes.Ok;
        }
        catch (Exception ex) when (ex is ModelPackageException or AttackParameterException or Core.Gradients.GradientGraphException or IOException or InvalidDataException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"strapvit patch-train: {ex.Message.Split('\n')[0]}");
            return ExitCodes.Failed;
        }
    }

    private sealed class Inline(Action<UniversalPatchProgress> report) : IProgress<UniversalPatchProgress>
    {
        public void Report(UniversalPatchProgress value) => report(value);
    }
}
