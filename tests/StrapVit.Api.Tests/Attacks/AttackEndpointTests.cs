using System.Net;
using System.Net.Http.Json;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using StrapVit.Api.Attacks;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Attacks;

public sealed class AttackEndpointTests(AttackServiceFactory factory) : IClassFixture<AttackServiceFactory>
{
    private readonly HttpClient client = factory.CreateClient();

    private async Task<JsonElement> AttackAsync(string attack, string query = "", params (string, string)[] fields)
    {
        using var response = await client.PostAsync($"/v1/attacks/{attack}{query}", AttackServiceFactory.Form(AttackServiceFactory.Image(), fields));
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return await response.JsonAsync();
    }

    [Fact]
    public async Task Model_reports_gradients_available()
    {
        var body = await client.GetFromJsonAsync<JsonElement>("/v1/model");
        Assert.True(body.GetProperty("gradients").GetProperty("available").GetBoolean());
    }

    [Theory]
    [InlineData("fgsm", new[] { "epsilon", "0.05" })]
    [InlineData("pgd", new[] { "steps", "3", "restarts", "2" })]
    [InlineData("pgd", new[] { "norm", "l2", "epsilon", "0.8", "steps", "3" })]
    [InlineData("deepfool", new[] { "maxIterations", "5" })]
    [InlineData("patch", new[] { "patchSize", "3", "steps", "5" })]
    public async Task Every_attack_answers_the_contract_fields(string attack, string[] pairs)
    {
        var fields = pairs.Chunk(2).Select(p => (p[0], p[1])).ToArray();
        var body = await AttackAsync(attack, "", [.. fields, ("seed", "3")]);

        Assert.Equal(attack, body.GetProperty("attack").GetString());
        var success = body.GetProperty("success").GetBoolean();
        var quantized = body.GetProperty("successQuantized").GetBoolean();
        var original = body.GetProperty("original");
        foreach (var p in new[] { original, body.GetProperty("adversarial"), body.GetProperty("adversarialQuantized") })
        {
            Assert.InRange(p.GetProperty("index").GetInt32(), 0, 4);
            Assert.StartsWith("class", p.GetProperty("label").GetString());
            Assert.InRange(p.GetProperty("probability").GetSingle(), 0f, 1f);
        }

        // Untargeted with no label: success means the class moved away from the clean prediction.
        Assert.Equal(success, body.GetProperty("adversarial").GetProperty("index").GetInt32() != original.GetProperty("index").GetInt32());
        Assert.Equal(quantized, body.GetProperty("adversarialQuantized").GetProperty("index").GetInt32() != original.GetProperty("index").GetInt32());
        var linf = body.GetProperty("linf").GetSingle();
        Assert.InRange(linf, 0f, 1f);
        Assert.True(body.GetProperty("l2").GetSingle() >= linf);
        Assert.True(body.GetProperty("iterations").GetInt32() >= 1);
        Assert.True(body.GetProperty("elapsedMs").GetDouble() > 0);
        Assert.Equal(3, body.GetProperty("seed").GetInt32());
        var png = Convert.FromBase64String(body.GetProperty("imagePng").GetString()!);
        Assert.Equal([0x89, 0x50, 0x4E, 0x47], png[..4]);
        Assert.False(body.TryGetProperty("pixels", out _));
        if (attack == "fgsm") Assert.True(linf <= 0.05f + 1e-6f);
    }

    [Fact]
    public async Task IncludePixels_returns_the_float_image_and_the_PNG_is_its_quantization()
    {
        var body = await AttackAsync("pgd", "?includePixels=true", ("steps", "2"), ("seed", "1"));
        var pixels = body.GetProperty("pixels").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        Assert.Equal(3 * 12 * 12, pixels.Length);
        Assert.All(pixels, v => Assert.InRange(v, 0f, 1f));

        using var decoded = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.Rgb24>(Convert.FromBase64String(body.GetProperty("imagePng").GetString()!));
        Assert.Equal((12, 12), (decoded.Width, decoded.Height));
        Assert.Equal((byte)MathF.Round(pixels[(5 * 12) + 7] * 255), decoded[7, 5].R);
        Assert.Equal((byte)MathF.Round(pixels[144 + (5 * 12) + 7] * 255), decoded[7, 5].G);
    }

