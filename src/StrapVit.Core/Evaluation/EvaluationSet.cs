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

    /// <summary>
    /// Labelled images from a folder tree, the torchvision ImageFolder convention: one subfolder per class, its files
    /// (PNG, JPEG, BMP, GIF, WebP) decoded like uploads to the model's input. A subfolder named like one of
    /// <paramref name="labels"/> (case-insensitive) gets that label's index, else its rank in ordinal order. The images
    /// come in a seeded shuffle, so the first <paramref name="count"/> mix the classes.
    /// </summary>
    /// <exception cref="InvalidDataException">No class folder, or a folder name that is neither a label nor one of as many folders as labels.</exception>
    public static EvaluationSet FromFolder(string root, IReadOnlyList<string> labels, int count, int channels, int height, int width, int seed = 0)
    {
        var folders = Directory.EnumerateDirectories(root).Order(StringComparer.Ordinal).ToArray();
        if (folders.Length == 0) throw new InvalidDataException($"'{root}' has no class subfolders.");
        var files = new List<(string File, int Label)>();
        for (var f = 0; f < folders.Length; f++)
        {
            var name = Path.GetFileName(folders[f]);
            var label = labels.Select((l, i) => (l, i)).FirstOrDefault(x => string.Equals(x.l, name, StringComparison.OrdinalIgnoreCase)).i;
            if (!labels.Any(l => string.Equals(l, name, StringComparison.OrdinalIgnoreCase)))
            {
                if (folders.Length != labels.Count) throw new InvalidDataException($"class folder '{name}' is not a label of the model, and there are {folders.Length} folders for {labels.Count} labels.");
                label = f;
            }

            files.AddRange(Directory.EnumerateFiles(folders[f])
                .Where(p => Path.GetExtension(p).ToLowerInvariant() is ".png" or ".jpg" or ".jpeg" or ".bmp" or ".gif" or ".webp")
                .Order(StringComparer.Ordinal)
                .Select(p => (p, label)));
        }

        var chosen = files.ToArray();
        new Random(seed).Shuffle(chosen);
        chosen = chosen[..Math.Min(count, chosen.Length)];
        var decoder = new Imaging.ImageDecoder(new Imaging.ImageLimits());
        var size = channels * height * width;
        var pixels = new float[chosen.Length * size];
        for (var i = 0; i < chosen.Length; i++)
        {
            decoder.Decode(File.ReadAllBytes(chosen[i].File), channels, height, width).Data.CopyTo(pixels, i * size);
        }

        return new EvaluationSet(pixels, chosen.Select(c => c.Label).ToArray(), size);
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
