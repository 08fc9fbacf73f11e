using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using StrapVit.Api.Serving;
using StrapVit.Api.Tests.InferenceProtocol;
using StrapVit.Api.Tests.Support;

using StrapVit.Api.Tests.Deployment;

namespace StrapVit.Api.Tests.Endpoints;

/// <summary>
/// The service with dynamic batching on: one run slot, so concurrent requests queue, and batches of at most 8
/// images, so each mode's 8 requests below fill one batch and go without waiting for the delay.
/// </summary>
public sealed class BatchingServiceFactory() : ServiceFactory(new Dictionary<string, string?>
{
    ["Batching:MaxBatchSize"] = "8",
    ["Batching:MaxConcurrentBatches"] = "1",
    ["Batching:MaxQueueDelayMicroseconds"] = "100000",
});

/// <summary>The service with dynamic batching off: every request runs on its own.</summary>
public sealed class UnbatchedServiceFactory() : ServiceFactory(new Dictionary<string, string?> { ["Batching:Enabled"] = "false" });

/// <summary>Batching is on in every test service; each test host counts its own batches (metrics are per host).</summary>
[CollectionDefinition(nameof(BatchingTests), DisableParallelization = true)]
public sealed class BatchMetricsCollection;

/// <summary>
/// Concurrent classifications with mixed defense modes and seeds, batched, answer what each request gets alone from
/// the service with batching off, one request at a time: every label, index, flag and token the same, every score to
/// float rounding (with shared, unprepacked weights, ONNX Runtime's CPU matrix products round by batch size).
/// </summary>
[Collection(nameof(BatchingTests))]
public sealed class BatchingTests(BatchingServiceFactory batchedFactory, UnbatchedServiceFactory plainFactory)
    : IClassFixture<BatchingServiceFactory>, IClassFixture<UnbatchedServiceFactory>
{
    private static readonly string[] Samples = ["bag.png", "trouser.png", "sneaker.png", "ankle-boot.png", "pullover.png"];
    private static readonly string[] Modes = ["off", "detect", "mitigate"];

    [Fact]
    public void Batching_is_on_by_default_and_off_when_configured()
    {
        Assert.True(new BatchingOptions().Enabled);
        Assert.True(batchedFactory.Services.GetRequiredService<ClassificationBatcher>().Enabled);
        Assert.False(plainFactory.Services.GetRequiredService<ClassificationBatcher>().Enabled);
    }

    [Fact]
    public async Task Concurrent_requests_with_mixed_modes_and_seeds_answer_as_each_does_alone_unbatched()
    {
        var batched = batchedFactory.CreateClient();
        var plain = plainFactory.CreateClient();
        var requests = Enumerable.Range(0, 24)
            .Select(i => (Image: V2Bodies.Png(Samples[i % Samples.Length]), Query: $"topK=10&defense={Modes[i % 3]}&seed={(i * 7919) % 1000}"))
            .ToArray();

        var before = await BatchSeriesAsync(batched);
        var answers = await Task.WhenAll(requests.Select(r => BodyAsync(batched, r.Image, r.Query)));
        var after = await BatchSeriesAsync(batched);

        // Every image went through the batcher, and batches held more than one request.
        Assert.Equal(24, after.Images - before.Images);
        Assert.InRange(after.Batches - before.Batches, 1, 23);
        for (var i = 0; i < requests.Length; i++)
        {
            var alone = await BodyAsync(plain, requests[i].Image, requests[i].Query);
            AssertSameAnswer(Comparable(alone), Comparable(answers[i]), "$");
        }
    }

    [Fact]
    public async Task Concurrent_v2_batches_share_runs_and_answer_as_each_does_alone_unbatched()
    {
        var batched = batchedFactory.CreateClient();
        var plain = plainFactory.CreateClient();
        var bodies = Enumerable.Range(0, 6).Select(i => V2Bodies.Tensor(
            [V2Bodies.Pixels(Samples[i % 5]), V2Bodies.Pixels(Samples[(i + 2) % 5])],
            parameters: $$"""{ "defense" : "{{Modes[i % 3]}}", "seed" : {{i * 31}} }""")).ToArray();

        var answers = await Task.WhenAll(bodies.Select(async body => (await (await batched.InferAsync(body)).JsonAsync()).GetProperty("outputs").GetRawText()));

        for (var i = 0; i < bodies.Length; i++)
        {
            var alone = (await (await plain.InferAsync(bodies[i])).JsonAsync()).GetProperty("outputs").GetRawText();
            AssertSameAnswer(JsonDocument.Parse(alone).RootElement, JsonDocument.Parse(answers[i]).RootElement, "$");
        }
    }

    private static async Task<JsonElement> BodyAsync(HttpClient client, byte[] image, string query)
    {
        using var response = await client.PostAsync("/v1/classify?" + query, Http.Raw(image, "image/png"));
        var body = await response.JsonAsync();
        Assert.True(response.IsSuccessStatusCode, body.ToString());
        return body;
    }

    /// <summary>The predictions and the defense's report as JSON text, without the report's wall time.</summary>
    private static JsonElement Comparable(JsonElement body)
    {
        var node = JsonNode.Parse(body.GetRawText())!.AsObject();
        node.Remove("timingsMs");
        (node["defense"] as JsonObject)?.Remove("elapsedMs");
        return JsonDocument.Parse(node.ToJsonString()).RootElement;
    }

    /// <summary>The same JSON, names in the same order, with numbers equal to float rounding (integers exactly).</summary>
    private static void AssertSameAnswer(JsonElement expected, JsonElement actual, string path)
    {
        Assert.True(expected.ValueKind == actual.ValueKind, $"{path}: {expected.ValueKind} alone, {actual.ValueKind} batched");
        switch (expected.ValueKind)
        {
            case JsonValueKind.Object:
                Assert.Equal(expected.EnumerateObject().Select(p => p.Name), actual.EnumerateObject().Select(p => p.Name));
                foreach (var property in expected.EnumerateObject())
                {
                    AssertSameAnswer(property.Value, actual.GetProperty(property.Name), $"{path}.{property.Name}");
                }

                break;
            case JsonValueKind.Array:
                Assert.True(expected.GetArrayLength() == actual.GetArrayLength(), $"{path}: {expected.GetArrayLength()} items alone, {actual.GetArrayLength()} batched");
                foreach (var (e, a, i) in expected.EnumerateArray().Zip(actual.EnumerateArray(), Enumerable.Range(0, expected.GetArrayLength())))
                {
                    AssertSameAnswer(e, a, $"{path}[{i}]");
                }

                break;
            case JsonValueKind.Number:
                double x = expected.GetDouble(), y = actual.GetDouble();
                Assert.True(Math.Abs(x - y) <= 1e-6 + 1e-4 * Math.Abs(x), $"{path}: {x} alone, {y} batched");
                break;
            default:
                Assert.Equal(expected.GetRawText(), actual.GetRawText());
                break;
        }
    }

    /// <summary>strapvit_batch_size's sum (images batched) and count (batches run) from /metrics.</summary>
    private static async Task<(double Images, double Batches)> BatchSeriesAsync(HttpClient client)
    {
        var page = MetricsExposition.Parse(await client.GetStringAsync("/metrics"));
        return (page.Value("strapvit_batch_size_sum") ?? 0, page.Value("strapvit_batch_size_count") ?? 0);
    }
}
