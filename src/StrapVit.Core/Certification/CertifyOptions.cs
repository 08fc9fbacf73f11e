namespace StrapVit.Core.Certification;

/// <summary>Configured masking method (<see cref="CertifyOptions.Masking"/>).</summary>
public enum MaskingChoice
{
    Auto,
    Drop,
    Replace,
}

/// <summary>Configuration section <c>Certify</c>: PatchCleanser's certified mode (<c>defense=certify</c>).</summary>
public sealed class CertifyOptions
{
    public const string SectionName = "Certify";

    /// <summary>Side in pixels of the patch a request is certified against when it names none.</summary>
    public int PatchSize { get; set; } = 4;

    /// <summary>Stride between masks in tokens (PatchCleanser's s): larger means fewer, larger masks.</summary>
    public int MaskStride { get; set; } = 1;

    /// <summary>
    /// Stride of the top and bottom row of masks, in tokens; 0 (or anything up to <see cref="MaskStride"/>) means
    /// <see cref="MaskStride"/> (PatchCleanser's uniform mask set). A larger one merges the patch placements nearest the border into taller masks: fewer masks (fewer
    /// masked views per certificate) where hiding a little more costs least.
    /// </summary>
    public int RowBorderStride { get; set; }

    /// <summary>
    /// Stride of the leftmost and rightmost column of masks, in tokens (as <see cref="RowBorderStride"/>). The default, 2,
    /// was chosen on the embedded model's tuning images: 24 masks instead of 36, so a certificate needs 300 masked views
    /// instead of 666, for 1.2 points of certified accuracy there (docs/EVALUATION.md).
    /// </summary>
    public int ColBorderStride { get; set; } = 2;

    /// <summary>Largest patch side a request may ask for.</summary>
    public int MaxPatchSize { get; set; } = 16;

    /// <summary>A patch size whose mask set could need more masked forwards than this (worst case) is refused.</summary>
    public int MaxForwards { get; set; } = 2000;

    /// <summary>
    /// How masked tokens leave the encoder: <c>Auto</c> drops them when the encoder takes a shorter sequence and
    /// replaces them by the clean mean token otherwise; <c>Drop</c> or <c>Replace</c> force one.
    /// </summary>
    public MaskingChoice Masking { get; set; } = MaskingChoice.Auto;

    /// <summary>Most masked views per ONNX Runtime run.</summary>
    public int BatchSize { get; set; } = 256;

    /// <summary>Returns the first problem with these options, or null.</summary>
    public string? Validate() =>
        PatchSize < 1 ? "Certify:PatchSize must be >= 1."
        : MaskStride < 1 ? "Certify:MaskStride must be >= 1."
        : RowBorderStride < 0 ? "Certify:RowBorderStride must be >= 0."
        : ColBorderStride < 0 ? "Certify:ColBorderStride must be >= 0."
        : MaxPatchSize < PatchSize ? "Certify:MaxPatchSize must be >= Certify:PatchSize."
        : MaxForwards < 1 ? "Certify:MaxForwards must be >= 1."
        : BatchSize is < 1 or > 4096 ? "Certify:BatchSize must be in [1, 4096]."
        : null;
}
