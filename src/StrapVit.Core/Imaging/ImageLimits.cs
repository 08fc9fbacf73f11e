namespace StrapVit.Core.Imaging;

/// <summary>Limits checked before an upload is fully decoded (configuration section <c>Images</c>).</summary>
public sealed class ImageLimits
{
    public const string SectionName = "Images";

    /// <summary>Largest accepted upload, in bytes.</summary>
    public long MaxBytes { get; set; } = 10 * 1024 * 1024;

    /// <summary>Largest width x height, read from the header before decoding (defeats decompression bombs).</summary>
    public long MaxPixels { get; set; } = 24_000_000;

    /// <summary>Largest width or height on its own.</summary>
    public int MaxDimension { get; set; } = 16_384;

    /// <summary>Most frames an animated image may have; only the first is classified.</summary>
    public int MaxFrames { get; set; } = 16;
}
