using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;
using StrapVit.Api.Errors;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Uploads;

/// <summary>
/// Reads the uploaded image of a request: the one file field <c>image</c> of a multipart form, or the raw body with
/// an <c>image/*</c> content type (docs/API.md, 'Conventions'). The size limit is the request's own (Kestrel enforces it
/// while the body arrives), checked against Content-Length up front and again while reading. Everything a client
/// can get wrong in the form's grammar or shape is refused here with the problem to send back.
/// </summary>
public static class ImageUpload
{
    public const string FieldName = "image";

    /// <summary>The multipart boundary's longest legal length (RFC 2046 section 5.1.1).</summary>
    private const int MaxBoundaryLength = 70;

    /// <summary>The image bytes and, for multipart requests, the other form fields.</summary>
    public sealed record Content(byte[] Bytes, IFormCollection? Form);

    public static async Task<Content> ReadAsync(HttpRequest request, ImageLimits limits, BodyLimitOptions bodyLimits, CancellationToken ct)
    {
        if (request.HasFormContentType)
        {
            var formLimit = limits.MaxBytes + bodyLimits.MaxFormOverheadBytes;
            LimitBody(request, formLimit, "form");
            CheckMultipartContentType(request);
            var form = await ReadFormAsync(request, ct);
            var file = SingleImageFile(form);
            if (file.Length > limits.MaxBytes)
            {
                throw new ImageRejectedException(ImageRejection.TooLarge, $"The image is {file.Length} bytes; the limit is {limits.MaxBytes}.");
            }

            // The length is known: read straight into the array the decoder gets.
            var bytes = new byte[file.Length];
            await using var stream = file.OpenReadStream();
            await stream.ReadExactlyAsync(bytes, ct);
            return new Content(bytes, form);
        }

        var contentType = request.ContentType;
        if (contentType is null || !contentType.StartsWith("image/", StringComparison.OrdinalIgnoreCase))
        {
            throw new ProblemException(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"Send multipart/form-data with a file field '{FieldName}', or the raw image with an image/* content type; got '{contentType ?? "none"}'.");
        }

        LimitBody(request, limits.MaxBytes, "image");
        return new Content(await ReadBoundedAsync(request.Body, limits.MaxBytes, ct), null);
    }

    /// <summary>
    /// Gives this request its own body limit in place of the server-wide one (which is sized for JSON bodies), and
    /// refuses a declared length over it before reading a byte.
    /// </summary>
    private static void LimitBody(HttpRequest request, long limit, string what)
    {
        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } feature)
        {
            feature.MaxRequestBodySize = limit;
        }

        if (request.ContentLength > limit)
        {
            throw new ImageRejectedException(ImageRejection.TooLarge, $"The {what} is {request.ContentLength} bytes; the limit is {limit}.");
        }
    }

    private static void CheckMultipartContentType(HttpRequest request)
    {
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var type)
            || !type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
        {
            // application/x-www-form-urlencoded is a form too, but it cannot carry a file.
            throw new ProblemException(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"A form upload must be multipart/form-data with a file field '{FieldName}'; got '{request.ContentType}'.");
        }

        var boundary = HeaderUtilities.RemoveQuotes(type.Boundary);
        if (StringSegment.IsNullOrEmpty(boundary) || boundary.Length > MaxBoundaryLength)
        {
            throw new ProblemException(StatusCodes.Status400BadRequest, "Malformed form",
                $"The multipart content type needs a boundary of 1 to {MaxBoundaryLength} characters; got '{type.Boundary}'.");
        }
    }

    private static async Task<IFormCollection> ReadFormAsync(HttpRequest request, CancellationToken ct)
    {
        try
        {
            return await request.ReadFormAsync(ct);
        }
        catch (InvalidDataException ex)
        {
            // The multipart reader's grammar and limit errors. Only its body-length limit is about size.
            var tooLarge = ex.Message.StartsWith("Multipart body length limit", StringComparison.Ordinal);
            throw new ProblemException(
                tooLarge ? StatusCodes.Status413PayloadTooLarge : StatusCodes.Status400BadRequest,
                tooLarge ? "Request too large" : "Malformed form",
                ex.Message);
        }
        catch (IOException ex) when (ex is not BadHttpRequestException && !request.HttpContext.RequestAborted.IsCancellationRequested)
        {
            // The body ended before the closing boundary (a truncated form, or a boundary the body never uses). A
            // client that went away instead is left to the exception handler (499), as is Kestrel's own 400/413.
            throw new ProblemException(StatusCodes.Status400BadRequest, "Malformed form",
                $"The multipart body ended before its closing boundary: {ex.Message}");
        }
    }

    /// <summary>The form's one file, named <c>image</c>, with an image content type (or none); every other shape is refused.</summary>
    private static IFormFile SingleImageFile(IFormCollection form)
    {
        var images = form.Files.GetFiles(FieldName);
        if (images.Count > 1)
        {
            throw new ProblemException(StatusCodes.Status400BadRequest, "More than one image",
                $"The form carries {images.Count} files in '{FieldName}'; send exactly one.");
        }

        if (form.Files.FirstOrDefault(f => !string.Equals(f.Name, FieldName, StringComparison.Ordinal)) is { } extra)
        {
            throw new ProblemException(StatusCodes.Status400BadRequest, "Unexpected file",
                $"The form carries a file in '{extra.Name}'; only '{FieldName}' takes a file.");
        }

        if (images.Count == 0)
        {
            throw new ProblemException(StatusCodes.Status400BadRequest, "Missing image", form.ContainsKey(FieldName)
                ? $"The form field '{FieldName}' is not a file: its part needs a filename in Content-Disposition."
                : $"The multipart form has no file field '{FieldName}'.");
        }

        var file = images[0];
        if (!string.IsNullOrEmpty(file.ContentType)
            && !file.ContentType.StartsWith("image/", StringComparison.OrdinalIgnoreCase)
            && !file.ContentType.StartsWith("application/octet-stream", StringComparison.OrdinalIgnoreCase))
        {
            throw new ProblemException(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"The file part '{FieldName}' is '{file.ContentType}'; send an image/* (or application/octet-stream) part.");
        }

        return file;
    }

    private static async Task<byte[]> ReadBoundedAsync(Stream body, long maxBytes, CancellationToken ct)
    {
        using var ms = new MemoryStream();
        var buffer = new byte[81920];
        int read;
        while ((read = await body.ReadAsync(buffer, ct)) > 0)
        {
            if (ms.Length + read > maxBytes)
            {
                throw new ImageRejectedException(ImageRejection.TooLarge, $"The image is larger than the limit of {maxBytes} bytes.");
            }

            ms.Write(buffer, 0, read);
        }

        return ms.ToArray();
    }

    /// <summary>Form limits that let the request's body limit and then the image limit be the ones that trip first.</summary>
    public static void ConfigureFormOptions(FormOptions options, ImageLimits limits, BodyLimitOptions bodyLimits)
    {
        options.MultipartBodyLengthLimit = limits.MaxBytes + bodyLimits.MaxFormOverheadBytes;
        options.MultipartBoundaryLengthLimit = MaxBoundaryLength;
        options.ValueCountLimit = 64;
    }
}
