using System.Buffers.Binary;

namespace StrapVit.Core.Imaging;

/// <summary>
/// The sizes an upload's header claims, read from the raw bytes before any decoder runs. ImageSharp's own identify
/// step is the second line: on some hostile headers it throws instead of reporting (a BMP claiming more than 65535
/// per side), and a GIF's frame descriptors may claim more than its logical screen, which it would allocate for.
/// </summary>
public static class ImageHeader
{
    /// <summary>
    /// The largest width and height the header claims (over the canvas and, for GIF, every frame) and the frame count
    /// where the format states one; null when the bytes are too short or not one of the accepted formats.
    /// </summary>
    public static (long Width, long Height, int Frames)? Probe(ReadOnlySpan<byte> b)
    {
        if (b.Length >= 24 && b[..8].SequenceEqual((ReadOnlySpan<byte>)[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        {
            return (BinaryPrimitives.ReadUInt32BigEndian(b[16..]), BinaryPrimitives.ReadUInt32BigEndian(b[20..]), 1);
        }

        if (b.Length >= 13 && (b[..6].SequenceEqual("GIF87a"u8) || b[..6].SequenceEqual("GIF89a"u8)))
        {
            return Gif(b);
        }

        if (b.Length >= 26 && b[0] == (byte)'B' && b[1] == (byte)'M')
        {
            // BITMAPCOREHEADER (12 bytes) has 16-bit sides; the later headers 32-bit ones, the height signed (top-down).
            return BinaryPrimitives.ReadUInt32LittleEndian(b[14..]) == 12
                ? (BinaryPrimitives.ReadUInt16LittleEndian(b[18..]), BinaryPrimitives.ReadUInt16LittleEndian(b[20..]), 1)
                : (Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(b[18..])), Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(b[22..])), 1);
        }

        if (b.Length >= 4 && b[0] == 0xFF && b[1] == 0xD8)
        {
            return Jpeg(b);
        }

        if (b.Length >= 30 && b[..4].SequenceEqual("RIFF"u8) && b[8..12].SequenceEqual("WEBP"u8))
        {
            return Webp(b);
        }

        return null;
    }

    private static (long, long, int)? Gif(ReadOnlySpan<byte> b)
    {
        long width = BinaryPrimitives.ReadUInt16LittleEndian(b[6..]), height = BinaryPrimitives.ReadUInt16LittleEndian(b[8..]);
        var frames = 0;
        var at = 13 + ((b[10] & 0x80) != 0 ? 3 << ((b[10] & 7) + 1) : 0);
        while (at < b.Length)
        {
            switch (b[at])
            {
                case 0x21 when at + 2 <= b.Length:
                    at = SkipSubBlocks(b, at + 2);
                    break;
                case 0x2C when at + 10 <= b.Length:
                    frames++;
                    width = Math.Max(width, BinaryPrimitives.ReadUInt16LittleEndian(b[(at + 5)..]));
                    height = Math.Max(height, BinaryPrimitives.ReadUInt16LittleEndian(b[(at + 7)..]));
                    var packed = b[at + 9];
                    at += 10 + ((packed & 0x80) != 0 ? 3 << ((packed & 7) + 1) : 0);
                    at = SkipSubBlocks(b, at + 1); // after the LZW minimum code size
                    break;
                default:
                    // The trailer, or bytes the decoder will refuse: what was counted so far stands.
                    return (width, height, Math.Max(frames, 1));
            }
        }

        return (width, height, Math.Max(frames, 1));
    }

    private static int SkipSubBlocks(ReadOnlySpan<byte> b, int at)
    {
        while (at < b.Length && b[at] != 0)
        {
            at += b[at] + 1;
        }

        return at + 1;
    }

    private static (long, long, int)? Jpeg(ReadOnlySpan<byte> b)
    {
        var at = 2;
        while (at + 4 <= b.Length && b[at] == 0xFF)
        {
            var marker = b[at + 1];
            if (marker == 0xFF)
            {
                at++; // fill byte
                continue;
            }

            var length = BinaryPrimitives.ReadUInt16BigEndian(b[(at + 2)..]);
            var isFrame = marker is >= 0xC0 and <= 0xCF && marker is not (0xC4 or 0xC8 or 0xCC);
            if (isFrame && at + 9 <= b.Length)
            {
                return (BinaryPrimitives.ReadUInt16BigEndian(b[(at + 7)..]), BinaryPrimitives.ReadUInt16BigEndian(b[(at + 5)..]), 1);
            }

            if (marker == 0xDA || length < 2)
            {
                break;
            }

            at += 2 + length;
        }

        return null;
    }

    private static (long, long, int)? Webp(ReadOnlySpan<byte> b)
    {
        var chunk = b[12..16];
        if (chunk.SequenceEqual("VP8 "u8) && b[23] == 0x9D && b[24] == 0x01 && b[25] == 0x2A)
        {
            return (BinaryPrimitives.ReadUInt16LittleEndian(b[26..]) & 0x3FFF, BinaryPrimitives.ReadUInt16LittleEndian(b[28..]) & 0x3FFF, 1);
        }

        if (chunk.SequenceEqual("VP8L"u8) && b[20] == 0x2F)
        {
            var bits = BinaryPrimitives.ReadUInt32LittleEndian(b[21..]);
            return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1);
        }

        if (chunk.SequenceEqual("VP8X"u8))
        {
            static long U24(ReadOnlySpan<byte> s) => s[0] | (s[1] << 8) | (s[2] << 16);
            return (U24(b[24..]) + 1, U24(b[27..]) + 1, 1);
        }

        return null;
    }
}
