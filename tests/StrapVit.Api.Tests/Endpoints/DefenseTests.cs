using System.Net;
using System.Text.Json;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using StrapVit.Api.Tests.Deployment;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Endpoints;

/// <summary>The STRAP-ViT defense in front of classification: modes, report, seeding, inspection.</summary>
public sealed class DefenseTests(ServiceFactory factory) : IClassFixture<ServiceFactory>
{
    private readonly HttpClient _client = factory.CreateClient();

    private static byte[] Bag => File.ReadAllBytes(RepoPaths.Sample("bag.png"));

    /// <summary>The bag with an 8x8 checkerboard in its empty top-left corner: tokens no clean image has.</summary>
    private static byte[] BagWithCheckerboard()
    {
        using var image = Image.Load<L8>(Bag);
        for (var y = 2; y < 10; y++)
        {
            for (var x = 2; x < 10; x++) image[x, y] = new L8(((x + y) & 1) == 0 ? (byte)255 : (byte)0);
        }

        using var png = new MemoryStream();
        image.SaveAsPng(png);
        return png.ToArray();
    }

    [Fact]
    public async Task A_clean_image_loses_no_token_by_default_and_still_faces_the_check()
    {
        using var response = await _client.PostAsync("/v1/classify?seed=42", Http.Multipart(Bag));

        var body = await response.JsonAsync();
        var defense = body.GetProperty("defense");
        Assert.Equal("mitigate", defense.GetProperty("mode").GetString());
        Assert.Equal((0, 0), (defense.GetProperty("k").GetInt32(), defense.GetProperty("flaggedAboveThreshold").GetInt32()));
        Assert.Empty(defense.GetProperty("flaggedTokens").EnumerateArray());
        Assert.Empty(defense.GetProperty("transforms").EnumerateArray());
        Assert.Equal("agreed", defense.GetProperty("verification").GetProperty("outcome").GetString());
        Assert.Equal("Bag", body.GetProperty("predictions")[0].GetProperty("label").GetString());
    }

    [Fact]
    public async Task The_defense_mitigates_by_default_and_reports_what_it_did()
    {
        using var response = await _client.PostAsync("/v1/classify?seed=42", Http.Multipart(BagWithCheckerboard()));

        var body = await response.JsonAsync();
        var defense = body.GetProperty("defense");
        Assert.Equal("mitigate", defense.GetProperty("mode").GetString());
        Assert.Equal("token", defense.GetProperty("variant").GetString());
        Assert.Equal(42, defense.GetProperty("seed").GetInt32());
        Assert.Equal(0, defense.GetProperty("k").GetInt32());
        var flagged = defense.GetProperty("flaggedTokens").EnumerateArray().ToArray();
        var over = flagged.Count(f => f.GetProperty("score").GetDouble() > f.GetProperty("threshold").GetDouble());
        Assert.True(over >= 1, "the checkerboard's tokens should be over their thresholds");
        Assert.Equal(over, defense.GetProperty("flaggedAboveThreshold").GetInt32());
        // The checkerboard covers pixels 2-9 of rows and columns: tokens 0-2 of each (4x4 pixels each).
        Assert.All(flagged.Where(f => f.GetProperty("score").GetDouble() > f.GetProperty("threshold").GetDouble()),
            f => Assert.True(f.GetProperty("row").GetInt32() <= 2 && f.GetProperty("col").GetInt32() <= 2));
        Assert.Equal("knn", defense.GetProperty("score").GetString());
        Assert.Equal("drop", defense.GetProperty("neutralization").GetString());
        var window = defense.GetProperty("window").GetInt32();
        Assert.Equal(2, window);
        foreach (var token in flagged)
        {
            var index = token.GetProperty("index").GetInt32();
            Assert.Equal(index / 7, token.GetProperty("row").GetInt32());
            Assert.Equal(index % 7, token.GetProperty("col").GetInt32());
            Assert.True(token.GetProperty("score").GetDouble() > 0);
        }

        // The window: some 2x2 square of the grid is flagged whole.
        var cells = flagged.Select(f => (f.GetProperty("row").GetInt32(), f.GetProperty("col").GetInt32())).ToHashSet();
        Assert.Contains(
            from r in Enumerable.Range(0, 6) from c in Enumerable.Range(0, 6) select (r, c),
            sq => cells.Contains(sq) && cells.Contains((sq.r + 1, sq.c)) && cells.Contains((sq.r, sq.c + 1)) && cells.Contains((sq.r + 1, sq.c + 1)));

        var transforms = defense.GetProperty("transforms").EnumerateArray().ToArray();
        Assert.Equal(flagged.Length, transforms.Length);
        // Every flagged token leaves the sequence, each reported once.
        Assert.Equal(flagged.Select(f => f.GetProperty("index").GetInt32()).Order(), transforms.Select(t => t.GetProperty("index").GetInt32()).Order());
        Assert.All(transforms, t => Assert.Equal(["drop"], t.GetProperty("ops").EnumerateArray().Select(o => o.GetString())));
        Assert.True(body.GetProperty("timingsMs").GetProperty("defense").GetDouble() > 0);
        Assert.Equal("Bag", body.GetProperty("predictions")[0].GetProperty("label").GetString());
        // The masking check runs with the second-round margin that the embedded model's calibration file carries.
        var verification = defense.GetProperty("verification");
        Assert.Equal((9, 3, 24), (verification.GetProperty("windows").GetInt32(), verification.GetProperty("group").GetInt32(), verification.GetProperty("partners").GetInt32()));
        using var calibration = JsonDocument.Parse(File.ReadAllText(Path.Combine(RepoPaths.DefaultModel, "defense-calibration.json")));
        var stored = calibration.RootElement.GetProperty("check").GetProperty("margin").GetDouble();
        Assert.InRange(stored, 0.05, 0.3);
        Assert.Equal(stored, verification.GetProperty("margin").GetDouble());
    }

