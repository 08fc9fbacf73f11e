using System.Text;

namespace StrapVit.Api.Tests.Support;

/// <summary>
/// multipart/form-data written byte by byte, so tests can send what HttpClient's MultipartFormDataContent never would:
/// a wrong or missing boundary, a cut-off body, odd part headers.
/// </summary>
public sealed class MultipartBody(string boundary = "strapvit-test-boundary")
{
    private readonly List<byte> body = [];

    public string Boundary { get; } = boundary;

    /// <summary>Adds a part with the given Content-Disposition parameters and optional Content-Type.</summary>
    public MultipartBody Part(string disposition, byte[] content, string? contentType = null)
    {
        Write($"--{Boundary}\r\nContent-Disposition: form-data; {disposition}\r\n");
        if (contentType is not null) Write($"Content-Type: {contentType}\r\n");
        Write("\r\n");
        body.AddRange(content);
        Write("\r\n");
        return this;
    }

    public MultipartBody File(byte[] content, string name = "image", string fileName = "upload.png", string? contentType = "image/png") =>
        Part($"name=\"{name}\"; filename=\"{fileName}\"", content, contentType);

    public MultipartBody Field(string name, string value) => Part($"name=\"{name}\"", Encoding.UTF8.GetBytes(value));

    /// <summary>The body with its closing boundary.</summary>
    public byte[] Complete()
    {
        return [.. body, .. Encoding.ASCII.GetBytes($"--{Boundary}--\r\n")];
    }

    /// <summary>The bytes as a request body with <paramref name="contentType"/> (default: multipart/form-data with this boundary).</summary>
    public static ByteArrayContent Content(byte[] bytes, string contentType)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        return content;
    }

    public ByteArrayContent Content(string? contentType = null) => Content(Complete(), contentType ?? $"multipart/form-data; boundary={Boundary}");

    private void Write(string text) => body.AddRange(Encoding.ASCII.GetBytes(text));
}
