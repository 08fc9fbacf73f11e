using System.Collections.Concurrent;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Serilog.Core;
using Serilog.Events;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Endpoints;

/// <summary>
/// One request-log event per API request at Information; health probes and metric scrapes stay out of the log at
/// that level (kubelet and Prometheus call them every few seconds).
/// </summary>
public sealed class RequestLoggingTests(RequestLoggingTests.LoggingFactory factory) : IClassFixture<RequestLoggingTests.LoggingFactory>
{
    [Fact]
    public async Task Api_requests_are_logged_and_probes_and_scrapes_are_not()
    {
        using var client = factory.CreateClient();
        var marker = Guid.NewGuid().ToString("N");
        (await client.GetAsync("/healthz/live")).EnsureSuccessStatusCode();
        (await client.GetAsync("/healthz/ready")).EnsureSuccessStatusCode();
        (await client.GetAsync("/metrics")).EnsureSuccessStatusCode();
        (await client.GetAsync($"/v1/model?marker={marker}")).EnsureSuccessStatusCode();
        using var missing = await client.GetAsync("/v1/nothing-here");

        // The event is written when the pipeline unwinds, which may be just after the client has its answer.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!factory.Sink.RequestPaths().Contains("/v1/nothing-here") && DateTime.UtcNow < deadline) await Task.Delay(20);

        var logged = factory.Sink.RequestEvents().ToArray();
        var model = Assert.Single(logged, e => Path(e) == "/v1/model");
        Assert.Equal(LogEventLevel.Information, model.Level);
        Assert.Equal("200", model.Properties["StatusCode"].ToString());
        var notFound = Assert.Single(logged, e => Path(e) == "/v1/nothing-here");
        Assert.Equal("404", notFound.Properties["StatusCode"].ToString());
        Assert.DoesNotContain(logged, e => Path(e) is "/healthz/live" or "/healthz/ready" or "/metrics");
    }

    [Theory]
    [InlineData("/healthz/live", 200, LogEventLevel.Verbose)]
    [InlineData("/metrics", 200, LogEventLevel.Verbose)]
    [InlineData("/healthz/ready", 503, LogEventLevel.Error)]
    [InlineData("/v1/classify", 200, LogEventLevel.Information)]
    [InlineData("/v1/classify", 400, LogEventLevel.Information)]
    [InlineData("/v1/classify", 500, LogEventLevel.Error)]
    public void Request_log_level_by_path_and_status(string path, int status, LogEventLevel expected)
    {
        var context = new Microsoft.AspNetCore.Http.DefaultHttpContext();
        context.Request.Path = path;
        context.Response.StatusCode = status;
        Assert.Equal(expected, Observability.LoggingExtensions.RequestLogLevel(context, 1.0, null));
    }

    private static string? Path(LogEvent e) => e.Properties.TryGetValue("RequestPath", out var p) ? (p as ScalarValue)?.Value as string : null;

    /// <summary>The embedded model with Information-level logging into an in-memory sink.</summary>
    public sealed class LoggingFactory() : ServiceFactory(new Dictionary<string, string?> { ["Serilog:MinimumLevel:Default"] = "Information" })
    {
        public CapturingSink Sink { get; } = new();

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.ConfigureTestServices(services => services.AddSingleton<ILogEventSink>(Sink));
        }
    }

    /// <summary>Keeps Serilog's request-log events (those with a RequestPath and a StatusCode).</summary>
    public sealed class CapturingSink : ILogEventSink
    {
        private readonly ConcurrentQueue<LogEvent> events = new();

        public void Emit(LogEvent logEvent) => events.Enqueue(logEvent);

        public IEnumerable<LogEvent> RequestEvents() =>
            events.Where(e => e.Properties.ContainsKey("RequestPath") && e.Properties.ContainsKey("StatusCode") && e.Properties.ContainsKey("Elapsed"));

        public HashSet<string?> RequestPaths() => [.. RequestEvents().Select(Path)];
    }
}
