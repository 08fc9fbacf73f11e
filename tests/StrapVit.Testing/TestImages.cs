using System.Buffers.Binary;
using System.IO.Compression;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Webp;
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

    /// <summary>The upload formats the service accepts, by the names <see cref="Encoded"/> and <see cref="ClaimingSize"/> take.</summary>
    public static IReadOnlyList<string> Formats { get; } = ["png", "jpeg", "gif", "bmp", "webp-lossy", "webp-lossless"];

    /// <summary>A small valid image of a gradient with some texture, in <paramref name="format"/> (one of <see cref="Formats"/>).</summary>
    public static byte[] Encoded(string format, int width = 12, int height = 10)
    {
        using var img = Gradient(width, height);
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var p = img[x, y];
                img[x, y] = new Rgba32(p.R, (byte)(37 * (x + y)), (byte)(91 * y), 255);
            }
        }

        using var ms = new MemoryStream();
        img.Save(ms, format switch
        {
            "png" => new PngEncoder(),
            "jpeg" => new JpegEncoder { Quality = 90 },
            "gif" => new GifEncoder(),
            "bmp" => new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel24 },
            "webp-lossy" => new WebpEncoder { FileFormat = WebpFileFormatType.Lossy },
            "webp-lossless" => new WebpEncoder { FileFormat = WebpFileFormatType.Lossless },
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, "not a test format"),
        });
        return ms.ToArray();
    }

    /// <summary>
    /// A valid small image of <paramref name="format"/> whose header is rewritten to claim <paramref name="width"/> x
    /// <paramref name="height"/> (clamped to what the format's fields can hold), checksums fixed where the format has them.
    /// </summary>
    public static byte[] ClaimingSize(string format, int width, int height)
    {
        var bytes = Encoded(format);
        switch (format)
        {
            case "png":
                // IHDR is the first chunk: length (4) and type (4) after the 8-byte signature, then width and height.
                BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(16), width);
                BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(20), height);
                BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(29), Crc32(bytes[12..29]));
                break;
            case "bmp":
                // BITMAPINFOHEADER: width and height as int32 at 18 and 22.
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(18), width);
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(22), height);
                break;
            case "gif":
                // Logical screen size at 6, then the first image descriptor's size too.
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), (ushort)Math.Min(width, ushort.MaxValue));
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)Math.Min(height, ushort.MaxValue));
                var descriptor = Array.IndexOf(bytes, (byte)0x2C, 13);
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(descriptor + 5), (ushort)Math.Min(width, ushort.MaxValue));
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(descriptor + 7), (ushort)Math.Min(height, ushort.MaxValue));
                break;
            case "jpeg":
                // SOF0 (FF C0): length (2), precision (1), height (2), width (2), big-endian.
                var sof = IndexOf(bytes, [0xFF, 0xC0]);
                BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(sof + 5), (ushort)Math.Min(height, ushort.MaxValue));
                BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(sof + 7), (ushort)Math.Min(width, ushort.MaxValue));
                break;
            case "webp-lossy":
                // VP8 key frame: 3-byte tag, start code 9D 01 2A, then 14-bit width and height (little-endian, 2 scale bits).
                var vp8 = IndexOf(bytes, [0x9D, 0x01, 0x2A]);
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(vp8 + 3), (ushort)(Math.Min(width, 16383) & 0x3FFF));
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(vp8 + 5), (ushort)(Math.Min(height, 16383) & 0x3FFF));
                break;
            case "webp-lossless":
                // VP8L: signature 0x2F, then width-1 and height-1 in 14 bits each, little-endian bit order.
                var vp8l = IndexOf(bytes, "VP8L"u8.ToArray()) + 8;
                var bits = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(vp8l + 1));
                bits = (bits & 0xF0000000u) | (uint)(Math.Min(width, 16384) - 1) | ((uint)(Math.Min(height, 16384) - 1) << 14);
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(vp8l + 1), bits);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(format), format, "not a test format");
        }

        return bytes;
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        var i = haystack.AsSpan().IndexOf(needle);
        return i >= 0 ? i : throw new InvalidOperationException("marker not found in the encoded test image");
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
