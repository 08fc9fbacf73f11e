using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using StrapVit.Api.Serving;

namespace StrapVit.Api.Tests.Support;

/// <summary>
/// The real service on the embedded model, on CPU (tests never need a GPU), with small limits so the limit tests
/// stay cheap. Extra settings override these.
/// </summary>
public class ServiceFactory : WebApplicationFactory<Program>
{
    public const long TestMaxBytes = 256 * 1024;

    private readonly IReadOnlyDictionary<string, string?>? settings;

    /// <summary>The embedded model with the test defaults (xUnit fixtures need exactly one public constructor).</summary>
    public ServiceFactory() { }

    /// <summary>The same with extra settings, e.g. <c>Model:Path</c>.</summary>
    internal ServiceFactory(IReadOnlyDictionary<string, string?>? settings) => this.settings = settings;

    /// <summary>
    /// The model loads in the background after the host starts; tests see the loaded service (classification and
    /// gradient graphs), except those that watch it load and turn this off.
    /// </summary>
    protected virtual bool WaitForModel => true;

    protected override IHost CreateHost(IHostBuilder builder)
    {
        // Captured while the host starts: a model that fails to load stops (and disposes) the host right away.
        ModelRuntime? runtime = null;
        builder.ConfigureServices(services => services.AddSingleton<IHostedService>(sp => new NoWork(runtime = sp.GetRequiredService<ModelRuntime>())));
        IHost host;
        try
        {
            host = base.CreateHost(builder);
        }
        catch (Exception) when (runtime?.FatalError is { } fatal)
        {
            // The model failed so fast that stopping the service broke off the host's own start: the reason is the model's.
            throw new InvalidOperationException(fatal);
        }

        if (WaitForModel && runtime is not null)
        {
            runtime.Loaded.GetAwaiter().GetResult();
            if (runtime.FatalError is { } fatal)
            {
                // What the real process does: it stops (the host disposes itself) and prints the reason (StartupFailure).
                throw new InvalidOperationException(fatal);
            }
        }

        return host;
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.UseSetting("Inference:Device", "Cpu");
        builder.UseSetting("Inference:IntraOpThreads", "1");
        builder.UseSetting("Images:MaxBytes", TestMaxBytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
        builder.UseSetting("Images:MaxFrames", "4");
        builder.UseSetting("Serilog:MinimumLevel:Default", "Warning");
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            builder.UseSetting(key, value);
        }
    }

    private sealed class NoWork(ModelRuntime runtime) : IHostedService
    {
        public ModelRuntime Runtime { get; } = runtime;

        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