    [Fact]
    public async Task Accept_image_png_returns_the_adversarial_PNG()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/attacks/fgsm") { Content = AttackServiceFactory.Form(AttackServiceFactory.Image()) };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("image/png"));
        using var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        Assert.Equal([0x89, 0x50, 0x4E, 0x47], bytes[..4]);
    }

    [Theory]
    [InlineData("pgd")]
    [InlineData("patch")]
    public async Task The_same_seed_reproduces_the_result(string attack)
    {
        var first = await AttackAsync(attack, "?includePixels=true", ("steps", "3"));
        var seed = first.GetProperty("seed").GetInt32();
        var again = await AttackAsync(attack, "?includePixels=true", ("steps", "3"), ("seed", seed.ToString()));
        Assert.Equal(first.GetProperty("pixels").GetRawText(), again.GetProperty("pixels").GetRawText());
        Assert.Equal(first.GetProperty("imagePng").GetString(), again.GetProperty("imagePng").GetString());
    }

    [Fact]
    public async Task Patch_changes_only_its_square_and_says_where_it_is()
    {
        var clean = (await AttackAsync("fgsm", "?includePixels=true", ("epsilon", "0"))).GetProperty("pixels").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        var body = await AttackAsync("patch", "?includePixels=true", ("patchSize", "4"), ("x", "5"), ("y", "2"), ("steps", "5"));
        var patch = body.GetProperty("patch");
        Assert.Equal((5, 2, 4), (patch.GetProperty("x").GetInt32(), patch.GetProperty("y").GetInt32(), patch.GetProperty("size").GetInt32()));
        var adv = body.GetProperty("pixels").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        for (var i = 0; i < adv.Length; i++)
        {
            int y = i % 144 / 12, x = i % 12;
            if (x < 5 || x >= 9 || y < 2 || y >= 6) Assert.Equal(clean[i], adv[i]);
        }
    }

    [Fact]
    public async Task Targeted_success_means_the_target_was_reached()
    {
        var body = await AttackAsync("pgd", "", ("targetClass", "3"), ("epsilon", "0.3"), ("stepSize", "0.05"), ("steps", "20"), ("seed", "1"));
        Assert.Equal(body.GetProperty("success").GetBoolean(), body.GetProperty("adversarial").GetProperty("index").GetInt32() == 3);
        Assert.Equal(body.GetProperty("successQuantized").GetBoolean(), body.GetProperty("adversarialQuantized").GetProperty("index").GetInt32() == 3);
    }

    public static TheoryData<string, string, string, string> BadParameters => new()
    {
        { "fgsm", "epsilon", "abc", "epsilon" },
        { "fgsm", "epsilon", "-0.1", "epsilon" },
        { "fgsm", "epsilon", "0.9", "epsilon" },
        { "fgsm", "epsilon", "NaN", "epsilon" },
        { "fgsm", "label", "5", "label" },
        { "fgsm", "targetClass", "-1", "targetClass" },
        { "fgsm", "seed", "x", "seed" },
        { "fgsm", "eps", "0.1", "eps" },
        { "fgsm", "steps", "3", "steps" },
        { "pgd", "norm", "l3", "norm" },
        { "pgd", "steps", "0", "steps" },
        { "pgd", "steps", "51", "steps" },
        { "pgd", "restarts", "0", "restarts" },
        { "pgd", "restarts", "11", "restarts" },
        { "pgd", "randomStart", "maybe", "randomStart" },
        { "pgd", "earlyStop", "2", "earlyStop" },
        { "pgd", "stepSize", "-1", "stepSize" },
        { "deepfool", "candidates", "1", "candidates" },
        { "deepfool", "candidates", "6", "candidates" },
        { "deepfool", "maxIterations", "0", "maxIterations" },
        { "deepfool", "overshoot", "-0.5", "overshoot" },
        { "patch", "patchSize", "0", "patchSize" },
        { "patch", "patchSize", "7", "patchSize" },
        { "patch", "x", "11", "x" },
        { "patch", "y", "-1", "y" },
        { "patch", "stepSize", "0", "stepSize" },
        { "patch", "steps", "1.5", "steps" },
    };

    [Theory]
    [MemberData(nameof(BadParameters))]
    public async Task Every_bad_parameter_is_a_400_problem_naming_it(string attack, string field, string value, string named)
    {
        using var response = await client.PostAsync($"/v1/attacks/{attack}", AttackServiceFactory.Form(AttackServiceFactory.Image(), (field, value)));
        var problem = await response.AssertProblemAsync(400);
        Assert.Contains($"'{named}'", problem.GetProperty("title").GetString());
    }

    [Fact]
    public async Task A_bad_includePixels_is_a_400_problem_naming_it()
    {
        using var response = await client.PostAsync("/v1/attacks/fgsm?includePixels=perhaps", AttackServiceFactory.Form(AttackServiceFactory.Image()));
        var problem = await response.AssertProblemAsync(400);
        Assert.Contains("'includePixels'", problem.GetProperty("title").GetString());
    }

    [Fact]
    public async Task A_missing_image_is_a_400_problem()
    {
        var form = new MultipartFormDataContent { { new StringContent("0.1"), "epsilon" } };
        using var response = await client.PostAsync("/v1/attacks/fgsm", form);
        await response.AssertProblemAsync(400);
    }

    [Fact]
    public async Task Past_the_concurrency_limit_the_answer_is_429_with_Retry_After()
    {
        var slots = factory.Services.GetRequiredService<AttackSlots>();
        using (slots.Enter("fgsm"))
        using (slots.Enter("fgsm"))
        {
            using var response = await client.PostAsync("/v1/attacks/fgsm", AttackServiceFactory.Form(AttackServiceFactory.Image()));
            await response.AssertProblemAsync(429);
            Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero);
        }

        using var after = await client.PostAsync("/v1/attacks/fgsm", AttackServiceFactory.Form(AttackServiceFactory.Image()));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Attacks_are_counted_in_the_metrics()
    {
        await AttackAsync("fgsm", "", ("epsilon", "0.01"));
        var text = await client.GetStringAsync("/metrics");
        var line = text.Split('\n').Where(l => l.StartsWith("strapvit_attack_duration_seconds_count{attack=\"fgsm\"}", StringComparison.Ordinal)).Single();
        Assert.True(double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) >= 1);
    }
}
