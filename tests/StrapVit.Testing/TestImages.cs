using System.Buffers.Binary;
using System.IO.Compression;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace StrapVit.Testing;

/// <summary>Builds odd but valid, and malformed, image files for decoder tests.</summary>
public static class TestImages
{
    public static byte[] Png<TPixel>(Image<TPixel> image, PngEncoder? encoder = null)
        where TPixel : unmanaged, IPixel<TPixel>
    {
        using var ms = new MemoryStream();
        image.Save(ms, encoder ?? new PngEncoder());
        return ms.ToArray();
    }

    /// <summary>A gradient image: value at (x, y) rises left to right, so orientation changes are visible.</summary>
    public static Image<Rgba32> Gradient(int width, int height)
    {
        var img = new Image<Rgba32>(width, height);
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var v = (byte)(255 * x / Math.Max(1, width - 1));
                img[x, y] = new Rgba32(v, v, v, 255);
            }
        }

        return img;
    }

    /// <summary>An 8-bit PNG of a <c>[C, H, W]</c> tensor in [0, 1] (values rounded to 256 levels).</summary>
    public static byte[] PngFromTensor(float[] data, int channels, int height, int width)
    {
        static byte B(float v) => (byte)MathF.Round(Math.Clamp(v, 0f, 1f) * 255f);
        using var img = new Image<Rgb24>(width, height);
        var plane = height * width;
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var i = (y * width) + x;
                img[x, y] = channels == 1
                    ? new Rgb24(B(data[i]), B(data[i]), B(data[i]))
                    : new Rgb24(B(data[i]), B(data[plane + i]), B(data[(2 * plane) + i]));
            }
        }

        return Png(img);
    }

    /// <summary>The 8-bit grayscale PNG at <paramref name="path"/> re-encoded with 16 bits per sample.</summary>
    public static byte[] Png16(string path)
    {
        using var img = Image.Load<L16>(path);
        return Png(img, new PngEncoder { BitDepth = PngBitDepth.Bit16, ColorType = PngColorType.Grayscale });
    }

    /// <summary>The image at <paramref name="path"/> re-encoded as a palette PNG.</summary>
    public static byte[] PngPalette(string path)
    {
        using var img = Image.Load<Rgba32>(path);
        return Png(img, new PngEncoder { ColorType = PngColorType.Palette, BitDepth = PngBitDepth.Bit8 });
    }

    /// <summary>
    /// The image at <paramref name="path"/> stored rotated 90 degrees counter-clockwise with EXIF orientation 6,
    /// so it displays upright only if the orientation is honoured.
    /// </summary>
    public static byte[] RotatedJpegOf(string path)
    {
        using var img = Image.Load<Rgba32>(path);
        img.Mutate(x => x.Rotate(RotateMode.Rotate270));
        return JpegWithOrientation(img, 6);
    }

    public static byte[] Gif(int frames, int size = 8)
    {
        using var img = new Image<Rgba32>(size, size, new Rgba32(10, 20, 30, 255));
        for (var i = 1; i < frames; i++)
        {
            using var frame = new Image<Rgba32>(size, size, new Rgba32((byte)(i * 7), 0, 0, 255));
            img.Frames.AddFrame(frame.Frames.RootFrame);
        }

        using var ms = new MemoryStream();
        img.Save(ms, new GifEncoder());
        return ms.ToArray();
    }

    /// <summary>The same image with an EXIF orientation tag (6 = rotate 90 degrees clockwise to display).</summary>
    public static byte[] JpegWithOrientation(Image<Rgba32> image, ushort orientation)
    {
        using var clone = image.Clone();
        clone.Metadata.ExifProfile = new ExifProfile();
        clone.Metadata.ExifProfile.SetValue(ExifTag.Orientation, orientation);
        using var ms = new MemoryStream();
        clone.Save(ms, new JpegEncoder { Quality = 100, ColorType = JpegColorType.YCbCrRatio444 });
        return ms.ToArray();
    }

    /// <summary>
    /// A PNG whose header claims <paramref name="width"/> x <paramref name="height"/> but whose data is a few bytes of
    /// zeros: the decompression-bomb shape that must be refused from the header alone.
    /// </summary>
    public static byte[] PngBombHeader(int width, int height)
    {
        using var ms = new MemoryStream();
        ms.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; // bit depth
        ihdr[9] = 0; // grayscale
        Chunk(ms, "IHDR", ihdr);
        using (var raw = new MemoryStream())
        {
            using (var z = new ZLibStream(raw, CompressionLevel.SmallestSize, leaveOpen: true))
            {
                z.Write(new byte[4096]);
            }

            Chunk(ms, "IDAT", raw.ToArray());
        }

        Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var typeBytes = System.Text.Encoding.ASCII.GetBytes(type);
        s.Write(typeBytes);
        s.Write(data);
        var crc = Crc32([.. typeBytes, .. data]);
        BinaryPrimitives.WriteUInt32BigEndian(len, crc);
        s.Write(len);
    }

    private static uint Crc32(byte[] bytes)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in bytes)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
            }
        }

        return ~crc;
    }
}
