using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using StrapVit.Core.Imaging;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Imaging;

public sealed class ImageDecoderTests
{
    private readonly ImageDecoder _decoder = new(new ImageLimits { MaxBytes = 1 << 20, MaxPixels = 4_000_000, MaxDimension = 20_000, MaxFrames = 4 });

    [Fact]
    public void Eight_bit_grayscale_png_at_model_size_is_exact()
    {
        using var img = new Image<L8>(4, 2);
        byte[] values = [0, 1, 2, 127, 128, 200, 254, 255];
        for (var i = 0; i < 8; i++)
        {
            img[i % 4, i / 4] = new L8(values[i]);
        }

        var t = _decoder.Decode(TestImages.Png(img), 1, 2, 4);

        Assert.Equal((1, 2, 4), (t.Channels, t.Height, t.Width));
        Assert.Equal(values.Select(v => v / 255f), t.Data);
    }

    [Fact]
    public void Rgb_to_gray_uses_luma_weights_and_rgb_keeps_channel_planes()
    {
        using var img = new Image<Rgb24>(1, 1);
        img[0, 0] = new Rgb24(255, 0, 0);
        var bytes = TestImages.Png(img);

        var gray = _decoder.Decode(bytes, 1, 1, 1);
        var rgb = _decoder.Decode(bytes, 3, 1, 1);

        Assert.Equal(0.299f, gray.Data[0], 4);
        Assert.Equal([1f, 0f, 0f], rgb.Data);
    }

    [Fact]
    public void Sixteen_bit_png_keeps_its_precision()
    {
        using var img = new Image<L16>(1, 1);
        img[0, 0] = new L16(1000);
        var bytes = TestImages.Png(img, new PngEncoder { BitDepth = PngBitDepth.Bit16, ColorType = PngColorType.Grayscale });

        var t = _decoder.Decode(bytes, 1, 1, 1);

        Assert.Equal(1000 / 65535f, t.Data[0], 6);
    }

    [Fact]
    public void Palette_png_decodes_to_its_colours()
    {
        using var img = TestImages.Gradient(16, 16);
        var bytes = TestImages.Png(img, new PngEncoder { ColorType = PngColorType.Palette });

        var t = _decoder.Decode(bytes, 1, 16, 16);

        Assert.InRange(t[0, 0, 0], 0f, 0.02f);
        Assert.InRange(t[0, 0, 15], 0.98f, 1f);
    }

    [Fact]
    public void Exif_orientation_is_applied_before_resizing()
    {
        // Dark on the left, bright on the right; orientation 6 means "rotate 90 degrees clockwise to display",
        // which puts the dark side on top.
        using var img = TestImages.Gradient(32, 16);
        var upright = _decoder.Decode(TestImages.JpegWithOrientation(img, 1), 1, 16, 16);
        var rotated = _decoder.Decode(TestImages.JpegWithOrientation(img, 6), 1, 16, 16);

        Assert.True(upright[0, 8, 0] < 0.2f && upright[0, 8, 15] > 0.8f);
        Assert.True(rotated[0, 0, 8] < 0.2f && rotated[0, 15, 8] > 0.8f, "the rotated image should be dark at the top");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(4000, 3)]
    [InlineData(3, 4000)]
    public void Extreme_aspect_ratios_and_single_pixels_resize_to_the_model_input(int width, int height)
    {
        using var img = new Image<Rgba32>(width, height, new Rgba32(51, 51, 51, 255));

        var t = _decoder.Decode(TestImages.Png(img), 3, 28, 28);

        Assert.Equal(3 * 28 * 28, t.Data.Length);
        Assert.All(t.Data, v => Assert.Equal(0.2f, v, 2));
    }

    [Fact]
    public void Cmyk_jpeg_is_converted_to_rgb()
    {
        // ImageSharp 2.1 cannot write CMYK; the fixture comes from tools/images/make_odd_images.py (PIL).
        var bytes = File.ReadAllBytes(RepoPaths.Fixture("images", "cmyk-blue-8x8.jpg"));
        Assert.Equal(JpegColorType.Cmyk, Image.Identify(bytes).Metadata.GetJpegMetadata().ColorType);

        var t = _decoder.Decode(bytes, 3, 8, 8);

        Assert.InRange(t[0, 4, 4], 0f, 0.1f);
        Assert.InRange(t[2, 4, 4], 0.9f, 1f);
    }

    [Fact]
    public void Animated_gif_within_the_frame_limit_uses_the_first_frame()
    {
        var t = _decoder.Decode(TestImages.Gif(3), 3, 8, 8);

        Assert.Equal(10 / 255f, t[0, 0, 0], 2);
    }

    public static TheoryData<string, byte[], ImageRejection> Malformed => new()
    {
        { "empty", [], ImageRejection.Undecodable },
        { "text", "hello, this is not an image"u8.ToArray(), ImageRejection.Undecodable },
        { "truncated png", TestImages.Png(TestImages.Gradient(64, 64))[..100], ImageRejection.Undecodable },
        { "bomb header", TestImages.PngBombHeader(100_000, 100_000), ImageRejection.TooLarge },
        { "too wide", TestImages.PngBombHeader(30_000, 1), ImageRejection.TooLarge },
        { "too many frames", TestImages.Gif(10), ImageRejection.TooLarge },
        { "over the byte limit", new byte[(1 << 20) + 1], ImageRejection.TooLarge },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Malformed_uploads_are_rejected_with_a_reason(string name, byte[] bytes, ImageRejection expected)
    {
        var ex = Assert.Throws<ImageRejectedException>(() => _decoder.Decode(bytes, 1, 28, 28));

        Assert.Equal(expected, ex.Reason);
        Assert.False(string.IsNullOrWhiteSpace(ex.Message), name);
    }

    [Fact]
    public void Png_encoding_round_trips_quantized_values()
    {
        var data = Enumerable.Range(0, 3 * 4 * 5).Select(i => (i * 37 % 256) / 255f).ToArray();
        var t = new ImageTensor(data, 3, 4, 5);

        var back = _decoder.Decode(PngEncoding.Encode(t), 3, 4, 5);

        Assert.Equal(t.Quantize().Data, back.Data);
    }
}
