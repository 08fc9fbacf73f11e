using System.Net;
using System.Text;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Uploads;

/// <summary>
/// Per-endpoint body limits on real Kestrel: image endpoints take <c>Images:MaxBytes</c> (plus the form overhead for
/// multipart), every other body (the patch-job JSON) <c>Limits:MaxRequestBodyBytes</c>, whether or not the client
/// declares a length.
/// </summary>
public sealed class RequestSizeLimitTests(KestrelServiceFixture service) : IClassFixture<KestrelServiceFixture>
{
    [Fact]
    public async Task A_chunked_raw_image_over_the_limit_is_413_while_it_arrives()
    {
        using var response = await service.SendOversizedAsync(() =>
        {
            var content = new StreamContent(new MemoryStream(new byte[ServiceFactory.TestMaxBytes + 1]));
            content.Headers.ContentType = new("image/png");
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/classify") { Content = content };
            request.Headers.TransferEncodingChunked = true;
            return request;
        });

        var problem = await response.AssertProblemAsync(413);
        Assert.Contains(ServiceFactory.TestMaxBytes.ToString(System.Globalization.CultureInfo.InvariantCulture), problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_chunked_form_over_the_image_limit_plus_overhead_is_413()
    {
        var body = new MultipartBody().File(new byte[ServiceFactory.TestMaxBytes + (100 * 1024)]).Complete();
        using var response = await service.SendOversizedAsync(() =>
        {
            var content = new StreamContent(new MemoryStream(body));
            content.Headers.TryAddWithoutValidation("Content-Type", "multipart/form-data; boundary=strapvit-test-boundary");
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/classify") { Content = content };
            request.Headers.TransferEncodingChunked = true;
            return request;
        });

        await response.AssertProblemAsync(413);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_patch_job_body_over_the_json_limit_is_413(bool chunked)
    {
        var json = "{\"targetClass\": 1, \"pad\": \"" + new string('x', 70 * 1024) + "\"}";
        using var response = await service.SendOversizedAsync(() =>
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/patches") { Content = new StringContent(json, Encoding.UTF8, "application/json") };
            request.Headers.TransferEncodingChunked = chunked;
            request.Headers.ExpectContinue = !chunked;
            return request;
        });

        var problem = await response.AssertProblemAsync(413);
        Assert.Contains("65536", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_image_far_larger_than_json_bodies_is_still_accepted_by_the_image_endpoint()
    {
        // 100 KB of PNG (a noisy image compresses badly): above the 64 KB server-wide limit, below the 256 KB image limit.
        var random = new Random(5);
        var data = new float[3 * 200 * 200];
        for (var i = 0; i < data.Length; i++) data[i] = (float)random.NextDouble();
        var png = StrapVit.Testing.TestImages.PngFromTensor(data, 3, 200, 200);
        Assert.InRange(png.Length, 64 * 1024, ServiceFactory.TestMaxBytes);

        using var response = await service.Client.PostAsync("/v1/classify", Http.Raw(png, "image/png"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}
