using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace StrapVit.Api.Observability;

/// <summary>Serilog as the logging provider: readable console in Development, compact JSON elsewhere.</summary>
public static class LoggingExtensions
{
    public static WebApplicationBuilder AddStrapVitLogging(this WebApplicationBuilder builder)
    {
        var development = builder.Environment.IsDevelopment();
        // preserveStaticLogger: this host's logger is never made the static Log.Logger. Otherwise every host in the
        // process (tests start dozens) would route framework logs through whichever host set it last, and the host
        // that stops first would dispose another host's logger with Log.CloseAndFlush.
        builder.Services.AddSerilog((services, lc) =>
        {
            lc.ReadFrom.Configuration(builder.Configuration)
                .ReadFrom.Services(services)
                .Enrich.FromLogContext();
            if (development)
            {
                lc.WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}");
            }
            else
            {
                lc.WriteTo.Console(new RenderedCompactJsonFormatter());
            }
        }, preserveStaticLogger: true);
        return builder;
    }

    /// <summary>
    /// One log event per request (Serilog's request logging). Probes and scrapes (/healthz/*, /metrics) are logged at
    /// Verbose, so kubelet and Prometheus, which call them every few seconds, do not drown the request log; server
    /// errors are logged at Error.
    /// </summary>
    public static WebApplication UseStrapVitRequestLogging(this WebApplication app)
    {
        // This host's logger, not the static Log.Logger the middleware defaults to (another host in the same
        // process, e.g. in tests, may have replaced that).
        var logger = app.Services.GetRequiredService<Serilog.ILogger>();
        app.UseSerilogRequestLogging(options =>
        {
            options.GetLevel = RequestLogLevel;
            // The API key's configured name, never the key (the Auth feature authenticates before the handler runs).
            options.EnrichDiagnosticContext = (diagnostics, context) =>
            {
                if (context.User.Identity is { IsAuthenticated: true, Name: { } keyName })
                {
                    diagnostics.Set("ApiKeyName", keyName);
                }
            };
            options.Logger = logger;
        });
        return app;
    }

    /// <summary>The level of a finished request's log event.</summary>
    public static LogEventLevel RequestLogLevel(HttpContext context, double elapsedMs, Exception? exception) =>
        exception is not null || context.Response.StatusCode >= StatusCodes.Status500InternalServerError ? LogEventLevel.Error
        : context.Request.Path.StartsWithSegments("/healthz", StringComparison.OrdinalIgnoreCase)
            || context.Request.Path.StartsWithSegments("/metrics", StringComparison.OrdinalIgnoreCase) ? LogEventLevel.Verbose
        : LogEventLevel.Information;
}
