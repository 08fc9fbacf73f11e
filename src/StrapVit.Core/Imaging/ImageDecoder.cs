using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Webp;
using SixLabors.ImageSharp.Memory;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using StrapVit.Core.Diagnostics;

namespace StrapVit.Core.Imaging;

/// <summary>
/// Turns uploaded bytes into the model's input (README, 'Using the API'): identify the header first and enforce the
/// byte/pixel/frame limits, then decode, apply the EXIF orientation, convert channels, resize to H x W and scale to
/// [0, 1]. Only PNG, JPEG, GIF, BMP and WebP are accepted, since every extra codec is extra attack surface.
/// </summary>
public sealed class ImageDecoder
{
    private readonly ImageLimits _limits;
    private readonly Configuration _configuration;

    public ImageDecoder(ImageLimits limits)
    {
        _limits = limits;
        _configuration = new Configuration(
            new PngConfigurationModule(),
            new JpegConfigurationModule(),
            new GifConfigurationModule(),
            new BmpConfigurationModule(),
            new WebpConfigurationModule());
        // Decode at most one frame past the limit, so an oversized animation costs bounded work before it is refused.
        _configuration.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { MaxFrames = (uint)limits.MaxFrames + 1 });
    }

    /// <summary>Formats accepted, as MIME types.</summary>
    public static IReadOnlyList<string> AcceptedMediaTypes { get; } =
        ["image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp"];

    /// <summary>Decodes <paramref name="bytes"/> into a <c>[C, H, W]</c> tensor in [0, 1].</summary>
    /// <exception cref="ImageRejectedException">The bytes are not an acceptable image.</exception>
    public ImageTensor Decode(ReadOnlySpan<byte> bytes, int channels, int height, int width)
    {
        using var activity = CoreActivities.Decode(bytes.Length);
        if (bytes.IsEmpty)
        {
            throw new ImageRejectedException(ImageRejection.Undecodable, "The image is empty.");
        }

        if (bytes.Length > _limits.MaxBytes)
        {
            throw new ImageRejectedException(ImageRejection.TooLarge, $"The image is {bytes.Length} bytes; the limit is {_limits.MaxBytes}.");
        }

        CheckHeader(bytes);
        using var image = Load(bytes);
        if (image.Frames.Count > _limits.MaxFrames)
        {
            throw new ImageRejectedException(ImageRejection.TooLarge, $"The image has more than {_limits.MaxFrames} frames.");
        }

        while (image.Frames.Count > 1)
        {
            image.Frames.RemoveFrame(image.Frames.Count - 1);
        }

        image.Mutate(x =>
        {
            x.AutoOrient();
            // The size after orientation: a rotated image swaps its sides.
            if (x.GetCurrentSize() != new Size(width, height))
            {
                x.Resize(new ResizeOptions { Size = new Size(width, height), Mode = ResizeMode.Stretch, Sampler = KnownResamplers.Triangle });
            }
        });
        return ToTensor(image, channels);
    }

    private void CheckHeader(ReadOnlySpan<byte> bytes)
    {
        // Our own reading of the header first: it needs no decoder, so no decoder flaw stands between a size claim and 413.
        if (ImageHeader.Probe(bytes) is { } claim)
        {
            CheckSize(claim.Width, claim.Height);
            if (claim.Frames > _limits.MaxFrames)
            {
                throw new ImageRejectedException(ImageRejection.TooLarge, $"The image has {claim.Frames} frames; the limit is {_limits.MaxFrames}.");
            }
        }

        IImageInfo? info;
        try
        {
            using var stream = new MemoryStream(bytes.ToArray(), writable: false);
            info = Image.Identify(_configuration, stream);
        }
        catch (Exception ex) when (Rejection(ex) is { } rejection)
        {
            throw new ImageRejectedException(rejection, $"The image header cannot be read: {Describe(ex)}", ex);
        }

        if (info is null)
        {
            throw new ImageRejectedException(ImageRejection.Undecodable,
                $"The bytes are not an image in an accepted format ({string.Join(", ", AcceptedMediaTypes)}).");
        }

        if (info.Width < 1 || info.Height < 1)
        {
            throw new ImageRejectedException(ImageRejection.Undecodable, $"The image has no pixels ({info.Width}x{info.Height}).");
        }

        CheckSize(info.Width, info.Height);
    }

    private void CheckSize(long width, long height)
    {
        if (width > _limits.MaxDimension || height > _limits.MaxDimension || width * height > _limits.MaxPixels)
        {
            throw new ImageRejectedException(ImageRejection.TooLarge,
                $"The image is {width}x{height}; the limits are {_limits.MaxPixels} pixels and {_limits.MaxDimension} per side.");
        }
    }

    private Image<Rgba64> Load(ReadOnlySpan<byte> bytes)
    {
        try
        {
            // 16 bits per channel keeps 16-bit sources exact and 8-bit ones exact after /65535 (v * 257 / 65535 = v / 255).
            return Image.Load<Rgba64>(_configuration, bytes);
        }
        catch (Exception ex) when (Rejection(ex) is { } rejection)
        {
            throw new ImageRejectedException(rejection, $"The image cannot be decoded: {Describe(ex)}", ex);
        }
    }

    /// <summary>
    /// What an exception thrown by ImageSharp while it parses untrusted bytes means for the upload, or null for one that
    /// is not about the bytes (out of memory, a thread abort) and must surface as a server error. Besides its own
    /// <see cref="ImageFormatException"/> family, ImageSharp 2.1 is known to fail on crafted or cut-off files with
    /// runtime exceptions from its parsers (null references in the JPEG and WebP decoders on truncated scans, index and
    /// argument range errors in PNG chunk reading, a division by zero on a BMP with zero bits per pixel, an
    /// InvalidOperationException for a BMP over 65535 per side): this filter applies only around the two library calls.
    /// </summary>
    private static ImageRejection? Rejection(Exception ex) => ex switch
    {
        InvalidMemoryOperationException => ImageRejection.TooLarge,
        ImageFormatException or NotSupportedException or InvalidDataException or EndOfStreamException => ImageRejection.Undecodable,
        InvalidOperationException or ArgumentException or IndexOutOfRangeException or NullReferenceException
            or DivideByZeroException or OverflowException => ImageRejection.Undecodable,
        _ => null,
    };

    private static string Describe(Exception ex) =>
        ex is ImageFormatException or NotSupportedException ? ex.Message : $"malformed data ({ex.GetType().Name} in the decoder)";

    private static ImageTensor ToTensor(Image<Rgba64> image, int channels)
    {
        int h = image.Height, w = image.Width;
        var data = new float[channels * h * w];
        image.ProcessPixelRows(rows =>
        {
            for (var y = 0; y < h; y++)
            {
                var row = rows.GetRowSpan(y);
                for (var x = 0; x < w; x++)
                {
                    var p = row[x];
                    // Divide in double so that 8-bit sources land exactly on v / 255 as a float, like torchvision's ToTensor.
                    float r = (float)(p.R / 65535.0), g = (float)(p.G / 65535.0), b = (float)(p.B / 65535.0);
                    if (channels == 1)
                    {
                        // ITU-R 601-2 luma, as PIL's convert("L") and torchvision's Grayscale use; alpha is dropped like
                        // PIL's convert. Gray sources pass through untouched.
                        data[(y * w) + x] = p.R == p.G && p.G == p.B ? r : (float)((0.299 * r) + (0.587 * g) + (0.114 * b));
                    }
                    else
                    {
                        data[(y * w) + x] = r;
                        data[(h * w) + (y * w) + x] = g;
                        data[(2 * h * w) + (y * w) + x] = b;
                    }
                }
            }
        });
        return new ImageTensor(data, channels, h, w);
    }
}
