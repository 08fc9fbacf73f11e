using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using StrapVit.Api.Defense;
using StrapVit.Api.Errors;
using StrapVit.Api.Serving;
using StrapVit.Api.Tests.Attacks;
using StrapVit.Api.Tests.InferenceProtocol;
using StrapVit.Api.Tests.Support;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Tests.Endpoints;

/// <summary>
/// The service listens before the model is loaded: live at once, ready when classification is warm, and the
/// gradient endpoints answer 503 with Retry-After until the gradient graphs are in; the Open Inference Protocol's
/// readiness and inference follow classification. The tests hold the loading gate closed to see each stage, then open it.
/// </summary>
public sealed class StartupTests : IDisposable
{
    private readonly HeldGate gate = new();
    private readonly GatedFactory factory;
    private readonly HttpClient client;

    public StartupTests()
    {
        factory = new GatedFactory(gate);
        client = factory.CreateClient();
    }

    [Fact]
    public async Task Live_at_once_ready_after_classification_and_gradient_endpoints_wait_for_the_gradient_graphs()
    {
        var runtime = factory.Services.GetRequiredService<ModelRuntime>();

        // Nothing loaded yet.
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz/live")).StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await client.GetAsync("/healthz/ready")).StatusCode);
        var model = await Model();
        Assert.Equal("loading", model.GetProperty("parts").GetProperty("classification").GetString());
        Assert.Equal("loading", model.GetProperty("parts").GetProperty("gradients").GetString());
        Assert.Equal(JsonValueKind.Null, model.GetProperty("executionProvider").ValueKind);
        Assert.Equal(3, model.GetProperty("input").GetProperty("channels").GetInt32());
        await AssertLoadingAsync(await client.PostAsync("/v1/classify", Http.Multipart(AttackServiceFactory.Image())), "Model loading");
        // The batcher refuses before queueing too: no request waits in its queue for a model that is not there;
        // It throws on the caller's thread, not in the returned task.
        var batcher = factory.Services.GetRequiredService<ClassificationBatcher>();
        var refused = Assert.Throws<ProblemException>(() =>
        {
            _ = batcher.ClassifyAsync(new float[runtime.Package.Manifest.Input.Size], 1, new DefenseSelection(DefenseMode.Off, 0, Explicit: false), CancellationToken.None);
        });
        Assert.Equal((503, "Model loading"), (refused.Status, refused.Title));

        // Classification loaded: ready, classifying; the gradient endpoints still wait.
        gate.Classification.SetResult();
        await runtime.ClassificationLoaded;
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz/ready")).StatusCode);
        model = await Model();
        Assert.Equal("ready", model.GetProperty("parts").GetProperty("classification").GetString());
        Assert.Equal("loading", model.GetProperty("parts").GetProperty("gradients").GetString());
        Assert.Equal("CPUExecutionProvider", model.GetProperty("executionProvider").GetString());
        Assert.False(model.GetProperty("gradients").GetProperty("available").GetBoolean());
        using (var classify = await client.PostAsync("/v1/classify", Http.Multipart(AttackServiceFactory.Image())))
        {
            Assert.Equal(HttpStatusCode.OK, classify.StatusCode);
        }

        await AssertLoadingAsync(await client.PostAsync("/v1/attacks/fgsm", AttackServiceFactory.Form(AttackServiceFactory.Image())), "Gradients loading");
        await AssertLoadingAsync(await client.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image())), "Gradients loading");

        // Gradient graphs loaded: the same attack now runs.
        gate.Gradients.SetResult();
        await runtime.Loaded;
        model = await Model();
        Assert.Equal("ready", model.GetProperty("parts").GetProperty("gradients").GetString());
        Assert.True(model.GetProperty("gradients").GetProperty("available").GetBoolean());
        using var attack = await client.PostAsync("/v1/attacks/fgsm", AttackServiceFactory.Form(AttackServiceFactory.Image()));
        Assert.Equal(HttpStatusCode.OK, attack.StatusCode);
    }

    [Fact]
    public async Task The_inference_protocol_says_not_ready_and_answers_503_until_classification_is_loaded_but_not_the_gradient_graphs()
    {
        var runtime = factory.Services.GetRequiredService<ModelRuntime>();
        const string name = "attack-fixture-vit-c3-12";
        var png = AttackServiceFactory.Image();
        var pixels = new ImageDecoder(new ImageLimits()).Decode(png, 3, 12, 12).Data;
        var body = V2Bodies.Tensor([pixels], parameters: """{ "defense" : "off" }""", shape: "[ 1, 3, 12, 12 ]");

        // Nothing loaded: live, not ready (with Retry-After), inference 503; the package's name, version and shapes are known.
        var live = await client.GetAsync("/v2/health/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.True((await live.JsonAsync()).GetProperty("live").GetBoolean());
        await AssertNotReadyAsync(await client.GetAsync("/v2/health/ready"));
        var modelReady = await AssertNotReadyAsync(await client.GetAsync($"/v2/models/{name}/ready"));
        Assert.Equal(name, modelReady.GetProperty("name").GetString());
        var version = runtime.Package.Sha256[..12];
        await AssertNotReadyAsync(await client.GetAsync($"/v2/models/{name}/versions/{version}/ready"));
        using (var unknown = await client.GetAsync("/v2/models/resnet50/ready"))
        {
            await unknown.AssertErrorAsync(404);
        }

        using (var metadata = await client.GetAsync($"/v2/models/{name}"))
        {
            Assert.Equal(HttpStatusCode.OK, metadata.StatusCode);
            var inputs = (await metadata.JsonAsync()).GetProperty("inputs");
            Assert.Equal([-1L, 3, 12, 12], inputs[0].GetProperty("shape").EnumerateArray().Select(v => v.GetInt64()));
        }

        using (var loading = await client.InferAsync(body, name))
        {
            var problem = await loading.AssertErrorAsync(503);
            Assert.Equal("Model loading", problem.GetProperty("title").GetString());
            Assert.Equal(TimeSpan.FromSeconds(ModelRuntime.LoadingRetryAfterSeconds), loading.Headers.RetryAfter!.Delta);
        }

        // Classification loaded, gradient graphs still held back: /v2 is ready and infers as /v1/classify classifies.
        gate.Classification.SetResult();
        await runtime.ClassificationLoaded;
        using (var ready = await client.GetAsync("/v2/health/ready"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.True((await ready.JsonAsync()).GetProperty("ready").GetBoolean());
        }

        using (var ready = await client.GetAsync($"/v2/models/{name}/ready"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.True((await ready.JsonAsync()).GetProperty("ready").GetBoolean());
        }

        Assert.Equal("loading", (await Model()).GetProperty("parts").GetProperty("gradients").GetString());
        using var v1 = await client.PostAsync("/v1/classify?defense=off&topK=1", Http.Multipart(png));
        var expected = (await v1.JsonAsync()).GetProperty("predictions")[0];
        using var infer = await client.InferAsync(body, name);
        Assert.Equal(HttpStatusCode.OK, infer.StatusCode);
        var answer = await infer.JsonAsync();
        Assert.Equal(expected.GetProperty("index").GetInt64(), answer.Output("predicted_class").GetProperty("data")[0].GetInt64());
        var probabilities = answer.Output("probabilities").Floats();
        var top = expected.GetProperty("probability").GetDouble();
        Assert.True(Math.Abs(top - probabilities.Max()) < 1e-5, $"/v1 top probability {top}, /v2 {probabilities.Max()}");
        gate.Gradients.SetResult();
        await runtime.Loaded;
    }

    public void Dispose()
    {
        client.Dispose();
        factory.Dispose();
    }

    private async Task<JsonElement> Model()
    {
        using var response = await client.GetAsync("/v1/model");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.JsonAsync();
    }

    /// <summary>A protocol readiness answer while loading: 503, <c>ready: false</c>, and when to ask again.</summary>
    private static async Task<JsonElement> AssertNotReadyAsync(HttpResponseMessage response)
    {
        using (response)
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal(TimeSpan.FromSeconds(ModelRuntime.LoadingRetryAfterSeconds), response.Headers.RetryAfter!.Delta);
            var body = await response.JsonAsync();
            Assert.False(body.GetProperty("ready").GetBoolean());
            return body;
        }
    }

    private static async Task AssertLoadingAsync(HttpResponseMessage response, string title)
    {
        using (response)
        {
            var problem = await response.AssertProblemAsync(503);
            Assert.Equal(title, problem.GetProperty("title").GetString());
            Assert.Contains("Retry-After", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
            Assert.InRange(response.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 1, 60);
        }
    }

    /// <summary>A gate the test opens stage by stage.</summary>
    private sealed class HeldGate : ModelLoadGate
    {
        public TaskCompletionSource Classification { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Gradients { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override Task WaitForClassificationAsync(CancellationToken cancellationToken) => Classification.Task.WaitAsync(cancellationToken);

        public override Task WaitForGradientsAsync(CancellationToken cancellationToken) => Gradients.Task.WaitAsync(cancellationToken);
    }

    private sealed class GatedFactory(HeldGate gate) : AttackServiceFactory
    {
        protected override bool WaitForModel => false;

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.ConfigureTestServices(services => services.AddSingleton<ModelLoadGate>(gate));
        }
    }
}
