using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using StrapVit.Api.Hosting;
using StrapVit.Api.Tests.Attacks;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Endpoints;

/// <summary>
/// The service listens before the model is loaded: live at once, ready when classification is warm, and the
/// gradient endpoints answer 503 with Retry-After until the gradient graphs are in. The test holds the loading gate
/// closed to see each stage, then opens it.
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
