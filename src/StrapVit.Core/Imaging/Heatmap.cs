namespace StrapVit.Core.Imaging;

/// <summary>
/// Renders a score map over an image: the image in gray, the map in a black-red-yellow ramp blended on top,
/// enlarged by an integer factor so a 28x28 input is readable. The map may be coarser than the image (one value per
/// patch) or at pixel resolution; each image pixel takes the value of the map cell it falls in.
/// </summary>
public static class Heatmap
{
    /// <param name="image">The image under the map.</param>
    /// <param name="map">Values, row-major, <paramref name="rows"/> x <paramref name="cols"/>.</param>
    /// <param name="rows">Map rows.</param>
    /// <param name="cols">Map columns.</param>
    /// <param name="max">The value shown at full intensity (values are clipped to [0, max]).</param>
    /// <param name="minSide">The output is enlarged until its shorter side is at least this many pixels.</param>
    public static ImageTensor Render(ImageTensor image, ReadOnlySpan<double> map, int rows, int cols, double max, int minSide = 224)
    {
        int h = image.Height, w = image.Width;
        var scale = Math.Max(1, (int)Math.Ceiling(minSide / (double)Math.Min(h, w)));
        int oh = h * scale, ow = w * scale, plane = oh * ow;
        var data = new float[3 * plane];
        for (var y = 0; y < oh; y++)
        {
            for (var x = 0; x < ow; x++)
            {
                int iy = y / scale, ix = x / scale;
                double gray = 0;
                for (var c = 0; c < image.Channels; c++)
                {
                    gray += image[c, iy, ix];
                }

                gray /= image.Channels;
                var v = Math.Clamp(map[(iy * rows / h * cols) + (ix * cols / w)] / Math.Max(max, 1e-12), 0, 1);
                var (r, g, b) = Ramp(v);
                const double Alpha = 0.6;
                var i = (y * ow) + x;
                data[i] = (float)(((1 - Alpha) * gray) + (Alpha * r));
                data[plane + i] = (float)(((1 - Alpha) * gray) + (Alpha * g));
                data[(2 * plane) + i] = (float)(((1 - Alpha) * gray) + (Alpha * b));
            }
        }

        return new ImageTensor(data, 3, oh, ow);
    }

    private static (double R, double G, double B) Ramp(double v) =>
        v < 0.5 ? (v * 2, 0, 0) : (1, (v - 0.5) * 2, 0);
}
