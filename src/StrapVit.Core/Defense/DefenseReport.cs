namespace StrapVit.Core.Defense;

/// <summary>Whether the defense runs, and whether it only reports or also rewrites.</summary>
public enum DefenseMode
{
    Off,

    /// <summary>Score and flag, then classify the untouched image.</summary>
    Detect,

    /// <summary>Score, flag and transform the flagged tokens, then classify.</summary>
    Mitigate,

    /// <summary>PatchCleanser's certified double masking (Core/Certification), not the STRAP-ViT defense.</summary>
    Certify,
}

/// <summary>A flagged token: its patch-grid index (row-major, <c>Row * cols + Col</c>; the class token is not counted), its place on the grid, score and threshold.</summary>
public sealed record FlaggedToken(int Index, int Row, int Col, double Score, double Threshold);

/// <summary>The transforms applied to one token, in the order applied.</summary>
public sealed record AppliedTransform(int Index, IReadOnlyList<string> Ops);

/// <summary>What the defense did to one image (the <c>defense</c> object of a classification).</summary>
public sealed record DefenseReport(
    string Mode,
    string Variant,
    IReadOnlyList<FlaggedToken> FlaggedTokens,
    int FlaggedAboveThreshold,
    double ThresholdScale,
    int K,
    IReadOnlyList<AppliedTransform> Transforms,
    int Seed,
    double ElapsedMs)
{
    /// <summary>Token score: "jsd" (the paper's) or "knn" (distance to the clean token bank); null for the pixel variant.</summary>
    public string? Score { get; init; }

    /// <summary>Side in tokens of the window flagged around the strongest evidence (0: none).</summary>
    public int Window { get; init; }

    /// <summary>What flagged tokens became: "transform" (the paper's random composite), "mean" or "bank" (replaced by a clean token).</summary>
    public string? Neutralization { get; init; }

    /// <summary>The masking check after neutralisation (Defense:VerifyWindows), or null when it is off or only detecting.</summary>
    public VerificationReport? Verification { get; init; }
}

/// <summary>
/// Logits after the defense, with its report, and every patch's score and effective threshold
/// (row-major over the patch grid) for heatmaps.
/// </summary>
public sealed record DefendedLogits(float[] Logits, DefenseReport Report, double[] Scores, double[] Thresholds);

/// <summary>A defense in front of the classifier: scores patches, flags, optionally transforms, then classifies.</summary>
public interface IPatchDefense
{
    /// <summary>"token" or "pixel".</summary>
    string Variant { get; }

    /// <summary>Runs <paramref name="batch"/> images (back to back in <paramref name="pixels"/>), image i with seed <c>seeds[i]</c>.</summary>
    DefendedLogits[] Run(ReadOnlySpan<float> pixels, int batch, DefenseMode mode, IReadOnlyList<int> seeds, CancellationToken cancellationToken = default);
}
