using System.CommandLine;
using StrapVit.Core.Attacks;
using StrapVit.Core.Attacks.Universal;
using StrapVit.Core.Imaging;
using StrapVit.Core.Models;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit patch-train MODEL-DIR --target K --images IDX --labels IDX --output patch.png</c>: a universal patch offline.</summary>
internal sealed class PatchTrainCommand : CliVerb
{
    private readonly Argument<string> modelDir = CliOptions.ModelDir();
    private readonly Option<int> target = CliOptions.RequiredNumber("--target", 0, 100_000, "class the patch turns images into");
    private readonly Option<string> images = CliOptions.Text("--images", "gzipped IDX training images", required: true, helpName: "idx3.gz");
    private readonly Option<string> labels = CliOptions.Text("--labels", "their gzipped IDX labels", required: true, helpName: "idx1.gz");
    private readonly Option<string> output = CliOptions.Text("--output", "where to write the patch", required: true, helpName: "patch.png");
    private readonly Option<string> holdoutImages = CliOptions.Text("--holdout-images", "held-out images for the reported success (default: the training images)", helpName: "idx3.gz");
    private readonly Option<string> holdoutLabels = CliOptions.Text("--holdout-labels", "their labels", helpName: "idx1.gz");
    private readonly Option<int> holdoutCount = CliOptions.Number("--holdout-count", 500, 1, 1_000_000, "held-out images used (the first ones)");
    private readonly Option<int> patchSize = CliOptions.Number("--patch-size", 6, 1, 4096, "patch side in pixels");
    private readonly Option<int> steps = CliOptions.Number("--steps", 500, 1, 1_000_000, "Adam steps");
    private readonly Option<int> batch = CliOptions.Number("--batch", 32, 1, 4096, "images per step");
    private readonly Option<float> stepSize = CliOptions.Number("--step-size", 0.05f, 1e-6f, 10f, "Adam step size");
    private readonly Option<float> maxRotation = CliOptions.Number("--max-rotation", 22.5f, 0f, 180f, "largest random rotation in degrees");
    private readonly Option<float> minScale = CliOptions.Number("--min-scale", 0.8f, 0.01f, 1f, "smallest random scale");
    private readonly Option<float> maxScale = CliOptions.Number("--max-scale", 1f, 0.01f, 1f, "largest random scale");
    private readonly Option<int> seed = CliOptions.Number("--seed", 0, 0, int.MaxValue, "random seed");
    private readonly Option<int> threads = CliOptions.Number("--threads", 2, 0, 256, "ONNX Runtime intra-op threads (0: its default)");
    private readonly Option<string> cache = CliOptions.Text("--cache", "cache folder for the gradient graph", helpName: "folder");

    public PatchTrainCommand()
        : base("patch-train", """
            Train a universal adversarial patch (Brown et al.) and report its held-out success.

            Trains one square patch over the training images (those not of the target class) with a random place,
            rotation and scale per image and step (Adam on the targeted cross-entropy), writes it as a PNG, and reports
            the share of held-out images (not of the target class, clean prediction not the target) that the patch,
            pasted under random poses of the same range, turns into the target.

            Exit codes: 0 trained; 1 bad package or images; 2 bad arguments.
            """)
    {
        Arguments.Add(modelDir);
        Option[] options = [target, images, labels, output, holdoutImages, holdoutLabels, holdoutCount, patchSize, steps, batch, stepSize, maxRotation, minScale, maxScale, seed, threads, cache];
        foreach (var option in options) Options.Add(option);
        Validators.Add(result =>
        {
            if ((result.GetResult(holdoutImages) is null) != (result.GetResult(holdoutLabels) is null))
            {
                result.AddError("give both --holdout-images and --holdout-labels, or neither");
            }
        });
    }

    protected override int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr)
    {
        var target = parseResult.GetValue(this.target);
        var images = parseResult.GetRequiredValue(this.images);
        var labels = parseResult.GetRequiredValue(this.labels);
        var output = parseResult.GetRequiredValue(this.output);
        var holdImages = parseResult.GetValue(holdoutImages);
        var holdLabels = parseResult.GetValue(holdoutLabels);
        var holdCount = parseResult.GetValue(holdoutCount);
        var settings = new UniversalPatchSettings(
            parseResult.GetValue(patchSize), target, parseResult.GetValue(steps), parseResult.GetValue(batch),
            parseResult.GetValue(stepSize), parseResult.GetValue(maxRotation), parseResult.GetValue(minScale), parseResult.GetValue(maxScale));
        var seed = parseResult.GetValue(this.seed);
        var threads = parseResult.GetValue(this.threads);
        var cache = parseResult.GetValue(this.cache);

        try
        {
            using var cli = new AttackCli(parseResult.GetRequiredValue(modelDir), threads, cache);
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
