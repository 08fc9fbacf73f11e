using StrapVit.Core.Datasets;

namespace StrapVit.Core.Evaluation;

/// <summary>A batch of labelled images in [0, 1] pixel space, back to back <c>[N, C, H, W]</c>.</summary>
public sealed record EvaluationSet(float[] Pixels, int[] Labels, int SampleSize)
{
    public int Count => Labels.Length;

    public ReadOnlySpan<float> Image(int i) => Pixels.AsSpan(i * SampleSize, SampleSize);

    /// <summary>The first <paramref name="count"/> images of an IDX set (one channel).</summary>
    public static EvaluationSet FromIdx(IdxDataset data, int count) => FromIdx(data, count, 1, data.Rows, data.Cols);

    /// <summary>
    /// The first <paramref name="count"/> images of an IDX set shaped for a model of <paramref name="channels"/> x
    /// <paramref name="height"/> x <paramref name="width"/>: the gray image in every channel.
    /// </summary>
    /// <exception cref="InvalidDataException">The images are not <paramref name="height"/> x <paramref name="width"/>.</exception>
    public static EvaluationSet FromIdx(IdxDataset data, int count, int channels, int height, int width)
    {
        if (data.Rows != height || data.Cols != width)
        {
            throw new InvalidDataException($"the IDX images are {data.Rows}x{data.Cols}; the model takes {height}x{width}.");
        }

        count = Math.Min(count, data.Count);
        var plane = data.Rows * data.Cols;
        var size = channels * plane;
        var pixels = new float[count * size];
        for (var i = 0; i < count; i++)
        {
            var gray = data.Image(i).Data;
            for (var c = 0; c < channels; c++) gray.CopyTo(pixels, (i * size) + (c * plane));
        }

        return new EvaluationSet(pixels, data.Labels.Take(count).Select(b => (int)b).ToArray(), size);
    }

    /// <summary>The images at <paramref name="indices"/>, in that order.</summary>
    public EvaluationSet Subset(IReadOnlyList<int> indices)
    {
        var pixels = new float[indices.Count * SampleSize];
        for (var j = 0; j < indices.Count; j++) Image(indices[j]).CopyTo(pixels.AsSpan(j * SampleSize, SampleSize));
        return new EvaluationSet(pixels, indices.Select(i => Labels[i]).ToArray(), SampleSize);
    }

    /// <summary>The images whose label is not <paramref name="label"/> (e.g. a universal patch's training images).</summary>
    public EvaluationSet Without(int label) => Subset(Enumerable.Range(0, Count).Where(i => Labels[i] != label).ToArray());

    /// <summary>The same labels with other pixels (e.g. the attacked images).</summary>
    public EvaluationSet WithPixels(float[] pixels) => this with { Pixels = pixels };
}
