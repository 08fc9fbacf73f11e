namespace StrapVit.Cli.Tests;

/// <summary><c>--help</c> on the root and on each verb.</summary>
public sealed class HelpTests
{
    private static readonly string[] Verbs = ["gradient-graph", "calibrate", "defense-flags", "evaluate", "certify-eval", "attack-eval", "patch-train", "bench-pgd"];

    [Fact]
    public void Root_help_lists_every_verb_with_its_one_line_summary()
    {
        var (exit, stdout, stderr) = CliHarness.Run("--help");
        Assert.Equal(0, exit);
        Assert.Empty(stderr);
        var commands = stdout[stdout.IndexOf("Commands:", StringComparison.Ordinal)..];
        foreach (var verb in Verbs)
        {
            Assert.Contains($"  {verb} <model-dir>", commands, StringComparison.Ordinal);
        }

        // One line per verb: the long texts stay with the verbs' own help.
        Assert.Equal(Verbs.Length, CliHarness.Lines(commands).Count(l => l.StartsWith("  ", StringComparison.Ordinal)));
        Assert.DoesNotContain("Exit codes", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void No_arguments_print_the_verb_list_and_exit_2()
    {
        var (exit, stdout, _) = CliHarness.Run();
        Assert.Equal(2, exit);
        Assert.Contains("gradient-graph <model-dir>", stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gradient-graph", "--output <file.onnx> (REQUIRED)", "the message names the")]
    [InlineData("calibrate", "--temperature <temperature>", "Exit codes: 0 written; 1 bad package or images; 2 bad arguments.")]
    [InlineData("defense-flags", "--output <file> (REQUIRED)", "Exit codes: 0 written; 1 bad package or images; 2 bad arguments.")]
    [InlineData("evaluate", "--sizes <a,b,...>", "--sweep adds the grid")]
    [InlineData("certify-eval", "--masking <auto|drop|replace>", "changed answer is counted as an exception")]
    [InlineData("attack-eval", "--only <a,b,...>", "Exit codes: 0 measured")]
    [InlineData("patch-train", "--target <target> (REQUIRED)", "Exit codes: 0 trained")]
    [InlineData("bench-pgd", "--batch <a,b,...>", "Exit codes: 0 measured; 1 bad package; 2 bad arguments.")]
    public void Verb_help_has_usage_options_and_the_long_text(string verb, string option, string detail)
    {
        foreach (var flag in new[] { "--help", "-h" })
        {
            // Help wins over what else is wrong on the line (here: no <model-dir>, a required option missing).
            var (exit, stdout, stderr) = CliHarness.Run(verb, flag);
            Assert.Equal(0, exit);
            Assert.Empty(stderr);
            Assert.Contains($" {verb} <model-dir> [options]", stdout, StringComparison.Ordinal);
            Assert.Contains(option, stdout, StringComparison.Ordinal);
            Assert.True(stdout.IndexOf("Options:", StringComparison.Ordinal) < stdout.IndexOf("Details:", StringComparison.Ordinal));
            Assert.Contains(detail, stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Defaults_show_in_the_help()
    {
        var (_, stdout, _) = CliHarness.Run("calibrate", "--help");
        Assert.Contains("softmax temperature T [default: 1]", stdout, StringComparison.Ordinal);
        Assert.Contains("pixel histogram bins [default: 16]", stdout, StringComparison.Ordinal);
        var (_, evaluate, _) = CliHarness.Run("evaluate", "--help");
        Assert.Contains("per-image patch sides in pixels (default 4,6,8)", evaluate, StringComparison.Ordinal);
        Assert.Contains("neutralisations of the sweep (default transform,mean,bank)", evaluate, StringComparison.Ordinal);
        var (_, graph, _) = CliHarness.Run("gradient-graph", "--help");
        Assert.Contains("[default: cross-entropy]", graph, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("[suggest:12]", "strapvit cal", new[] { "calibrate" })]
    [InlineData("[suggest:36]", "strapvit gradient-graph --objective ", new[] { "cross-entropy", "vjp" })]
    [InlineData("[suggest:34]", "strapvit certify-eval m --masking ", new[] { "auto", "drop", "replace" })]
    public void The_suggest_directive_completes_verbs_and_fixed_values(string directive, string line, string[] expected)
    {
        var (exit, stdout, _) = CliHarness.Run(directive, line);
        Assert.Equal(0, exit);
        Assert.Equal(expected, CliHarness.Lines(stdout).Select(l => l.Trim()));
    }
}
