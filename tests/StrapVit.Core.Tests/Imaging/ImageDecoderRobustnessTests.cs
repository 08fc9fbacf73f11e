using StrapVit.Core.Imaging;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Imaging;

/// <summary>
/// Hostile bytes in every accepted format: the decoder either returns a tensor or refuses with an
/// <see cref="ImageRejectedException"/>; no other exception may escape (the API would answer 500).
/// </summary>
public sealed class ImageDecoderRobustnessTests
{
    private static readonly ImageLimits Limits = new() { MaxBytes = 1 << 20, MaxPixels = 1_000_000, MaxDimension = 4096, MaxFrames = 4 };

    private readonly ImageDecoder _decoder = new(Limits);

    public static TheoryData<string> Formats => [.. TestImages.Formats];

    [Theory]
    [MemberData(nameof(Formats))]
    public void Truncation_at_every_offset_is_decoded_or_refused(string format)
    {
        var bytes = TestImages.Encoded(format);

        var escaped = Enumerable.Range(0, bytes.Length)
            .Select(n => (n, error: Escaping(bytes[..n])))
            .Where(r => r.error is not null)
            .Select(r => $"{r.n} bytes: {r.error}")
            .ToList();

        Assert.True(escaped.Count == 0, $"{format}: {escaped.Count} truncations escaped, e.g.\n{string.Join("\n", escaped.Take(5))}");
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Header_dimensions_beyond_the_limits_are_refused_as_too_large(string format)
    {
        foreach (var (w, h) in new[] { (100_000, 100_000), (Limits.MaxDimension + 1, 1), (1, Limits.MaxDimension + 1), (1001, 1001) })
        {
            var bytes = TestImages.ClaimingSize(format, w, h);

            var ex = Assert.Throws<ImageRejectedException>(() => _decoder.Decode(bytes, 1, 8, 8));

            Assert.True(ex.Reason == ImageRejection.TooLarge, $"{format} claiming {w}x{h}: {ex.Reason}: {ex.Message}");
        }
    }

    [Fact]
    public void A_gif_frame_larger_than_its_screen_is_refused_from_the_header()
    {
        var bytes = TestImages.Encoded("gif");
        var descriptor = Array.IndexOf(bytes, (byte)0x2C, 13);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(descriptor + 5), 65535);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(descriptor + 7), 65535);

        var ex = Assert.Throws<ImageRejectedException>(() => _decoder.Decode(bytes, 1, 8, 8));

        Assert.Equal(ImageRejection.TooLarge, ex.Reason);
        Assert.Contains("65535x65535", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_gif_with_more_frames_than_the_limit_is_refused_before_decoding()
    {
        var ex = Assert.Throws<ImageRejectedException>(() => _decoder.Decode(TestImages.Gif(Limits.MaxFrames + 3), 1, 8, 8));

        Assert.Equal(ImageRejection.TooLarge, ex.Reason);
        Assert.Contains($"{Limits.MaxFrames + 3} frames", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Seeded_byte_mutations_are_decoded_or_refused(string format)
    {
        var bytes = TestImages.Encoded(format);
        var random = new Random(format.Length * 7919);
        var escaped = new List<string>();
        for (var i = 0; i < 400; i++)
        {
            var mutated = ByteMutations.Mutate(bytes, random);
            if (Escaping(mutated) is { } error) escaped.Add($"case {i}: {error}");
        }

        Assert.True(escaped.Count == 0, $"{format}: {escaped.Count} mutations escaped, e.g.\n{string.Join("\n", escaped.Take(5))}");
    }

    private string? Escaping(byte[] bytes)
    {
        try
        {
            _decoder.Decode(bytes, 1, 8, 8);
            return null;
        }
        catch (ImageRejectedException)
        {
            return null;
        }
        catch (Exception ex)
        {
            return $"{ex.GetType().FullName}: {ex.Message}";
        }
    }
}
