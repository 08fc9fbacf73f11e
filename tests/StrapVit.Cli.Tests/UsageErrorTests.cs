namespace StrapVit.Cli.Tests;

/// <summary>A wrong command line exits 2 with one line on stderr naming the verb and what is wrong, and runs nothing.</summary>
public sealed class UsageErrorTests
{
    [Theory]
    [InlineData(new[] { "frobnicate" }, "strapvit: ", "'frobnicate'")]
    [InlineData(new[] { "gradient-graph", "m" }, "strapvit gradient-graph: ", "Option '--output' is required")]
    [InlineData(new[] { "gradient-graph", "--output", "x.onnx" }, "strapvit gradient-graph: ", "Required argument missing")]
    [InlineData(new[] { "gradient-graph", "m", "--output", "x.onnx", "--objective", "hinge" }, "strapvit gradient-graph: ", "--objective must be cross-entropy or vjp, not 'hinge'")]
    [InlineData(new[] { "gradient-graph", "m", "extra", "--output", "x.onnx" }, "strapvit gradient-graph: ", "'extra'")]
    [InlineData(new[] { "calibrate", "m", "--images", "a", "--bnis", "8" }, "strapvit calibrate: ", "'--bnis'")]
    [InlineData(new[] { "calibrate", "m" }, "strapvit calibrate: ", "give exactly one of --images or --idx")]
    [InlineData(new[] { "calibrate", "m", "--images", "a", "--idx", "b" }, "strapvit calibrate: ", "give exactly one of --images or --idx")]
    [InlineData(new[] { "calibrate", "m", "--images", "a", "--images", "b" }, "strapvit calibrate: ", "--images")]
    [InlineData(new[] { "calibrate", "m", "--images", "a", "--bins", "1" }, "strapvit calibrate: ", "--bins must be an integer in [2, 256], not '1'")]
    [InlineData(new[] { "calibrate", "m", "--images", "a", "--bins", "16.5" }, "strapvit calibrate: ", "--bins must be an integer in [2, 256], not '16.5'")]
    [InlineData(new[] { "calibrate", "m", "--images", "a", "--quantile", "0,9" }, "strapvit calibrate: ", "--quantile must be a number in [0.5, 1], not '0,9'")]
    [InlineData(new[] { "calibrate", "m", "--images" }, "strapvit calibrate: ", "--images")]
    [InlineData(new[] { "evaluate", "m", "--images", "a", "--calib", "b", "--sizes", "4,six" }, "strapvit evaluate: ", "--sizes must be a comma-separated list of integers in [1, 4096], not '4,six'")]
    [InlineData(new[] { "evaluate", "m", "--images", "a", "--calib", "b", "--split", "test" }, "strapvit evaluate: ", "'test'")]
    [InlineData(new[] { "evaluate", "m", "--images", "a", "--calib", "b", "--sweep-neutralize", "mean,blur" }, "strapvit evaluate: ", "--sweep-neutralize must be a comma-separated list of names among")]
    [InlineData(new[] { "certify-eval", "m", "--images", "a", "--soundness", "maybe" }, "strapvit certify-eval: ", "'maybe'")]
    [InlineData(new[] { "certify-eval", "m", "--images", "a", "--strides", "0" }, "strapvit certify-eval: ", "--strides must be a comma-separated list of integers in [1, 4096], not '0'")]
    [InlineData(new[] { "certify-eval", "m", "--images", "a", "--robust-placements", "0" }, "strapvit certify-eval: ", "--robust-placements must be an integer in [1, 1000], not '0'")]
    [InlineData(new[] { "attack-eval", "m", "--images", "a", "--labels", "b" }, "strapvit attack-eval: ", "the universal patch needs --train-images and --train-labels")]
    [InlineData(new[] { "patch-train", "m", "--images", "a", "--labels", "b", "--output", "p.png" }, "strapvit patch-train: ", "Option '--target' is required")]
    [InlineData(new[] { "patch-train", "m", "--target", "1", "--images", "a", "--labels", "b", "--output", "p.png", "--holdout-images", "h" }, "strapvit patch-train: ", "give both --holdout-images and --holdout-labels, or neither")]
    [InlineData(new[] { "bench-pgd", "m", "--batch", "1,0" }, "strapvit bench-pgd: ", "--batch must be a comma-separated list of integers in [1, 4096], not '1,0'")]
    public void Exit_2_with_one_line(string[] args, string prefix, string reason)
    {
        var (exit, stdout, stderr) = CliHarness.Run(args);
        Assert.Equal(2, exit);
        Assert.Empty(stdout);
        var line = Assert.Single(CliHarness.Lines(stderr));
        Assert.StartsWith(prefix, line, StringComparison.Ordinal);
        Assert.Contains(reason, line, StringComparison.Ordinal);
        Assert.EndsWith($"(see '{prefix.TrimEnd(' ', ':')} --help')", line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gradient-graph", "--output", "g.onnx")]
    [InlineData("evaluate", "--images", "a", "--calib", "b")]
    [InlineData("certify-eval", "--images", "a")]
    public void A_missing_package_is_a_failed_run_not_a_usage_error(string verb, params string[] options)
    {
        var missing = Path.Combine(Path.GetTempPath(), $"strapvit-no-package-{Guid.NewGuid():N}");
        var (exit, _, stderr) = CliHarness.Run([verb, missing, .. options]);
        Assert.Equal(1, exit);
        var line = Assert.Single(CliHarness.Lines(stderr));
        Assert.Equal($"strapvit {verb}: Model package directory '{missing}' does not exist.", line);
    }
}
