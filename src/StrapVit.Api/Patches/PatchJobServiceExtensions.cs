using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using StackExchange.Redis;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace StrapVit.Api.Patches;

/// <summary>Composition of the universal-patch jobs: the job store (memory or Redis) and the runner.</summary>
public static class PatchJobServiceExtensions
{
    public static IServiceCollection AddStrapVitPatchJobs(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<JobStoreOptions>().Bind(configuration.GetSection(JobStoreOptions.SectionName))
            .Validate(o => o.SweepIntervalSeconds >= 1, "Jobs:SweepIntervalSeconds must be at least 1.")
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        // Resolved only with Jobs:Redis; the container disposes it after the runner has stopped.
        services.AddSingleton<IConnectionMultiplexer>(sp =>
        {
            var redis = ConfigurationOptions.Parse(sp.GetRequiredService<IOptions<JobStoreOptions>>().Value.Redis!);
            redis.AbortOnConnectFail = false; // start even while Redis is still coming up; job requests answer 503 until it is
            return ConnectionMultiplexer.Connect(redis);
        });
        services.AddSingleton<IPatchJobStore>(sp => string.IsNullOrWhiteSpace(sp.GetRequiredService<IOptions<JobStoreOptions>>().Value.Redis)
            ? ActivatorUtilities.CreateInstance<InMemoryPatchJobStore>(sp)
            : ActivatorUtilities.CreateInstance<RedisPatchJobStore>(sp));
        services.AddSingleton<PatchJobRunner>();
        services.AddHostedService(sp => sp.GetRequiredService<PatchJobRunner>());
        services.ConfigureSwaggerGen(o => o.OperationFilter<PatchJobRequestExample>());
        return services;
    }
}

/// <summary>
/// The example body of <c>POST /v1/patches</c>, which Swagger UI's "Try it out" starts from: only the target class,
/// so every other setting takes the service's default (a body built from the schema would send zeros).
/// </summary>
internal sealed class PatchJobRequestExample : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<IEndpointNameMetadata>().Any(n => n.EndpointName == PatchJobEndpoints.StartName)
            && operation.RequestBody?.Content?.TryGetValue("application/json", out var media) == true && media is OpenApiMediaType json)
        {
            json.Example = new JsonObject { ["targetClass"] = 1 };
        }
    }
}
