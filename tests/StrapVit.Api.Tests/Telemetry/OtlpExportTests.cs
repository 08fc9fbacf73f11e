using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using StrapVit.Api.Observability;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Telemetry;

/// <summary>The OTLP exporter: off unless an endpoint is configured; with one, the request's trace reaches it.</summary>
public sealed class OtlpExportTests
{
    [Fact]
    public async Task With_an_endpoint_configured_the_requests_spans_reach_the_collector()
    {
        using var collector = new FakeCollector();
        var traceId = ActivityTraceId.CreateRandom();
        using (var factory = new ServiceFactory(new Dictionary<string, string?>
        {
            [TelemetryExtensions.OtlpEndpointKey] = collector.Url,
            [TelemetryExtensions.OtlpProtocolKey] = "http/protobuf",
        }))
        {
            using var client = factory.CreateClient();
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/classify?defense=off")
            {
                Content = Http.Multipart(File.ReadAllBytes(RepoPaths.Sample("bag.png"))),
            };
            request.Headers.Add("traceparent", $"00-{traceId.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01");
            (await client.SendAsync(request)).EnsureSuccessStatusCode();

            // The batch processor exports on its schedule (5 s) or when the host stops; the server span ends just
            // after the client has its answer, so stopping at once could race it. Wait for the export while running.
            var id = Convert.FromHexString(traceId.ToHexString());
            for (var waited = 0; waited < 150 && !collector.Bodies("/v1/traces").Any(b => b.AsSpan().IndexOf(id) >= 0); waited++)
            {
                await Task.Delay(100);
            }
        }

        // OTLP/protobuf carries the trace id as its 16 raw bytes.
        var traces = collector.Bodies("/v1/traces");
        Assert.NotEmpty(traces);
        var sent = Convert.FromHexString(traceId.ToHexString());
        Assert.Contains(traces, body => body.AsSpan().IndexOf(sent) >= 0);
        Assert.Contains(traces, body => body.AsSpan().IndexOf("onnx forward"u8) >= 0);
    }

    [Fact]
    public void Without_an_endpoint_there_is_no_exporter_and_a_bad_one_stops_start_up_with_the_reason()
    {
        Assert.Null(TelemetryExtensions.OtlpExporter(Config([])));
        var grpc = TelemetryExtensions.OtlpExporter(Config(new() { [TelemetryExtensions.OtlpEndpointKey] = "http://collector:4317" }));
        Assert.Equal((new Uri("http://collector:4317"), OpenTelemetry.Exporter.OtlpExportProtocol.Grpc), grpc);

        var bad = Assert.Throws<OptionsValidationException>(() =>
            TelemetryExtensions.OtlpExporter(Config(new() { [TelemetryExtensions.OtlpEndpointKey] = "collector:4317" })));
        Assert.Contains("OpenTelemetry:Otlp:Endpoint must be an absolute http or https URL", bad.Message, StringComparison.Ordinal);
        var protocol = Assert.Throws<OptionsValidationException>(() => TelemetryExtensions.OtlpExporter(Config(new()
        {
            [TelemetryExtensions.OtlpEndpointKey] = "http://collector:4318",
            [TelemetryExtensions.OtlpProtocolKey] = "udp",
        })));
        Assert.Contains("grpc or http/protobuf", protocol.Message, StringComparison.Ordinal);
    }

    private static IConfiguration Config(Dictionary<string, string?> values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values).Build();

    /// <summary>An OTLP/HTTP receiver on a free loopback port that answers 200 and keeps each request's body by path.</summary>
    private sealed class FakeCollector : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly List<(string Path, byte[] Body)> _received = [];
        private readonly Task _loop;

        public FakeCollector()
        {
            using var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            var port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            Url = $"http://127.0.0.1:{port}";
            _listener.Prefixes.Add(Url + "/");
            _listener.Start();
            _loop = Task.Run(ServeAsync);
        }

        public string Url { get; }

        public List<byte[]> Bodies(string path)
        {
            lock (_received) return [.. _received.Where(r => r.Path == path).Select(r => r.Body)];
        }

        public void Dispose()
        {
            _listener.Stop();
            _listener.Close();
        }

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }

                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                lock (_received) _received.Add((context.Request.Url!.AbsolutePath, body.ToArray()));
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.Close();
            }
        }
    }
}
