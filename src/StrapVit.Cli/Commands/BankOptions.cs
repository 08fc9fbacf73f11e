using System.CommandLine;
using StrapVit.Core.Defense;

namespace StrapVit.Cli.Commands;

/// <summary>The token-bank options that calibrate and evaluate share, and the <see cref="BankSettings"/> they give.</summary>
internal sealed class BankOptions
{
    private static readonly BankSettings Defaults = new();

    private readonly Option<int> size = CliOptions.OptionalNumber("--bank-size", 16, 1_000_000,
        "clean tokens kept in the bank by greedy coreset subsampling (default: 8,192, fewer for tokens wider than 128 so that the bank holds at most 1,048,576 values)");

    private readonly Option<string> layout = CliOptions.Choice("--bank-layout", "pooled",
        "pooled (one bank over all positions, each token's position offset removed) or per-position (each position its own share of the entries; a token is compared with its own position's clean contents only)", "pooled", "per-position");

    private readonly Option<int> neighbors = CliOptions.Number("--neighbors", Defaults.Neighbors, 1, 64, "k of the bank's nearest-neighbour score");

    private readonly Option<double> fpr = CliOptions.Number("--fpr", Defaults.FalsePositiveRate, 0, 1, "share of clean images allowed a token over its bank threshold");

    private readonly Option<int> fprFolds = FoldsOption();

    /// <summary>The options, in the order a verb lists them.</summary>
    public Option[] All => [size, layout, neighbors, fpr, fprFolds];

    /// <summary>The bank settings the command line asks for.</summary>
    public BankSettings Read(ParseResult parseResult) => new(
        Size: parseResult.GetOptional(size),
        Neighbors: parseResult.GetValue(neighbors),
        FalsePositiveRate: parseResult.GetValue(fpr),
        FprFolds: parseResult.GetValue(fprFolds),
        PerPosition: parseResult.GetValue(layout) == "per-position");

    private static Option<int> FoldsOption()
    {
        var option = CliOptions.Number("--fpr-folds", Defaults.FprFolds, 0, 50,
            "0: --fpr is the share of the calibration images flagged (each scored leave-one-out); 2 or more: the share of fresh clean images, estimated by cross-fitting over that many folds of the calibration images, and the thresholds are set for the calibration rate that meets it");
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() == 1) result.AddError("--fpr-folds must be 0 or at least 2: one fold leaves no images to build its bank from");
        });
        return option;
    }
}
