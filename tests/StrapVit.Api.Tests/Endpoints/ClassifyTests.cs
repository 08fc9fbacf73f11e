using System.Net;
using System.Text.Json;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Endpoints;

public sealed class ClassifyTests(ServiceFactory factory) : IClassFixture<ServiceFactory>
{
    private readonly HttpClient _client = factory.CreateClient();

    [Theory]
    [InlineData("trouser.png", "Trouser")]
    [InlineData("ankle-boot.png", "Ankle boot")]
    [InlineData("bag.png", "Bag")]
    [InlineData("sneaker.png", "Sneaker")]
    [InlineData("pullover.png", "Pullover")]
    public async Task Sample_images_are_classified_correctly(string file, string label)
    {
        using var response = await _client.PostAsync("/v1/classify?defense=off", Http.Multipart(File.ReadAllBytes(RepoPaths.Sample(file))));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.JsonAsync();
        var predictions = body.GetProperty("predictions").EnumerateArray().ToArray();
        Assert.Equal(5, predictions.Length);
        Assert.Equal(label, predictions[0].GetProperty("label").GetString());
        Assert.True(predictions[0].GetProperty("probability").GetSingle() > 0.5f);
        var probabilities = predictions.Select(p => p.GetProperty("probability").GetSingle()).ToArray();
        Assert.Equal(probabilities.OrderDescending(), probabilities);
        Assert.InRange(probabilities.Sum(), 0.5f, 1.0001f);
        Assert.Equal(JsonValueKind.Null, body.GetProperty("defense").ValueKind);
        Assert.True(body.GetProperty("timingsMs").GetProperty("total").GetDouble() > 0);
    }

    [Fact]
    public async Task Raw_body_and_multipart_give_the_same_answer()
    {
        var png = File.ReadAllBytes(RepoPaths.Sample("bag.png"));

        using var multipart = await _client.PostAsync("/v1/classify?topK=10&seed=3", Http.Multipart(png));
        using var raw = await _client.PostAsync("/v1/classify?topK=10&seed=3", Http.Raw(png, "image/png"));

        var a = (await multipart.JsonAsync()).GetProperty("predictions").GetRawText();
        var b = (await raw.JsonAsync()).GetProperty("predictions").GetRawText();
        Assert.Equal(a, b);
    }

    [Fact]
    public async Task Rgb_jpeg_at_another_size_is_converted_and_resized()
    {
        var jpg = File.ReadAllBytes(RepoPaths.Sample("trouser-rgb-112.jpg"));

        using var response = await _client.PostAsync("/v1/classify?topK=1", Http.Raw(jpg, "image/jpeg"));

        var body = await response.JsonAsync();
        var top = Assert.Single(body.GetProperty("predictions").EnumerateArray());
        Assert.Equal("Trouser", top.GetProperty("label").GetString());
    }

    [Theory]
    [InlineData("topK=0", "topK")]
    [InlineData("topK=11", "topK")]
    [InlineData("topK=five", "topK")]
    [InlineData("defense=maybe", "defense")]
    public async Task Bad_query_parameters_are_400_problems_naming_the_parameter(string query, string parameter)
    {
        using var response = await _client.PostAsync($"/v1/classify?{query}", Http.Multipart(File.ReadAllBytes(RepoPaths.Sample("bag.png"))));

        var problem = await response.AssertProblemAsync(400);
        Assert.Contains(parameter, problem.GetProperty("title").GetString(), StringComparison.Ordinal);
    }

    public static TheoryData<string, Func<HttpContent>, int> MalformedUploads => new()
    {
        { "empty raw body", () => Http.Raw([], "image/png"), 400 },
        { "empty file", () => Http.Multipart([]), 400 },
        { "not an image", () => Http.Raw("definitely not a png"u8.ToArray(), "image/png"), 400 },
        { "truncated png", () => Http.Raw(File.ReadAllBytes(RepoPaths.Sample("bag.png"))[..60], "image/png"), 400 },
        { "decompression bomb header", () => Http.Multipart(TestImages.PngBombHeader(60_000, 60_000)), 413 },
        { "too many bytes", () => Http.Raw(new byte[ServiceFactory.TestMaxBytes + 1], "image/png"), 413 },
        { "too many bytes in a form", () => Http.Multipart(new byte[ServiceFactory.TestMaxBytes + 1]), 413 },
        { "wrong content type", () => Http.Raw(File.ReadAllBytes(RepoPaths.Sample("bag.png")), "text/plain"), 415 },
        { "no content type", () => new ByteArrayContent(File.ReadAllBytes(RepoPaths.Sample("bag.png"))), 415 },
        { "missing image field", () => Http.Multipart(File.ReadAllBytes(RepoPaths.Sample("bag.png")), field: "picture"), 400 },
        { "many-frame gif", () => Http.Multipart(TestImages.Gif(12), "image/gif"), 413 },
    };

    [Theory]
    [MemberData(nameof(MalformedUploads))]
    public async Task Malformed_uploads_get_a_problem_and_the_service_stays_ready(string name, Func<HttpContent> content, int status)
    {
        using var response = await _client.PostAsync("/v1/classify", content());

        await response.AssertProblemAsync(status);
        using var ready = await _client.GetAsync("/healthz/ready");
        Assert.True(ready.IsSuccessStatusCode, $"not ready after '{name}'");
        using var again = await _client.PostAsync("/v1/classify?topK=1", Http.Multipart(File.ReadAllBytes(RepoPaths.Sample("trouser.png"))));
        Assert.Equal("Trouser", (await again.JsonAsync()).GetProperty("predictions")[0].GetProperty("label").GetString());
    }

    public static TheoryData<string, Func<byte[]>> OddImages => new()
    {
        { "16-bit gray png", () => TestImages.Png16(RepoPaths.Sample("trouser.png")) },
        { "palette png", () => TestImages.PngPalette(RepoPaths.Sample("trouser.png")) },
        { "exif-rotated jpeg", () => TestImages.RotatedJpegOf(RepoPaths.Sample("trouser.png")) },
    };

    [Theory]
    [MemberData(nameof(OddImages))]
    public async Task Odd_but_valid_images_of_a_trouser_are_still_a_trouser(string name, Func<byte[]> image)
    {
        using var response = await _client.PostAsync("/v1/classify?topK=1", Http.Multipart(image()));

        Assert.True(response.IsSuccessStatusCode, name);
        Assert.Equal("Trouser", (await response.JsonAsync()).GetProperty("predictions")[0].GetProperty("label").GetString());
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(5000, 2)]
    public async Task Tiny_and_very_wide_images_are_classified(int width, int height)
    {
        using var response = await _client.PostAsync("/v1/classify", Http.Multipart(TestImages.Png(TestImages.Gradient(width, height))));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(5, (await response.JsonAsync()).GetProperty("predictions").GetArrayLength());
    }
}
