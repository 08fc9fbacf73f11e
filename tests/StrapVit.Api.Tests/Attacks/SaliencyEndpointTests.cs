using System.Net;
using System.Net.Http.Headers;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Attacks;

public sealed class SaliencyEndpointTests(AttackServiceFactory factory) : IClassFixture<AttackServiceFactory>
{
    private readonly HttpClient client = factory.CreateClient();

    [Fact]
    public async Task Default_class_is_the_prediction_and_the_map_covers_the_image()
    {
        using var classify = await client.PostAsync("/v1/classify?topK=1", Http.Multipart(AttackServiceFactory.Image()));
        var predicted = (await classify.JsonAsync()).GetProperty("predictions")[0].GetProperty("index").GetInt32();

        using var response = await client.PostAsync("/v1/explain/saliency", Http.Multipart(AttackServiceFactory.Image()));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.JsonAsync();
        Assert.Equal(predicted, body.GetProperty("class").GetInt32());
        var map = body.GetProperty("map").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        Assert.Equal(12 * 12, map.Length);
        Assert.All(map, v => Assert.True(v >= 0));
        Assert.Equal(map.Max(), body.GetProperty("max").GetSingle());
        Assert.True(map.Max() > 0);
        Assert.Equal([0x89, 0x50, 0x4E, 0x47], Convert.FromBase64String(body.GetProperty("heatmapPng").GetString()!)[..4]);
    }

    [Fact]
    public async Task A_given_class_is_explained_and_a_bad_one_is_a_400_naming_it()
    {
        using var ok = await client.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image(), ("class", "4")));
        Assert.Equal(4, (await ok.JsonAsync()).GetProperty("class").GetInt32());

        using var bad = await client.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image(), ("class", "5")));
        var problem = await bad.AssertProblemAsync(400);
        Assert.Contains("'class'", problem.GetProperty("title").GetString());
    }

    [Fact]
    public async Task Accept_image_png_returns_the_heatmap()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/explain/saliency") { Content = Http.Multipart(AttackServiceFactory.Image()) };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("image/png"));
        using var response = await client.SendAsync(request);
        Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        using var image = SixLabors.ImageSharp.Image.Load(await response.Content.ReadAsByteArrayAsync());
        Assert.True(image.Width >= 12 && image.Width % 12 == 0);
    }
}
