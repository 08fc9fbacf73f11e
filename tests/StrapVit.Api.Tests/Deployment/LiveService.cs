using StrapVit.Api.Tests.Attacks;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// The service on its embedded model after a little traffic (a classification, a rejected upload, an attack, the
/// model, health and an unknown route), so that the labelled series exist, and the /metrics page it then exports. A
/// histogram's series appear with its first observation (counters publish zero series at start), hence the attack.
/// </summary>
public sealed class LiveService : IAsyncLifetime, IDisposable
{
    private readonly ServiceFactory _factory = new();

    public HttpClient Client { get; private set; } = null!;

    public MetricsExposition Metrics { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Client = _factory.CreateClient();
        using var image = TestImages.Gradient(28, 28);
        (await Client.PostAsync("/v1/classify", Http.Multipart(TestImages.Png(image)))).EnsureSuccessStatusCode();
        await Client.PostAsync("/v1/classify", Http.Raw([1, 2, 3], "image/png"));
        (await Client.PostAsync("/v1/attacks/fgsm", AttackServiceFactory.Form(TestImages.Png(image), ("epsilon", "0.01")))).EnsureSuccessStatusCode();
        await Client.GetAsync("/v1/model");
        await Client.GetAsync(DeployFiles.LivePath);
        await Client.GetAsync(DeployFiles.ReadyPath);
        await Client.GetAsync("/v1/no-such-route");
        Metrics = MetricsExposition.Parse(await Client.GetStringAsync(DeployFiles.MetricsPath));
    }

    public Task DisposeAsync()
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        Client?.Dispose();
        _factory.Dispose();
    }
}
