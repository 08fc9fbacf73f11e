using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace StrapVit.Core.Imaging;

/// <summary>Writes tensors as 8-bit PNGs (grayscale for one channel, RGB for three).</summary>
public static class PngEncoding
{
    /// <summary>Encodes <paramref name="image"/>, rounding each value to the nearest of 256 levels.</summary>
    public static byte[] Encode(ImageTensor image)
    {
        int h = image.Height, w = image.Width, plane = h * w;
        var d = image.Data;
        using var ms = new MemoryStream();
        if (image.Channels == 1)
        {
            using var img = new Image<L8>(w, h);
            img.ProcessPixelRows(rows =>
            {
                for (var y = 0; y < h; y++)
                {
                    var row = rows.GetRowSpan(y);
                    for (var x = 0; x < w; x++)
                    {
                        row[x] = new L8(ToByte(d[(y * w) + x]));
                    }
                }
            });
            img.Save(ms, new PngEncoder { ColorType = PngColorType.Grayscale, BitDepth = PngBitDepth.Bit8 });
        }
        else
        {
            using var img = new Image<Rgb24>(w, h);
            img.ProcessPixelRows(rows =>
            {
                for (var y = 0; y < h; y++)
                {
                    var row = rows.GetRowSpan(y);
                    for (var x = 0; x < w; x++)
                    {
                        var i = (y * w) + x;
                        row[x] = new Rgb24(ToByte(d[i]), ToByte(d[plane + i]), ToByte(d[(2 * plane) + i]));
                    }
                }
            });
            img.Save(ms, new PngEncoder { ColorType = PngColorType.Rgb, BitDepth = PngBitDepth.Bit8 });
        }

        return ms.ToArray();
    }

    /// <summary>A [0, 1] value as an 8-bit pixel: clamped, scaled by 255 and rounded.</summary>
    internal static byte ToByte(float v) => (byte)MathF.Round(Math.Clamp(v, 0f, 1f) * 255f);
}
