using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Mvc;
using StrapVit.Api.Auth;
using StrapVit.Api.Errors;
using StrapVit.Api.Health;
using StrapVit.Api.Observability;
using StrapVit.Api.Serving;

namespace StrapVit.Api.Hosting;

/// <summary>The composition root's HTTP plumbing: problem details, rate limits, OpenAPI, metrics and the middleware order.</summary>
public static class ApiServiceExtensions
{
    public static IServiceCollection AddStrapVitApi(this IServiceCollection services)
    {
        services.AddStrapVitProblems();
        services.AddStrapVitHealth();
        services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            o.GlobalLimiter = AuthServiceExtensions.PerKeyLimiter();
            o.AddInferencePolicy();
            o.OnRejected = async (ctx, ct) =>
            {
                var perKey = ctx.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait);
                ctx.HttpContext.Response.Headers.RetryAfter = perKey ? AuthServiceExtensions.RetryAfterSeconds(wait) : "1";
                await ctx.HttpContext.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
                {
                    HttpContext = ctx.HttpContext,
                    ProblemDetails = new ProblemDetails
                    {
                        Status = StatusCodes.Status429TooManyRequests,
                        Title = "Too many requests",
                        Detail = perKey
                            ? $"The API key '{ctx.HttpContext.User.Identity?.Name}' is over its rate limit; retry after the number of seconds in Retry-After."
                            : "The service is at its concurrency limit; retry after the number of seconds in Retry-After.",
                    },
                });
            };
        });
        services.AddStrapVitOpenApi();
        return services;
    }

    public static WebApplication UseStrapVitPipeline(this WebApplication app)
    {
        // Outside the exception handler, so errors it turns into responses are counted with their final status.
        app.UseStrapVitRequestMetrics();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseStrapVitAuth();
        app.UseRateLimiter();
        app.UseStrapVitOpenApi();
        return app;
    }

    /// <summary>Health probes, Prometheus metrics, and the root redirecting to Swagger UI.</summary>
    public static WebApplication MapStrapVitOperations(this WebApplication app)
    {
        app.MapHealthEndpoints();
        app.MapStrapVitMetrics();
        app.MapGet("/", () => Results.Redirect("/swagger")).ExcludeFromDescription();
        return app;
    }
}
