namespace StrapVit.Core.Defense;

/// <summary>Whether the defense runs, and whether it only reports or also rewrites.</summary>
public enum DefenseMode
{
    Off,

    /// <summary>Score and flag, then classify the untouched image.</summary>
    Detect,

    /// <summary>Score, flag and transform the flagged tokens, then classify.</summary>
    Mitigate,
}

/// <summary>A flagged token: its index in the token sequence, its place on the patch grid, score and threshold.</summary>
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
    double ElapsedMs);

/// <summary>Logits after the defense, with its report.</summary>
public sealed record DefendedLogits(float[] Logits, DefenseReport Report);
