using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// The image's HEALTHCHECK script (bash, no curl in the image) against the service on a real Kestrel socket: healthy
/// routes pass, anything else and a closed port fail.
/// </summary>
public sealed class HealthcheckScriptTests(KestrelService service) : IClassFixture<KestrelService>
{
    private static readonly string Script = DeployFiles.PathOf("deploy", "docker", "healthcheck.sh");

    private readonly int _port = service.Port;

    [Theory]
    [InlineData(DeployFiles.LivePath, 0)]
    [InlineData(DeployFiles.ReadyPath, 0)]
    [InlineData("/v1/no-such-route", 1)]
    public async Task The_script_passes_only_on_200(string path, int expected)
    {
        var (code, output) = await RunAsync(new() { ["HEALTHCHECK_PORT"] = _port.ToString() }, path);

        Assert.True(expected == code, $"exit {code}: {output}");
        if (expected != 0)
        {
            Assert.Contains("answered 404", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Without_arguments_it_checks_liveness_on_the_first_aspnetcore_port()
    {
        var (code, output) = await RunAsync(new() { ["ASPNETCORE_HTTP_PORTS"] = $"{_port};9" });

        Assert.True(code == 0, $"exit {code}: {output}");
    }

    [Fact]
    public async Task A_closed_port_fails()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var closed = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var (code, output) = await RunAsync(new() { ["HEALTHCHECK_PORT"] = closed.ToString() });

        Assert.Equal(1, code);
        Assert.Contains($"nothing listens on port {closed}", output, StringComparison.Ordinal);
    }

    private static async Task<(int Code, string Output)> RunAsync(Dictionary<string, string> env, string? path = null)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Script);
        if (path is not null)
        {
            start.ArgumentList.Add(path);
        }

        start.Environment.Remove("HEALTHCHECK_PORT");
        start.Environment.Remove("ASPNETCORE_HTTP_PORTS");
        // A loaded test machine can be slow to answer; what is tested here is the script's logic, not the latency.
        start.Environment["HEALTHCHECK_TIMEOUT"] = "60";
        foreach (var (k, v) in env)
        {
            start.Environment[k] = v;
        }

        using var process = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }
}

/// <summary>The service listening on a loopback port of its own, warmed up by one request.</summary>
public sealed class KestrelService : IAsyncLifetime, IDisposable
{
    private readonly ServiceFactory _factory = new();

    public int Port { get; private set; }

    public async Task InitializeAsync()
    {
        _factory.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        _factory.StartServer();
        var address = _factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        Port = new Uri(address).Port;
        using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromMinutes(2) };
        (await client.GetAsync(DeployFiles.LivePath)).Dispose();
    }

    public Task DisposeAsync()
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose() => _factory.Dispose();
}
