using Microsoft.AspNetCore.Http.Features;
using StrapVit.Api.Errors;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Uploads;

/// <summary>
/// Reads the uploaded image of a request: the file field <c>image</c> of a multipart form, or the raw body with an
/// <c>image/*</c> content type (CONTRACT.md section 4). The byte limit is enforced while reading.
/// </summary>
public static class ImageUpload
{
    public const string FieldName = "image";

    /// <summary>The image bytes and, for multipart requests, the other form fields.</summary>
    public sealed record Content(byte[] Bytes, IFormCollection? Form);

    public static async Task<Content> ReadAsync(HttpRequest request, ImageLimits limits, CancellationToken ct)
    {
        if (request.HasFormContentType)
        {
            IFormCollection form;
            try
            {
                form = await request.ReadFormAsync(ct);
            }
            catch (InvalidDataException ex)
            {
                var tooLarge = ex.Message.Contains("limit", StringComparison.OrdinalIgnoreCase);
                throw new ProblemException(
                    tooLarge ? StatusCodes.Status413PayloadTooLarge : StatusCodes.Status400BadRequest,
                    tooLarge ? "Request too large" : "Malformed form",
                    ex.Message);
            }

            var file = form.Files.GetFile(FieldName)
                ?? throw new ProblemException(StatusCodes.Status400BadRequest, "Missing image",
                    $"The multipart form has no file field '{FieldName}'.");
            if (file.Length > limits.MaxBytes)
            {
                throw new ImageRejectedException(ImageRejection.TooLarge, $"The image is {file.Length} bytes; the limit is {limits.MaxBytes}.");
            }

            using var ms = new MemoryStream((int)file.Length);
            await file.CopyToAsync(ms, ct);
            return new Content(ms.ToArray(), form);
        }

        var contentType = request.ContentType;
        if (contentType is null || !contentType.StartsWith("image/", StringComparison.OrdinalIgnoreCase))
        {
            throw new ProblemException(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"Send multipart/form-data with a file field '{FieldName}', or the raw image with an image/* content type; got '{contentType ?? "none"}'.");
        }

        if (request.ContentLength > limits.MaxBytes)
        {
            throw new ImageRejectedException(ImageRejection.TooLarge, $"The image is {request.ContentLength} bytes; the limit is {limits.MaxBytes}.");
        }

        return new Content(await ReadBoundedAsync(request.Body, limits.MaxBytes, ct), null);
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

    /// <summary>Form and body limits that let the image limit be the one that trips first.</summary>
    public static void ConfigureFormOptions(FormOptions options, ImageLimits limits)
    {
        options.MultipartBodyLengthLimit = limits.MaxBytes + (1 << 20);
        options.ValueCountLimit = 64;
    }
}
