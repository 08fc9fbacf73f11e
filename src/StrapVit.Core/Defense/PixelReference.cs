using StrapVit.Core.Imaging;
using StrapVit.Core.Models;

namespace StrapVit.Core.Defense;

/// <summary>
/// Clean pixel statistics per patch position for the model-agnostic variant: the mean histogram of the patch's pixel
/// values (all channels pooled), the mean pixel value per channel, and a quantile of clean JSD scores.
/// </summary>
public sealed record PixelReference
{
    public required int PatchSize { get; init; }

    public required int Bins { get; init; }

    /// <summary>Mean histogram per patch position, <c>[P][Bins]</c>, row-major over the patch grid.</summary>
    public required float[][] Histogram { get; init; }

    /// <summary>Mean pixel value per patch position and channel, <c>[P][C]</c>.</summary>
    public required float[][] Mean { get; init; }

    /// <summary>Clean-score quantile per position, <c>[P]</c>.</summary>
    public required float[] Threshold { get; init; }

    internal static PixelReference Compute(ModelManifest manifest, IReadOnlyList<ImageTensor> images, int bins, double quantile)
    {
        var grid = new PatchGrid(manifest.Input.Height, manifest.Input.Width, manifest.PatchSize);
        int positions = grid.Count, channels = manifest.Input.Channels, n = images.Count;
        var hist = Enumerable.Range(0, positions).Select(_ => new float[bins]).ToArray();
        var mean = Enumerable.Range(0, positions).Select(_ => new float[channels]).ToArray();
        var h = new double[bins];
        foreach (var image in images)
        {
            for (var k = 0; k < positions; k++)
            {
                grid.Histogram(image, k, h);
                for (var b = 0; b < bins; b++)
                {
                    hist[k][b] += (float)(h[b] / n);
                }

                for (var c = 0; c < channels; c++)
                {
                    mean[k][c] += grid.Mean(image, k, c) / n;
                }
            }
        }

        var reference = new PixelReference { PatchSize = manifest.PatchSize, Bins = bins, Histogram = hist, Mean = mean, Threshold = new float[positions] };
        var perPosition = Enumerable.Range(0, positions).Select(_ => new List<double>(n)).ToArray();
        var scores = new double[positions];
        foreach (var image in images)
        {
            reference.Score(image, scores);
            for (var k = 0; k < positions; k++)
            {
                perPosition[k].Add(scores[k]);
            }
        }

        for (var k = 0; k < positions; k++)
        {
            reference.Threshold[k] = DefenseCalibration.QuantileOf(perPosition[k], quantile);
        }

        return reference;
    }

    /// <summary>JSD distance of each patch's histogram to the clean reference at its position.</summary>
    public void Score(ImageTensor image, Span<double> scores)
    {
        var grid = new PatchGrid(image.Height, image.Width, PatchSize);
        var h = new double[Bins];
        var q = new double[Bins];
        for (var k = 0; k < grid.Count; k++)
        {
            grid.Histogram(image, k, h);
            for (var b = 0; b < Bins; b++)
            {
                q[b] = Histogram[k][b];
            }

            scores[k] = JensenShannon.Distance(h, q);
        }
    }
}

/// <summary>The image cut into square patches, row-major, as the ViT tokenizes it.</summary>
public readonly record struct PatchGrid(int Height, int Width, int PatchSize)
{
    public int Rows => Height / PatchSize;

    public int Cols => Width / PatchSize;

    public int Count => Rows * Cols;

    /// <summary>Normalized histogram of patch <paramref name="k"/>'s values over all channels, bins over [0, 1].</summary>
    public void Histogram(ImageTensor image, int k, Span<double> histogram)
    {
        histogram.Clear();
        int bins = histogram.Length, r0 = k / Cols * PatchSize, c0 = k % Cols * PatchSize;
        for (var c = 0; c < image.Channels; c++)
        {
            for (var y = r0; y < r0 + PatchSize; y++)
            {
                for (var x = c0; x < c0 + PatchSize; x++)
                {
                    var b = Math.Clamp((int)(image[c, y, x] * bins), 0, bins - 1);
                    histogram[b] += 1;
                }
            }
        }

        var total = (double)image.Channels * PatchSize * PatchSize;
        for (var b = 0; b < bins; b++)
        {
            histogram[b] /= total;
        }
    }

    /// <summary>Mean value of channel <paramref name="c"/> over patch <paramref name="k"/>.</summary>
    public float Mean(ImageTensor image, int k, int c)
    {
        int r0 = k / Cols * PatchSize, c0 = k % Cols * PatchSize;
        double sum = 0;
        for (var y = r0; y < r0 + PatchSize; y++)
        {
            for (var x = c0; x < c0 + PatchSize; x++)
            {
                sum += image[c, y, x];
            }
        }

        return (float)(sum / (PatchSize * PatchSize));
    }
}
