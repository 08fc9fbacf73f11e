using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using StrapVit.Api.Tests.Support;
using static StrapVit.Api.Tests.InferenceProtocol.V2Bodies;

namespace StrapVit.Api.Tests.InferenceProtocol;

/// <summary>
/// The infer endpoint's body limit on real Kestrel. Unset, it is InferenceProtocol:MaxBatchSize FP32 images as JSON
/// text or one base64 image at Images:MaxBytes, whichever is larger, plus Limits:MaxRequestBodyBytes: with the test
/// settings max(64 x 784 x 24, 256 KiB x 4 / 3) + 64 KiB bytes.
/// </summary>
public sealed class InferenceProtocolBodyLimitTests(KestrelServiceFixture service) : IClassFixture<KestrelServiceFixture>
{
    private const long Limit = (64 * 784 * 24) + (64 * 1024);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_body_over_the_limit_is_413_with_the_protocols_error(bool chunked)
    {
        var body = Body("""{ "name" : "pixel_values", "shape" : [ 1, 1, 28, 28 ], "datatype" : "FP32", "data" : [ ] }""")
            .Replace("\"42\"", "\"" + new string('x', (int)Limit) + "\"", StringComparison.Ordinal);

        using var response = await service.SendOversizedAsync(() =>
        {
            var request = new HttpRequestMessage(HttpMethod.Post, $"/v2/models/{ModelName}/infer") { Content = Json(body) };
            request.Headers.TransferEncodingChunked = chunked;
            // With a declared length Kestrel can refuse before the body is sent (no upload to break off).
            request.Headers.ExpectContinue = !chunked;
            return request;
        });

        var problem = await response.AssertErrorAsync(413);
        Assert.Contains(Limit.ToString(CultureInfo.InvariantCulture), problem.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_full_batch_written_as_numpy_writes_floats_fits_under_the_limit()
    {
        var random = new Random(11);
        var images = Enumerable.Range(0, 64).Select(_ => Enumerable.Range(0, 784).Select(_ => (float)random.NextDouble()).ToArray()).ToArray();
        var body = Tensor(images, nested: true, parameters: """{ "defense" : "off" }""", outputs: "predicted_class");
        Assert.InRange(Encoding.UTF8.GetByteCount(body), Limit * 3 / 4, Limit);

        using var response = await service.Client.InferAsync(body);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var predicted = (await response.JsonAsync()).Output("predicted_class");
        Assert.Equal([64L], predicted.Shape());
    }
}

/// <summary>
/// Settings that change what infer does: the paper's random transforms (where the seed matters),
/// InferenceProtocol:MaxBatchSize, and API keys the way classification takes them (Auth:RequireForClassify).
/// </summary>
public sealed class InferenceProtocolPolicyTests
{
    [Fact]
    public async Task The_seed_reaches_every_image_of_a_batch_as_it_reaches_v1_classify()
    {
        // The paper's profile draws a random composite of transforms per flagged token: the seed decides the answer.
        await using var factory = new ServiceFactory(new Dictionary<string, string?> { ["Defense:Profile"] = "Paper" });
        using var client = factory.CreateClient();
        string[] samples = ["bag.png", "ankle-boot.png"];
        var seven = new[] { await client.ClassifyAsync(Png(samples[0]), "defense=mitigate&seed=7"), await client.ClassifyAsync(Png(samples[1]), "defense=mitigate&seed=7") };
        var eight = await client.ClassifyAsync(Png(samples[0]), "defense=mitigate&seed=8");
        Assert.NotEqual(seven[0], eight);

        using var response = await client.InferAsync(Tensor(samples.Select(Pixels).ToArray(), parameters: """{ "defense" : "mitigate", "seed" : "7" }""", outputs: "probabilities"));

        var rows = (await response.JsonAsync()).Output("probabilities").Floats().Chunk(10).ToArray();
        for (var i = 0; i < samples.Length; i++)
        {
            for (var c = 0; c < 10; c++)
            {
                Assert.True(Math.Abs(seven[i][c] - rows[i][c]) <= 1e-4f, $"{samples[i]} class {c}: /v1 {seven[i][c]}, v2 {rows[i][c]}");
            }
        }
    }

    private const string Key = "v2-test-key";

    [Fact]
    public async Task A_batch_over_MaxBatchSize_is_413_and_one_at_it_is_served()
    {
        await using var factory = new ServiceFactory(new Dictionary<string, string?> { ["InferenceProtocol:MaxBatchSize"] = "2" });
        using var client = factory.CreateClient();
        var bag = Pixels("bag.png");

        using var over = await client.InferAsync(Tensor([bag, bag, bag], parameters: """{ "defense" : "off" }"""));
        using var at = await client.InferAsync(Tensor([bag, bag], parameters: """{ "defense" : "off" }"""));

        var problem = await over.AssertErrorAsync(413);
        Assert.Equal("Batch too large", problem.GetProperty("title").GetString());
        Assert.Contains("MaxBatchSize allows 2", problem.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, at.StatusCode);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Infer_takes_a_key_only_with_RequireForClassify_and_metadata_stays_open(bool required)
    {
        await using var factory = new ServiceFactory(new Dictionary<string, string?>
        {
            ["Auth:ApiKeys:v2"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(Key))),
            ["Auth:RequireForClassify"] = required ? "true" : "false",
        });
        using var client = factory.CreateClient();
        var body = Tensor([Pixels("bag.png")], parameters: """{ "defense" : "off" }""");

        using var metadata = await client.GetAsync($"/v2/models/{ModelName}");
        using var without = await client.InferAsync(body);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        using var with = await client.InferAsync(body);

        Assert.Equal(HttpStatusCode.OK, metadata.StatusCode);
        Assert.Equal(HttpStatusCode.OK, with.StatusCode);
        if (required)
        {
            await without.AssertErrorAsync(401);
        }
        else
        {
            Assert.Equal(HttpStatusCode.OK, without.StatusCode);
        }
    }
}
