using System.Diagnostics;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using StrapVit.Api.Tests.Attacks;
using StrapVit.Api.Tests.Support;
using StrapVit.Core.Diagnostics;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Telemetry;

/// <summary>The service with OpenTelemetry's in-memory exporter beside its own: every finished span lands in <see cref="Spans"/>.</summary>
public sealed class TracedServiceFactory : ServiceFactory
{
    private readonly List<Activity> _spans = [];

    /// <summary>The spans finished so far, from this host and (Core's source being process-wide) any other.</summary>
    public IReadOnlyList<Activity> Spans
    {
        get
        {
            lock (_spans) return [.. _spans];
        }
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        base.ConfigureWebHost(builder);
        builder.ConfigureServices(services => services.ConfigureOpenTelemetryTracerProvider(t => t.AddProcessor(new Collect(_spans))));
    }

    /// <summary>Collects on end, under a lock (the in-memory exporter's list is not for concurrent readers).</summary>
    private sealed class Collect(List<Activity> spans) : OpenTelemetry.BaseProcessor<Activity>
    {
        public override void OnEnd(Activity data)
        {
            lock (spans) spans.Add(data);
        }
    }
}

public sealed class TracingTests(TracedServiceFactory factory) : IClassFixture<TracedServiceFactory>
{
    [Fact]
    public async Task An_incoming_traceparent_is_the_parent_and_decode_defense_and_onnx_spans_are_its_children()
    {
        var (traceId, callerSpan, spans) = await ClassifyTracedAsync("mitigate");

        var server = Assert.Single(spans, s => s.Kind == ActivityKind.Server);
        Assert.Equal(callerSpan, server.ParentSpanId);
        Assert.Equal("/v1/classify", server.GetTagItem("http.route"));
        var decode = Assert.Single(spans, s => s.OperationName == "decode image");
        Assert.Equal(server.SpanId, decode.ParentSpanId);
        Assert.Equal(File.ReadAllBytes(RepoPaths.Sample("bag.png")).Length, decode.GetTagItem(CoreActivities.ImageBytes));
        var defense = Assert.Single(spans, s => s.OperationName == "defense mitigate");
        Assert.Equal(server.SpanId, defense.ParentSpanId);
        Assert.Equal("token", defense.GetTagItem(CoreActivities.DefenseVariant));
        // The token defense embeds, runs the encoder on the neutralised tokens, then the masking check's first round
        // and, only if a hidden window changed the answer, its second round: all inside the defense span. Each round
        // runs its views batched by sequence length: a view hides up to one 2x2 window (first round, 0-4 more tokens:
        // at most 5 lengths) or two (second round, 0-8 more: at most 9 lengths).
        var onnx = spans.Where(s => s.OperationName.StartsWith("onnx ", StringComparison.Ordinal)).ToList();
        var graphs = onnx.OrderBy(s => s.StartTimeUtc).Select(s => (string)s.GetTagItem(CoreActivities.OnnxGraph)!).ToList();
        Assert.Equal(["embed", "encoder", "encoder"], graphs.Take(3));
        Assert.InRange(graphs.Count, 3, 2 + 5 + 9);
        Assert.All(graphs.Skip(1), g => Assert.Equal("encoder", g));
        Assert.All(onnx, s => Assert.Equal(defense.SpanId, s.ParentSpanId));
        Assert.All(onnx, s => Assert.Equal("CPUExecutionProvider", s.GetTagItem(CoreActivities.ExecutionProvider)));
        Assert.All(spans, s => Assert.Equal(traceId, s.TraceId));
    }

