using System.Reflection;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Prometheus;
using StrapVit.Api.Auth;
using StrapVit.Api.Endpoints;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Api.Uploads;

namespace StrapVit.Api.Hosting;

/// <summary>HTTP plumbing: problem details, limits, OpenAPI, health and metrics.</summary>
public static class ApiServiceExtensions
{
    public const string ReadyTag = "ready";

    public static IServiceCollection AddStrapVitApi(this IServiceCollection services)
    {
        // Problems the framework writes itself (status-code pages, binding failures) get a detail too.
        services.AddProblemDetails(o => o.CustomizeProblemDetails = ctx => ctx.ProblemDetails.Detail ??= DefaultDetail(ctx.HttpContext, ctx.ProblemDetails.Status));
        services.AddExceptionHandler<ProblemExceptionHandler>();
        // Binding failures (a body over its limit, malformed JSON) reach the exception handler, which sends the
        // reason as the problem's detail, instead of ending as a bare status code.
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddSingleton<ServiceMetrics>();
        services.AddHealthChecks().AddCheck<ModelReadyHealthCheck>("model", tags: [ReadyTag]);
        services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            o.GlobalLimiter = AuthServiceExtensions.PerKeyLimiter();
            o.AddPolicy(ClassifyEndpoints.InferencePolicy, ctx =>
            {
                var limits = ctx.RequestServices.GetRequiredService<IOptions<RequestLimitOptions>>().Value;
                return RateLimitPartition.GetConcurrencyLimiter("inference", _ => new ConcurrencyLimiterOptions
                {
                    PermitLimit = limits.MaxConcurrentInferences,
                    QueueLimit = limits.InferenceQueueLength,
                    QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
                });
            });
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
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(o =>
        {
            o.SwaggerDoc("v1", new Microsoft.OpenApi.OpenApiInfo
            {
                Title = "StrapVitService",
                Version = "v1",
                Description = "A Vision Transformer classifier with the STRAP-ViT adversarial-patch defense, and attacks to red-team it. "
                    + "All pixel values and budgets are in [0, 1] pixel space at the model's input resolution.",
            });
            var xml = Path.Combine(AppContext.BaseDirectory, $"{Assembly.GetExecutingAssembly().GetName().Name}.xml");
            if (File.Exists(xml))
            {
                o.IncludeXmlComments(xml);
            }

            o.OperationFilter<ImageUploadOperationFilter>();
            o.AddApiKeySecurity();
        });
        return services;
    }

    private static string DefaultDetail(HttpContext context, int? status) => status switch
    {
        StatusCodes.Status413PayloadTooLarge =>
            $"The request body is over this endpoint's limit of {context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"} bytes.",
        StatusCodes.Status404NotFound => $"There is no resource at '{context.Request.Path}'; GET /swagger lists the API.",
        StatusCodes.Status405MethodNotAllowed => $"'{context.Request.Method}' is not allowed on '{context.Request.Path}'.",
        StatusCodes.Status415UnsupportedMediaType => $"The content type '{context.Request.ContentType ?? "none"}' is not one this endpoint reads.",
        _ => Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status ?? 500),
    };

    public static WebApplication UseStrapVitPipeline(this WebApplication app)
    {
        app.UseMiddleware<RequestOutcomeMiddleware>();
        // Outside the exception handler, so errors it turns into responses are counted with their final status.
        app.UseHttpMetrics();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseStrapVitAuth();
        app.UseRateLimiter();
        app.UseSwagger();
        app.UseSwaggerUI(o =>
        {
            o.SwaggerEndpoint("/swagger/v1/swagger.json", "StrapVitService v1");
            o.RoutePrefix = "swagger";
        });
        return app;
    }

    public static WebApplication MapStrapVitOperations(this WebApplication app)
    {
        app.MapHealthChecks("/healthz/live", new HealthCheckOptions { Predicate = _ => false });
        app.MapHealthChecks("/healthz/ready", new HealthCheckOptions
        {
            Predicate = c => c.Tags.Contains(ReadyTag),
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status200OK,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
        });
        app.MapMetrics("/metrics");
        app.MapGet("/", () => Results.Redirect("/swagger")).ExcludeFromDescription();
        return app;
    }
}

/// <summary>Ready once classification is loaded and warmed up; the gradient graphs may still be loading (see <c>GET /v1/model</c>).</summary>
public sealed class ModelReadyHealthCheck(ModelRuntime runtime) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(runtime.IsReady
            ? HealthCheckResult.Healthy($"{runtime.Package.Manifest.Name} on {runtime.ExecutionProvider}; gradients {runtime.Parts.Gradients}")
            : HealthCheckResult.Unhealthy(runtime.FatalError ?? "The model is still loading."));
}
