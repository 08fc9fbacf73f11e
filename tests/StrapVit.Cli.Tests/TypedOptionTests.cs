using System.Globalization;
using StrapVit.Core.Defense;

namespace StrapVit.Cli.Tests;

/// <summary>Options arrive typed: numbers with the invariant culture whatever the machine's, lists from comma syntax.</summary>
public sealed class TypedOptionTests
{
    [Fact]
    public void Numbers_and_defaults_are_typed()
    {
        var result = CliHarness.Parse("calibrate", "m", "--images", "a", "--temperature", "0.5", "--quantile=0.95", "--bins", "32");
        Assert.Empty(result.Errors);
        Assert.Equal(0.5, result.GetValue<double>("--temperature"));
        Assert.Equal(0.95, result.GetValue<double>("--quantile"));
        Assert.Equal(32, result.GetValue<int>("--bins"));
        Assert.Null(result.GetResult("--bank-size"));
        Assert.Null(new BankSettings().Size);
        Assert.Equal("pooled", result.GetValue<string>("--bank-layout"));
        Assert.Equal("per-position", CliHarness.Parse("calibrate", "m", "--images", "a", "--bank-layout", "per-position").GetValue<string>("--bank-layout"));
        Assert.NotEmpty(CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--bank-layout", "per-token").Errors);
        Assert.Equal(new BankSettings().FalsePositiveRate, result.GetValue<double>("--fpr"));
        Assert.Equal(0, result.GetValue<int>("--fpr-folds"));
        Assert.Equal(5, CliHarness.Parse("calibrate", "m", "--images", "a", "--fpr-folds", "5").GetValue<int>("--fpr-folds"));
        Assert.Contains(CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--fpr-folds", "1").Errors, e => e.Message.Contains("--fpr-folds must be 0 or at least 2"));
        Assert.Equal("a", result.GetValue<string>("--images"));
        Assert.Null(result.GetValue<string>("--idx"));
    }

    [Fact]
    public void Numbers_use_the_invariant_culture_on_a_comma_decimal_machine()
    {
        var before = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("de-DE");
        try
        {
            var result = CliHarness.Parse("patch-train", "m", "--target", "3", "--images", "a", "--labels", "b", "--output", "p.png", "--step-size", "2.5e-2", "--max-rotation", "10.5");
            Assert.Empty(result.Errors);
            Assert.Equal(0.025f, result.GetValue<float>("--step-size"));
            Assert.Equal(10.5f, result.GetValue<float>("--max-rotation"));
            Assert.Equal(3, result.GetValue<int>("--target"));
            Assert.Equal(0.8f, result.GetValue<float>("--min-scale"));

            var comma = CliHarness.Parse("calibrate", "m", "--images", "a", "--temperature", "0,5");
            Assert.Contains("--temperature must be a number in [0.001, 1000], not '0,5'", Assert.Single(comma.Errors).Message, StringComparison.Ordinal);
        }
        finally
        {
            CultureInfo.CurrentCulture = before;
        }
    }

    [Fact]
    public void Enums_and_words_are_typed()
    {
        var result = CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--score", "jsd", "--neutralize", "MEAN", "--split", "tune", "--sweep", "true");
        Assert.Empty(result.Errors);
        Assert.Equal(TokenScore.Jsd, result.GetValue<TokenScore>("--score"));
        Assert.Equal(Neutralization.Mean, result.GetValue<Neutralization>("--neutralize"));
        Assert.Equal("tune", result.GetValue<string>("--split"));
        Assert.True(result.GetValue<bool>("--sweep"));

        var defaults = CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b");
        Assert.Equal(new DefenseOptions().Score, defaults.GetValue<TokenScore>("--score"));
        Assert.Equal(new DefenseOptions().MinTokens, defaults.GetValue<int>("--k"));
        Assert.Equal("report", defaults.GetValue<string>("--split"));
        Assert.False(defaults.GetValue<bool>("--sweep"));
        Assert.True(defaults.GetValue<bool>("--ablation"));
        Assert.False(CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--ablation", "false").GetValue<bool>("--ablation"));

        var certify = CliHarness.Parse("certify-eval", "m", "--images", "a", "--soundness", "false", "--masking", "replace");
        Assert.Empty(certify.Errors);
        Assert.False(certify.GetValue<bool>("--soundness"));
        Assert.Equal("replace", certify.GetValue<string>("--masking"));
        Assert.True(CliHarness.Parse("certify-eval", "m", "--images", "a").GetValue<bool>("--soundness"));
        // Certify mode under attack is off unless asked for; its defaults are CertifySettings'.
        var robust = CliHarness.Parse("certify-eval", "m", "--images", "a");
        var settings = new StrapVit.Core.Evaluation.CertifySettings();
        Assert.Equal((settings.RobustCount, settings.RobustPlacements, settings.RobustSteps),
            (robust.GetValue<int>("--robust-count"), robust.GetValue<int>("--robust-placements"), robust.GetValue<int>("--robust-steps")));
        Assert.Equal(0, settings.RobustCount);
        // Plain patches are off unless asked for; their steps are evaluate's, so that the two share a patch cache.
        Assert.Empty(CliHarness.List<int>(robust, "--plain-patches"));
        Assert.Equal(settings.PlainPatchSteps, robust.GetValue<int>("--plain-patch-steps"));
        Assert.Equal(CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b").GetValue<int>("--steps"), settings.PlainPatchSteps);
        Assert.Equal([4, 6], CliHarness.List<int>(CliHarness.Parse("certify-eval", "m", "--images", "a", "--plain-patches", "4,6"), "--plain-patches"));
    }

    [Fact]
    public void Comma_lists_parse_each_item()
    {
        // The commands of docs/EVALUATION.md.
        var result = CliHarness.Parse(
            "evaluate", "m", "--images", "a", "--calib", "b", "--sizes", "4,6", "--sweep-scores", "knn", "--sweep-windows", "6",
            "--sweep-k", "1, 2", "--sweep-neutralize", "hybrid,hybriddrop,drop", "--evasion", "0,0.5,10");
        Assert.Empty(result.Errors);
        Assert.Equal([4, 6], CliHarness.List<int>(result, "--sizes"));
        Assert.Equal([TokenScore.Knn], CliHarness.List<TokenScore>(result, "--sweep-scores"));
        Assert.Equal([6], CliHarness.List<int>(result, "--sweep-windows"));
        Assert.Equal([1, 2], CliHarness.List<int>(result, "--sweep-k"));
        Assert.Equal([Neutralization.Hybrid, Neutralization.HybridDrop, Neutralization.Drop], CliHarness.List<Neutralization>(result, "--sweep-neutralize"));
        Assert.Equal([0, 0.5, 10], CliHarness.List<double>(result, "--evasion"));
        var margins = CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--verify-calib", "c", "--verify-clean-rate", "0.01",
            "--sweep-verify-clean-rate", "0,0.01,0.005");
        Assert.Empty(margins.Errors);
        Assert.Equal([0, 0.01, 0.005], CliHarness.List<double>(margins, "--sweep-verify-clean-rate"));
        Assert.Equal(0.01, margins.GetValue<double>("--verify-clean-rate"));
        Assert.NotEmpty(CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--verify-clean-rate", "1").Errors);

        var certify = CliHarness.Parse("certify-eval", "m", "--images", "a", "--sizes", "4,6", "--strides", "1,2,3");
        Assert.Equal([1, 2, 3], CliHarness.List<int>(certify, "--strides"));
        var attacks = CliHarness.Parse("attack-eval", "m", "--images", "a", "--labels", "b", "--only", "FGSM,pgd");
        Assert.Equal(["fgsm", "pgd"], CliHarness.List<string>(attacks, "--only"));
    }

    [Fact]
    public void The_strong_attacks_location_stride_defaults_to_fixed_placements_and_is_bounded()
    {
        Assert.Equal(0, CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b").GetValue<int>("--strong-location-stride"));
        var moving = CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--strong-location-stride", "2");
        Assert.Empty(moving.Errors);
        Assert.Equal(2, moving.GetValue<int>("--strong-location-stride"));
        Assert.NotEmpty(CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--strong-location-stride", "-1").Errors);
        Assert.NotEmpty(CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b", "--strong-location-stride", "65").Errors);
    }

    [Fact]
    public void Comma_lists_default_when_not_given()
    {
        var result = CliHarness.Parse("evaluate", "m", "--images", "a", "--calib", "b");
        Assert.Equal([4, 6, 8], CliHarness.List<int>(result, "--sizes"));
        Assert.Equal([TokenScore.Jsd, TokenScore.Knn], CliHarness.List<TokenScore>(result, "--sweep-scores"));
        Assert.Equal([0, 1, 10], CliHarness.List<double>(result, "--evasion"));
        Assert.Equal([1, 32], CliHarness.List<int>(CliHarness.Parse("bench-pgd", "m"), "--batch"));
        Assert.Equal([4, 6], CliHarness.List<int>(CliHarness.Parse("certify-eval", "m", "--images", "a"), "--sizes"));
    }
}