    [Fact]
    public async Task The_same_seed_gives_the_same_answer()
    {
        using var a = await _client.PostAsync("/v1/classify?seed=7&topK=10", Http.Multipart(Bag));
        using var b = await _client.PostAsync("/v1/classify?seed=7&topK=10", Http.Multipart(Bag));

        var ja = await a.JsonAsync();
        var jb = await b.JsonAsync();
        Assert.Equal(ja.GetProperty("predictions").GetRawText(), jb.GetProperty("predictions").GetRawText());
        Assert.Equal(ja.GetProperty("defense").GetProperty("transforms").GetRawText(), jb.GetProperty("defense").GetProperty("transforms").GetRawText());
    }

    [Fact]
    public async Task Detect_flags_but_classifies_the_untouched_image()
    {
        using var off = await _client.PostAsync("/v1/classify?defense=off&topK=10", Http.Multipart(Bag));
        using var detect = await _client.PostAsync("/v1/classify?defense=detect&topK=10", Http.Multipart(Bag));

        var plain = (await off.JsonAsync()).GetProperty("predictions").EnumerateArray().ToArray();
        var body = await detect.JsonAsync();
        var detected = body.GetProperty("predictions").EnumerateArray().ToArray();
        Assert.Equal("detect", body.GetProperty("defense").GetProperty("mode").GetString());
        Assert.Equal(0, body.GetProperty("defense").GetProperty("transforms").GetArrayLength());
        for (var i = 0; i < plain.Length; i++)
        {
            Assert.Equal(plain[i].GetProperty("index").GetInt32(), detected[i].GetProperty("index").GetInt32());
            Assert.Equal(plain[i].GetProperty("probability").GetDouble(), detected[i].GetProperty("probability").GetDouble(), 4);
        }
    }

    [Theory]
    [InlineData("seed=-1", "seed")]
    [InlineData("seed=x", "seed")]
    [InlineData("defense=on", "defense")]
    public async Task Bad_defense_parameters_are_400(string query, string parameter)
    {
        using var response = await _client.PostAsync($"/v1/classify?{query}", Http.Multipart(Bag));

        var problem = await response.AssertProblemAsync(400);
        Assert.Contains(parameter, problem.GetProperty("title").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Inspect_returns_scores_thresholds_and_a_heatmap()
    {
        using var response = await _client.PostAsync("/v1/defense/inspect", Http.Multipart(Bag));

        var body = await response.JsonAsync();
        Assert.Equal(7, body.GetProperty("rows").GetInt32());
        Assert.Equal(7, body.GetProperty("cols").GetInt32());
        Assert.Equal(49, body.GetProperty("scores").GetArrayLength());
        Assert.Equal(49, body.GetProperty("thresholds").GetArrayLength());
        Assert.Equal("detect", body.GetProperty("report").GetProperty("mode").GetString());
        var png = Convert.FromBase64String(body.GetProperty("heatmapPng").GetString()!);
        var info = Image.Identify(png);
        Assert.True(info.Width >= 224 && info.Height >= 224);
    }

    [Fact]
    public async Task Inspect_answers_a_png_when_asked()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/defense/inspect") { Content = Http.Multipart(Bag) };
        request.Headers.Accept.ParseAdd("image/png");

        using var response = await _client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(0x89, (await response.Content.ReadAsByteArrayAsync())[0]);
    }

    [Fact]
    public async Task Model_endpoint_and_metrics_report_the_defense()
    {
        await _client.PostAsync("/v1/classify", Http.Multipart(Bag));

        var model = await (await _client.GetAsync("/v1/model")).JsonAsync();
        var metrics = await _client.GetStringAsync("/metrics");

        Assert.True(model.GetProperty("defense").GetProperty("available").GetBoolean());
        Assert.Equal("token", model.GetProperty("defense").GetProperty("variant").GetString());
        Assert.Equal(JsonValueKind.Null, model.GetProperty("defense").GetProperty("error").ValueKind);
        var page = MetricsExposition.Parse(metrics);
        Assert.True(page.Value("strapvit_defense_duration_seconds_count", ("mode", "mitigate")) >= 1);
        Assert.True(page.Value("strapvit_defense_tokens_flagged_count") >= 1);
    }
}
