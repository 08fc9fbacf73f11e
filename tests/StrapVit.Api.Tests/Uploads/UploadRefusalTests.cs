using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Uploads;

/// <summary>
/// The hostile uploads of issue 13 (a truncated JPEG, a BMP claiming 100000x100000, a bad boundary, a truncated form,
/// two image files) and the rest of the multipart grammar: each is a 4xx problem, and the service stays ready.
/// </summary>
public sealed class UploadRefusalTests(ServiceFactory factory) : IClassFixture<ServiceFactory>
{
    private readonly HttpClient _client = factory.CreateClient();

    private static byte[] Png => File.ReadAllBytes(RepoPaths.Sample("bag.png"));

    private static byte[] Jpeg => File.ReadAllBytes(RepoPaths.Sample("trouser-rgb-112.jpg"));

    public static TheoryData<string, Func<HttpContent>, int> Refusals => new()
    {
        // 154 bytes of this JPEG made ImageSharp 2.1 throw a NullReferenceException (a 500 before). A cut inside the scan
        // data is decoded leniently, as the grey rest of the image, which is an answer, not a failure.
        { "truncated jpeg, raw", () => Http.Raw(TestImages.Encoded("jpeg")[..154], "image/jpeg"), 400 },
        { "truncated jpeg, in a form", () => new MultipartBody().File(Jpeg[..400], contentType: "image/jpeg").Content(), 400 },
        { "bmp claiming 100000x100000", () => Http.Raw(TestImages.ClaimingSize("bmp", 100_000, 100_000), "image/bmp"), 413 },
        { "gif claiming 65535x65535 in a form", () => new MultipartBody().File(TestImages.ClaimingSize("gif", 65_535, 65_535), contentType: "image/gif").Content(), 413 },
        { "no boundary", () => new MultipartBody().File(Png).Content("multipart/form-data"), 400 },
        { "a boundary the body never uses", () => new MultipartBody().File(Png).Content("multipart/form-data; boundary=something-else"), 400 },
        { "a boundary over 70 characters", () => new MultipartBody(new string('b', 71)).File(Png).Content(), 400 },
        { "a body cut off inside the file", () => MultipartBody.Content(new MultipartBody().File(Png).Complete()[..300], "multipart/form-data; boundary=strapvit-test-boundary"), 400 },
        { "a body without its closing boundary", () => MultipartBody.Content(Without(new MultipartBody().File(Png).Complete(), "--strapvit-test-boundary--\r\n"), "multipart/form-data; boundary=strapvit-test-boundary"), 400 },
        { "an empty multipart body", () => MultipartBody.Content([], "multipart/form-data; boundary=strapvit-test-boundary"), 400 },
        { "two image files", () => new MultipartBody().File(Png).File(Png).Content(), 400 },
        { "an extra file field", () => new MultipartBody().File(Png).File(Png, name: "other").Content(), 400 },
        { "an image part without a filename", () => new MultipartBody().Part("name=\"image\"", Png, "image/png").Content(), 400 },
        { "an image part of type text/plain", () => new MultipartBody().File(Png, contentType: "text/plain").Content(), 415 },
        { "a urlencoded form", () => Http.Raw("image=abc"u8.ToArray(), "application/x-www-form-urlencoded"), 415 },
        { "a form declaring more than the limit", () => new MultipartBody().File(new byte[ServiceFactory.TestMaxBytes + (128 * 1024)]).Content(), 413 },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task Hostile_uploads_are_4xx_problems_and_the_service_stays_ready(string name, Func<HttpContent> content, int status)
    {
        using var response = await _client.PostAsync("/v1/classify", content());

        var problem = await response.AssertProblemAsync(status);
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("detail").GetString()), name);
        using var ready = await _client.GetAsync("/healthz/ready");
        Assert.True(ready.IsSuccessStatusCode, $"not ready after '{name}'");
    }

    [Fact]
    public async Task A_hand_written_form_with_one_image_is_classified()
    {
        using var response = await _client.PostAsync("/v1/classify?topK=1", new MultipartBody().Field("note", "ignored").File(Png, contentType: "application/octet-stream").Content());

        Assert.Equal("Bag", (await response.JsonAsync()).GetProperty("predictions")[0].GetProperty("label").GetString());
    }

    private static byte[] Without(byte[] body, string tail) => body[..^System.Text.Encoding.ASCII.GetByteCount(tail)];
}
