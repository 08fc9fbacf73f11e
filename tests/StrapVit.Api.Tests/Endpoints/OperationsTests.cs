using System.Net;
using StrapVit.Api.Tests.Deployment;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Endpoints;

public sealed class OperationsTests(ServiceFactory factory) : IClassFixture<ServiceFactory>
{
    private readonly HttpClient _client = factory.CreateClient();

    [Fact]
    public async Task Model_endpoint_describes_the_embedded_model()
    {
        var body = await (await _client.GetAsync("/v1/model")).JsonAsync();

        Assert.Equal("fashion-vit-tiny", body.GetProperty("name").GetString());
        Assert.Equal(10, body.GetProperty("labels").GetArrayLength());
        Assert.Equal("T-shirt/top", body.GetProperty("labels")[0].GetString());
        Assert.Equal(1, body.GetProperty("input").GetProperty("channels").GetInt32());
        Assert.Equal(28, body.GetProperty("input").GetProperty("height").GetInt32());
        Assert.Equal(28, body.GetProperty("input").GetProperty("width").GetInt32());
        Assert.Equal(4, body.GetProperty("patchSize").GetInt32());
        Assert.Equal("CPUExecutionProvider", body.GetProperty("executionProvider").GetString());
        Assert.True(body.GetProperty("gradients").TryGetProperty("available", out _));
    }

    [Theory]
    [InlineData("/healthz/live")]
    [InlineData("/healthz/ready")]
    public async Task Health_endpoints_are_healthy_once_loaded(string path)
    {
        using var response = await _client.GetAsync(path);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("Healthy", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Metrics_expose_model_info_inference_latency_and_outcomes()
    {
        // This host's meter counts only this host's requests, so the differences are exact.
        var before = await MetricsAsync();

        await _client.PostAsync("/v1/classify?defense=off", Http.Multipart(File.ReadAllBytes(RepoPaths.Sample("bag.png"))));
        await _client.PostAsync("/v1/classify", Http.Raw([1, 2, 3], "image/png"));
        var after = await MetricsAsync();

        var info = Assert.Single(after.Samples("strapvit_model_info"));
        Assert.Equal("fashion-vit-tiny", info.Labels["model"]);
        Assert.Equal("CPUExecutionProvider", info.Labels["execution_provider"]);
        Assert.Equal(1, info.Value);
        Assert.Equal(1, after.Value("strapvit_ready"));
        Assert.Equal(1, Delta("strapvit_inference_duration_seconds_count", ("graph", "forward")));
        Assert.Equal(1, Delta("strapvit_requests_total", ("endpoint", "classify"), ("outcome", "success")));
        Assert.Equal(1, Delta("strapvit_requests_total", ("endpoint", "classify"), ("outcome", "client_error")));
        Assert.Equal(1, Delta("http_request_duration_seconds_count", ("code", "200"), ("method", "POST"), ("endpoint", "/v1/classify")));
        // The 400 written by the exception handler is counted as a 400, not as the 200 it started as.
        Assert.Equal(1, Delta("http_requests_received_total", ("code", "400"), ("method", "POST"), ("endpoint", "/v1/classify")));
        Assert.Equal(0, after.Value("http_requests_in_progress", ("method", "POST"), ("endpoint", "/v1/classify")));
        // Scrapes are not requests the dashboards count.
        Assert.DoesNotContain(after.Samples("http_requests_received_total"), s => s.Labels["endpoint"] == "/metrics");

        double Delta(string name, params (string, string)[] labels) => after.Value(name, labels)!.Value - (before.Value(name, labels) ?? 0);
    }

    private async Task<MetricsExposition> MetricsAsync() => MetricsExposition.Parse(await _client.GetStringAsync("/metrics"));

    [Fact]
    public async Task Swagger_describes_the_upload_so_try_it_out_offers_a_file_picker()
    {
        var doc = await (await _client.GetAsync("/swagger/v1/swagger.json")).JsonAsync();
        var body = doc.GetProperty("paths").GetProperty("/v1/classify").GetProperty("post").GetProperty("requestBody").GetProperty("content");
        var image = body.GetProperty("multipart/form-data").GetProperty("schema").GetProperty("properties").GetProperty("image");

        Assert.Equal("binary", image.GetProperty("format").GetString());
        Assert.True(body.TryGetProperty("image/png", out _));
        Assert.True(doc.GetProperty("paths").TryGetProperty("/v1/model", out _));
        using var ui = await _client.GetAsync("/swagger/index.html");
        Assert.Equal(HttpStatusCode.OK, ui.StatusCode);
    }

    [Fact]
    public async Task Unknown_routes_are_problem_json()
    {
        using var response = await _client.GetAsync("/v1/nope");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }
}
