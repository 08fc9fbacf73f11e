namespace StrapVit.Core.Gradients;

/// <summary>
/// One gradient run. Arrays are row-major and owned by the caller: <see cref="Logits"/> [N·K],
/// <see cref="Loss"/> [N] (per-sample cross-entropy; null for a vjp run), <see cref="PixelGrad"/> [N·C·H·W].
/// </summary>
public sealed record GradientResult(int Batch, int Classes, float[] Logits, float[]? Loss, float[] PixelGrad)
{
    /// <summary>Logits of sample <paramref name="index"/>.</summary>
    public ReadOnlySpan<float> LogitsOf(int index) => Logits.AsSpan(index * Classes, Classes);

    /// <summary>Pixel gradient of sample <paramref name="index"/> (C·H·W values).</summary>
    public ReadOnlySpan<float> PixelGradOf(int index)
    {
        var size = PixelGrad.Length / Batch;
        return PixelGrad.AsSpan(index * size, size);
    }
}
