using StrapVit.Core.Datasets;

namespace StrapVit.Core.Evaluation;

/// <summary>A batch of labelled images in [0, 1] pixel space, back to back <c>[N, C, H, W]</c>.</summary>
public sealed record EvaluationSet(float[] Pixels, int[] Labels, int SampleSize)
{
    public int Count => Labels.Length;

    public ReadOnlySpan<float> Image(int i) => Pixels.AsSpan(i * SampleSize, SampleSize);

    /// <summary>The first <paramref name="count"/> images of an IDX set (one channel).</summary>
    public static EvaluationSet FromIdx(IdxDataset data, int count, int offset = 0)
    {
        count = Math.Min(count, data.Count - offset);
        var size = data.Rows * data.Cols;
        var pixels = new float[count * size];
        for (var i = 0; i < count; i++)
        {
            data.Image(offset + i).Data.CopyTo(pixels, i * size);
        }

        return new EvaluationSet(pixels, data.Labels.Skip(offset).Take(count).Select(b => (int)b).ToArray(), size);
    }

    /// <summary>The same labels with other pixels (e.g. the attacked images).</summary>
    public EvaluationSet WithPixels(float[] pixels) => this with { Pixels = pixels };
}
