using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;

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
}
