using Microsoft.Extensions.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using StrapVit.Core.Diagnostics;

namespace StrapVit.Api.Observability;

/// <summary>
/// OpenTelemetry for the host: the StrapVit meter exported at /metrics in Prometheus text format, and traces (ASP.NET
/// Core, HttpClient and Core's spans: decode, defense, ONNX Runtime runs, attacks) sent over OTLP when an endpoint is
/// configured. An incoming W3C <c>traceparent</c> makes the request's span a child of the caller's.
/// </summary>
public static class TelemetryExtensions
{
    /// <summary>The OTLP endpoint option; OTEL_EXPORTER_OTLP_ENDPOINT (the SDK's own variable) works as well.</summary>
    public const string OtlpEndpointKey = "OpenTelemetry:Otlp:Endpoint";

    /// <summary><c>grpc</c> (the default) or <c>http/protobuf</c>, for <see cref="OtlpEndpointKey"/>.</summary>
    public const string OtlpProtocolKey = "OpenTelemetry:Otlp:Protocol";

    public const string MetricsPath = "/metrics";

    public static WebApplicationBuilder AddStrapVitTelemetry(this WebApplicationBuilder builder)
    {
        builder.Services.AddSingleton<ServiceMetrics>();
        builder.Services.AddSingleton<HttpRequestMetrics>();

        // Only this host's meter (MeterScope.Local: made by this host's IMeterFactory), so that several hosts in one
        // process (the tests) never see each other's measurements.
        builder.Metrics.EnableMetrics(ServiceMetrics.MeterName, instrumentName: null, listenerName: null, MeterScope.Local);

        var otlp = OtlpExporter(builder.Configuration);
        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(builder.Configuration["OTEL_SERVICE_NAME"] ?? "strapvit"))
            .WithMetrics(metrics => metrics.AddPrometheusExporter(o =>
            {
                // The instruments carry their Prometheus names, unit and _total suffix included (so the exporter adds
                // none); no scope labels and no target_info family: /metrics shows exactly the names deploy/ queries.
                o.ScopeInfoEnabled = false;
                o.TargetInfoEnabled = false;
                // Each scrape collects afresh; Prometheus scrapes every few seconds, a cache would only serve stale counts.
                o.ScrapeResponseCacheDurationMilliseconds = 0;
            }))
            .WithTracing(tracing => tracing
                .AddSource(CoreActivities.SourceName)
                .AddAspNetCoreInstrumentation(o => o.Filter = context => !IsProbeOrScrape(context.Request.Path))
                .AddHttpClientInstrumentation());
        // After OpenTelemetry's own hosted service, which starts the metric listener.
        builder.Services.AddHostedService<ZeroSeriesPublisher>();
        if (otlp is { } o)
        {
            telemetry.UseOtlpExporter(o.Protocol, o.Endpoint);
        }
        else if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            // The SDK reads the OTEL_EXPORTER_OTLP_* variables itself (endpoint, protocol, headers).
            telemetry.UseOtlpExporter();
        }

        return builder;
    }

    /// <summary>The Prometheus scrape endpoint; scrapes are left out of the HTTP metrics.</summary>
    public static IEndpointConventionBuilder MapStrapVitMetrics(this IEndpointRouteBuilder app) =>
        app.MapPrometheusScrapingEndpoint(MetricsPath).DisableHttpMetrics().ExcludeFromDescription();

    /// <summary>Outermost: measures every request with its final status (see <see cref="RequestMetricsMiddleware"/>).</summary>
    public static IApplicationBuilder UseStrapVitRequestMetrics(this IApplicationBuilder app) =>
        app.UseMiddleware<RequestMetricsMiddleware>();

    /// <summary>The OTLP endpoint and protocol from <see cref="OtlpEndpointKey"/>, or null when it is not set.</summary>
    public static (Uri Endpoint, OtlpExportProtocol Protocol)? OtlpExporter(IConfiguration configuration)
    {
        var endpoint = configuration[OtlpEndpointKey];
        if (string.IsNullOrWhiteSpace(endpoint))
        {
            return null;
        }

        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            throw new OptionsValidationException(OtlpEndpointKey, typeof(string),
                [$"{OtlpEndpointKey} must be an absolute http or https URL; got '{endpoint}'."]);
        }

        var protocol = configuration[OtlpProtocolKey] switch
        {
            null or "" or "grpc" => OtlpExportProtocol.Grpc,
            "http/protobuf" => OtlpExportProtocol.HttpProtobuf,
            var other => throw new OptionsValidationException(OtlpProtocolKey, typeof(string),
                [$"{OtlpProtocolKey} must be grpc or http/protobuf; got '{other}'."]),
        };
        return (uri, protocol);
    }

    private static bool IsProbeOrScrape(PathString path) =>
        path.StartsWithSegments("/healthz", StringComparison.OrdinalIgnoreCase)
        || path.StartsWithSegments(MetricsPath, StringComparison.OrdinalIgnoreCase);
}

/// <summary>Publishes the counters' zero series once the host starts, when the exporter already listens.</summary>
internal sealed class ZeroSeriesPublisher(ServiceMetrics metrics) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        metrics.PublishZeroSeries();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
