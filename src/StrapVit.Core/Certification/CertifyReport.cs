namespace StrapVit.Core.Certification;

/// <summary>The mask set a certificate was computed with: mask size and stride in tokens, and how many masks.</summary>
/// <param name="Rows">Mask height in tokens (masks away from the border).</param>
/// <param name="Cols">Mask width in tokens (masks away from the border).</param>
/// <param name="Stride">Stride between masks in tokens.</param>
/// <param name="Count">Number of masks (one-mask views).</param>
/// <param name="PatchTokens">Most tokens per axis a patch of the certified size reaches through the receptive field.</param>
/// <param name="RowBorderStride">Stride of the top and bottom row of masks (equal to <paramref name="Stride"/> in PatchCleanser's uniform set).</param>
/// <param name="ColBorderStride">Stride of the leftmost and rightmost column of masks.</param>
/// <param name="LargestRows">Height of the tallest mask (a border mask), in tokens.</param>
/// <param name="LargestCols">Width of the widest mask (a border mask), in tokens.</param>
public sealed record CertifyMaskInfo(int Rows, int Cols, int Stride, int Count, int PatchTokens, int RowBorderStride, int ColBorderStride, int LargestRows, int LargestCols);

/// <summary>
/// The <c>defense</c> object of a certified classification.
/// </summary>
/// <param name="Mode">Always "certify".</param>
/// <param name="Certified">True when no patch of side up to <paramref name="PatchSize"/> pixels, anywhere, can change the prediction (PatchCleanser's Theorem 1).</param>
/// <param name="PatchSize">Side in pixels of the patches the certificate covers.</param>
/// <param name="Method">"drop" (masked tokens removed from the sequence) or "replace" (set to the clean mean token).</param>
/// <param name="Masks">The mask set.</param>
/// <param name="ReceptiveField">Pixels one token reads, per axis: token j sees [j·stride + offset, j·stride + offset + size − 1].</param>
/// <param name="Forwards">Masked encoder forwards run (after one embedding forward).</param>
/// <param name="Case">"agreement", "second-round" or "majority": which branch of the double-masking algorithm answered.</param>
/// <param name="ElapsedMs">Wall time of the certified classification.</param>
public sealed record CertifyReport(
    string Mode,
    bool Certified,
    int PatchSize,
    string Method,
    CertifyMaskInfo Masks,
    ReceptiveField ReceptiveField,
    int Forwards,
    string Case,
    double ElapsedMs);
