using System.Text.Json.Serialization;

namespace StrapVit.Core.Models;

/// <summary>The contents of a package's <c>model.json</c> (README, 'Bring your own ViT').</summary>
public sealed record ModelManifest
{
    public required string Name { get; init; }
    public required ModelInputSpec Input { get; init; }
    public required string Output { get; init; }
    public required IReadOnlyList<string> Labels { get; init; }
    public required int PatchSize { get; init; }
    public TokenSpec? Tokens { get; init; }
}

/// <summary>The model's image input: layout and the normalization <c>(x - mean) / std</c> it expects.</summary>
public sealed record ModelInputSpec
{
    public required string Name { get; init; }
    public required int Channels { get; init; }
    public required int Height { get; init; }
    public required int Width { get; init; }
    public required IReadOnlyList<float> Mean { get; init; }
    public required IReadOnlyList<float> Std { get; init; }

    /// <summary>Number of values in one image, C·H·W.</summary>
    [JsonIgnore]
    public int Size => Channels * Height * Width;
}

/// <summary>Where the model can be split into token embedding and encoder (for the token-space defense).</summary>
public sealed record TokenSpec
{
    /// <summary>Name of the <c>[N, T(+1), D]</c> tensor right after the position embedding.</summary>
    public required string Tensor { get; init; }

    public bool ClassToken { get; init; }
}