    [Fact]
    public async Task The_plain_forward_pass_is_one_onnx_span_under_the_request()
    {
        var (traceId, _, spans) = await ClassifyTracedAsync("off");

        var server = Assert.Single(spans, s => s.Kind == ActivityKind.Server);
        var forward = Assert.Single(spans, s => s.OperationName.StartsWith("onnx ", StringComparison.Ordinal));
        Assert.Equal("forward", forward.GetTagItem(CoreActivities.OnnxGraph));
        Assert.Equal(1, forward.GetTagItem(CoreActivities.BatchSize));
        Assert.Equal(server.SpanId, forward.ParentSpanId);
        Assert.DoesNotContain(spans, s => s.OperationName.StartsWith("defense ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_attack_is_one_span_with_its_iteration_count_not_a_span_per_step()
    {
        using var client = factory.CreateClient();
        var (traceId, _, header) = TraceParent();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/attacks/pgd")
        {
            Content = AttackServiceFactory.Form(File.ReadAllBytes(RepoPaths.Sample("bag.png")), ("epsilon", "0.03"), ("steps", "7")),
        };
        request.Headers.Add("traceparent", header);

        using var response = await client.SendAsync(request);
        var body = await response.JsonAsync();
        var spans = await TraceAsync(traceId, s => s.Kind == ActivityKind.Server);

        Assert.Equal(7, body.GetProperty("iterations").GetInt32());
        var server = Assert.Single(spans, s => s.Kind == ActivityKind.Server);
        var attack = Assert.Single(spans, s => s.OperationName == "attack pgd");
        Assert.Equal(server.SpanId, attack.ParentSpanId);
        Assert.Equal(7, attack.GetTagItem(CoreActivities.AttackIterations));
        Assert.Equal(body.GetProperty("success").GetBoolean() ? 1 : 0, attack.GetTagItem(CoreActivities.AttackSuccesses));
        // Seven gradient steps and their forwards ran inside it, without a span each.
        Assert.DoesNotContain(spans, s => s.ParentSpanId == attack.SpanId);
    }

    [Fact]
    public async Task Without_a_traceparent_the_request_starts_a_trace_of_its_own()
    {
        using var client = factory.CreateClient();
        var before = factory.Spans.Count;

        using var response = await client.GetAsync("/v1/model");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        Activity? server;
        while ((server = factory.Spans.Skip(before).FirstOrDefault(s => s.Kind == ActivityKind.Server && "/v1/model".Equals(s.GetTagItem("http.route")))) is null)
        {
            Assert.True(DateTime.UtcNow < deadline, "The request's server span never ended.");
            await Task.Delay(20);
        }

        Assert.Equal(default, server.ParentSpanId);
        Assert.NotEqual(default, server.TraceId);
    }

    [Fact]
    public async Task Probes_and_scrapes_are_not_traced()
    {
        using var client = factory.CreateClient();
        var (traceId, _, header) = TraceParent();
        foreach (var path in new[] { "/healthz/live", "/metrics", "/v1/model" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.Add("traceparent", header);
            (await client.SendAsync(request)).EnsureSuccessStatusCode();
        }

        // /v1/model is traced last: once its span is in, the earlier two would be too.
        var spans = await TraceAsync(traceId, s => "/v1/model".Equals(s.GetTagItem("http.route")));

        Assert.Equal(["/v1/model"], spans.Where(s => s.Kind == ActivityKind.Server).Select(s => (string)s.GetTagItem("url.path")!));
    }

    /// <summary>POST /v1/classify of samples/bag.png with a fresh traceparent; the spans of that trace once the server span ended.</summary>
    private async Task<(ActivityTraceId TraceId, ActivitySpanId CallerSpan, List<Activity> Spans)> ClassifyTracedAsync(string defense)
    {
        using var client = factory.CreateClient();
        var (traceId, callerSpan, header) = TraceParent();
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/v1/classify?defense={defense}")
        {
            Content = Http.Multipart(File.ReadAllBytes(RepoPaths.Sample("bag.png"))),
        };
        request.Headers.Add("traceparent", header);

        (await client.SendAsync(request)).EnsureSuccessStatusCode();
        return (traceId, callerSpan, await TraceAsync(traceId, s => s.Kind == ActivityKind.Server));
    }

    private static (ActivityTraceId TraceId, ActivitySpanId SpanId, string Header) TraceParent()
    {
        var traceId = ActivityTraceId.CreateRandom();
        var spanId = ActivitySpanId.CreateRandom();
        return (traceId, spanId, $"00-{traceId.ToHexString()}-{spanId.ToHexString()}-01");
    }

    /// <summary>The trace's spans once one matching <paramref name="last"/> has ended (the server span ends last).</summary>
    private async Task<List<Activity>> TraceAsync(ActivityTraceId traceId, Func<Activity, bool> last)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var spans = factory.Spans.Where(s => s.TraceId == traceId).ToList();
            if (spans.Any(last)) return spans;
            Assert.True(DateTime.UtcNow < deadline, $"The trace has {spans.Count} spans and not the one awaited.");
            await Task.Delay(20);
        }
    }
}
