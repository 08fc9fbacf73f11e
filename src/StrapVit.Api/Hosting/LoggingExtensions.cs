using Serilog;
using Serilog.Formatting.Compact;

namespace StrapVit.Api.Hosting;

/// <summary>Serilog as the logging provider: readable console in Development, compact JSON elsewhere.</summary>
public static class LoggingExtensions
{
    public static WebApplicationBuilder AddStrapVitLogging(this WebApplicationBuilder builder)
    {
        var development = builder.Environment.IsDevelopment();
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
        });
        return builder;
    }
}
