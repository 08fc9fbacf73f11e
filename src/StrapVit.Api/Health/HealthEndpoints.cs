using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.OpenApi;
using StrapVit.Api.Serving;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace StrapVit.Api.Health;

/// <summary><c>GET /healthz/live</c> and <c>GET /healthz/ready</c>: the framework's health checks, for kubelet probes and load balancers.</summary>
public static class HealthEndpoints
{
    public const string LivePath = "/healthz/live";
    public const string ReadyPath = "/healthz/ready";
    private const string ReadyTag = "ready";

    public static IServiceCollection AddStrapVitHealth(this IServiceCollection services)
    {
        services.AddHealthChecks().AddCheck<ModelReadyHealthCheck>("model", tags: [ReadyTag]);
        services.ConfigureSwaggerGen(o => o.DocumentFilter<HealthDocumentFilter>());
        return services;
    }

    public static IEndpointRouteBuilder MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapHealthChecks(LivePath, new HealthCheckOptions { Predicate = _ => false });
        app.MapHealthChecks(ReadyPath, new HealthCheckOptions
        {
            Predicate = c => c.Tags.Contains(ReadyTag),
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status200OK,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
        });
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

/// <summary>
/// Lists the health endpoints in the OpenAPI document: they are the health-check middleware's, not route handlers,
/// so the API explorer does not see them. Their answer is the plain-text status the middleware writes.
/// </summary>
internal sealed class HealthDocumentFilter : IDocumentFilter
{
    public void Apply(OpenApiDocument document, DocumentFilterContext context)
    {
        document.Paths ??= [];
        document.Paths[HealthEndpoints.LivePath] = Path("Liveness", "Healthy while the process serves requests; checks nothing else.",
            ("200", "Alive.", "Healthy"));
        document.Paths[HealthEndpoints.ReadyPath] = Path("Readiness", "Healthy once classification is loaded and warmed up (the gradient graphs may still be loading); 503 before.",
            ("200", "Ready.", "Healthy"), ("503", "Not ready yet.", "Unhealthy"));
        document.Tags ??= new HashSet<OpenApiTag>();
        if (!document.Tags.Any(t => t.Name == "Health"))
        {
            document.Tags.Add(new OpenApiTag { Name = "Health" });
        }
    }

    private static OpenApiPathItem Path(string name, string description, params (string Status, string Description, string Body)[] answers)
    {
        var responses = new OpenApiResponses();
        foreach (var (status, text, body) in answers)
        {
            responses[status] = new OpenApiResponse
            {
                Description = text,
                Content = new Dictionary<string, IOpenApiMediaType>
                {
                    ["text/plain"] = new OpenApiMediaType
                    {
                        Schema = new OpenApiSchema { Type = JsonSchemaType.String, Enum = [JsonValue.Create("Healthy")!, JsonValue.Create("Degraded")!, JsonValue.Create("Unhealthy")!] },
                        Example = JsonValue.Create(body),
                    },
                },
            };
        }

        return new OpenApiPathItem
        {
            Operations = new Dictionary<HttpMethod, OpenApiOperation>
            {
                [HttpMethod.Get] = new OpenApiOperation
                {
                    OperationId = name,
                    Summary = description,
                    Tags = new HashSet<OpenApiTagReference> { new("Health") },
                    Responses = responses,
                },
            },
        };
    }
}
