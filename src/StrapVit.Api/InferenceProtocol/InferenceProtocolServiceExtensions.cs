namespace StrapVit.Api.InferenceProtocol;

/// <summary>Composition of the Open Inference Protocol (v2) feature.</summary>
public static class InferenceProtocolServiceExtensions
{
    public static IServiceCollection AddStrapVitInferenceProtocol(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<InferenceProtocolOptions>().Bind(configuration.GetSection(InferenceProtocolOptions.SectionName))
            .Validate(o => o.MaxBatchSize is >= 1 and <= 4096, "InferenceProtocol:MaxBatchSize must be in [1, 4096].")
            .Validate(o => o.MaxRequestBodyBytes is 0 or >= 1024, "InferenceProtocol:MaxRequestBodyBytes must be 0 (derived) or at least 1024.")
            .ValidateOnStart();
        services.AddSingleton<InferenceProtocolService>();

        // The protocol's clients read a failed request's message from "error"; the service's problem details keep
        // their RFC 7807 members and carry the same text there too, on the /v2 routes.
        services.PostConfigure<ProblemDetailsOptions>(o =>
        {
            var inner = o.CustomizeProblemDetails;
            o.CustomizeProblemDetails = context =>
            {
                inner?.Invoke(context);
                if (context.HttpContext.Request.Path.StartsWithSegments(InferenceProtocolEndpoints.Prefix))
                {
                    context.ProblemDetails.Extensions["error"] = context.ProblemDetails.Detail ?? context.ProblemDetails.Title;
                }
            };
        });
        return services;
    }
}
