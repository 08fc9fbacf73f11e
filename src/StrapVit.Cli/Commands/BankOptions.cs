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

    /// <summary>The options, in the order a verb lists them.</summary>
    public Option[] All => [size, layout, neighbors, fpr];

    /// <summary>The bank settings the command line asks for.</summary>
    public BankSettings Read(ParseResult parseResult) => new(
        Size: parseResult.GetOptional(size),
        Neighbors: parseResult.GetValue(neighbors),
        FalsePositiveRate: parseResult.GetValue(fpr),
        PerPosition: parseResult.GetValue(layout) == "per-position");
}
