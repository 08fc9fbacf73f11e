using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace StrapVit.Api.Auth;

/// <summary>
/// API keys on the framework's authentication and authorization, and per-key rate limits on
/// its partitioned rate limiter. Endpoints opt in through <see cref="RequireApiKey{TBuilder}"/> and
/// <see cref="RequireClassifyKey{TBuilder}"/>.
/// </summary>
public static partial class AuthServiceExtensions
{
    public const string ApiKeyPolicy = "api-key";
    public const string ClassifyPolicy = "classify-key";

    /// <summary>
    /// Settings from secret files, one per key, named like environment variables (<c>Auth__ApiKeys__ci</c>): what Docker
    /// and Kubernetes secrets mounted at <c>Auth:SecretsDirectory</c> (default <c>/run/secrets</c>) look like. Optional:
    /// without the directory nothing is read. They come last, so a secret wins over appsettings and the environment.
    /// </summary>
    public static WebApplicationBuilder AddStrapVitSecrets(this WebApplicationBuilder builder)
    {
        var directory = builder.Configuration["Auth:SecretsDirectory"];
        builder.Configuration.AddKeyPerFile(string.IsNullOrWhiteSpace(directory) ? "/run/secrets" : directory, optional: true);
        return builder;
    }

    public static IServiceCollection AddStrapVitAuth(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ApiKeyOptions>().Bind(configuration.GetSection(ApiKeyOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<ApiKeyOptions>, ApiKeyOptionsValidator>();
        services.AddSingleton<ApiKeyStore>();
        services.AddSingleton<IAuthorizationHandler, ApiKeyRequirementHandler>();
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<Microsoft.AspNetCore.Authentication.AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        services.AddAuthorizationBuilder()
            .AddPolicy(ApiKeyPolicy, p => p.AddRequirements(new ApiKeyRequirement(classification: false)))
            .AddPolicy(ClassifyPolicy, p => p.AddRequirements(new ApiKeyRequirement(classification: true)));
        return services;
    }

    /// <summary>
    /// The per-key limiter: a token bucket per key name (Auth:Burst at once, Auth:RequestsPerMinute sustained). It is
    /// the rate limiter's global limiter, so it counts every request a key makes, ahead of the endpoints' own policies;
    /// requests without a key are not partitioned here (the open endpoints have their concurrency limits).
    /// </summary>
    public static PartitionedRateLimiter<HttpContext> PerKeyLimiter() => PartitionedRateLimiter.Create<HttpContext, string>(context =>
    {
        if (context.User.Identity is not { IsAuthenticated: true, AuthenticationType: ApiKeyAuthenticationHandler.SchemeName, Name: { } name })
        {
            return RateLimitPartition.GetNoLimiter(string.Empty);
        }

        var auth = context.RequestServices.GetRequiredService<IOptions<ApiKeyOptions>>().Value;
        return RateLimitPartition.GetTokenBucketLimiter(name, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = auth.Burst,
            TokensPerPeriod = 1,
            ReplenishmentPeriod = TimeSpan.FromMinutes(1.0 / auth.RequestsPerMinute),
            QueueLimit = 0,
            AutoReplenishment = true,
        });
    });

    /// <summary>Authentication, then authorization; the rate limiter comes after both, so it sees the key's name.</summary>
    public static WebApplication UseStrapVitAuth(this WebApplication app)
    {
        app.UseAuthentication();
        app.UseAuthorization();
        if (!app.Services.GetRequiredService<ApiKeyStore>().Enabled)
        {
            LogOpen(app.Logger);
        }

        return app;
    }

    /// <summary>Attack, explain and patch-job endpoints: a key is needed once any is configured.</summary>
    public static TBuilder RequireApiKey<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.RequireAuthorization(ApiKeyPolicy)
            .WithMetadata(new ApiKeyMetadata(Classification: false))
            .WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status401Unauthorized, typeof(Microsoft.AspNetCore.Mvc.ProblemDetails), ["application/problem+json"]));

    /// <summary>Classification endpoints: a key is needed only with Auth:RequireForClassify.</summary>
    public static TBuilder RequireClassifyKey<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.RequireAuthorization(ClassifyPolicy).WithMetadata(new ApiKeyMetadata(Classification: true));

    /// <summary>The Swagger UI "Authorize" button: the X-API-Key header scheme, required by the operations that take keys.</summary>
    public static void AddApiKeySecurity(this SwaggerGenOptions options)
    {
        options.AddSecurityDefinition(ApiKeyAuthenticationHandler.SchemeName, new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.ApiKey,
            In = ParameterLocation.Header,
            Name = ApiKeyAuthenticationHandler.HeaderName,
            Description = "An API key (Auth:ApiKeys holds its SHA-256). Needed by the attack, explain and patch-job endpoints when keys are configured; "
                + "by classification too with Auth:RequireForClassify.",
        });
        options.OperationFilter<ApiKeyOperationFilter>();
    }

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "No API key is configured (Auth:ApiKeys): the attack, explain and patch-job endpoints are open to anyone who reaches the service")]
    private static partial void LogOpen(ILogger logger);

    internal static string RetryAfterSeconds(TimeSpan wait) =>
        Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
}

/// <summary>Marks an endpoint that takes an API key (a classification one only with Auth:RequireForClassify), for the OpenAPI document.</summary>
public sealed record ApiKeyMetadata(bool Classification);

/// <summary>Adds the API-key security requirement to the operations that need a key under the configuration.</summary>
internal sealed class ApiKeyOperationFilter(ApiKeyStore store) : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        var meta = context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<ApiKeyMetadata>().FirstOrDefault();
        if (meta is null || !store.IsRequired(meta.Classification))
        {
            return;
        }

        operation.Security ??= [];
        operation.Security.Add(new OpenApiSecurityRequirement
        {
            [new OpenApiSecuritySchemeReference(ApiKeyAuthenticationHandler.SchemeName, context.Document)] = [],
        });
    }
}
