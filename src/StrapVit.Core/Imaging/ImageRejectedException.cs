namespace StrapVit.Core.Imaging;

/// <summary>Why an upload was refused.</summary>
public enum ImageRejection
{
    /// <summary>Not an image, or an image that cannot be decoded (HTTP 400).</summary>
    Undecodable,

    /// <summary>Over a byte, pixel or frame limit (HTTP 413).</summary>
    TooLarge,

    /// <summary>A format the service does not accept (HTTP 415).</summary>
    UnsupportedFormat,
}

/// <summary>An uploaded image the service refuses; the message is safe to show to the client.</summary>
public sealed class ImageRejectedException(ImageRejection reason, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public ImageRejection Reason { get; } = reason;
}
