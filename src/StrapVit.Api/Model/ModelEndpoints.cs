using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using StrapVit.Api.Defense;
using StrapVit.Api.Serving;
using StrapVit.Core.Certification;

namespace StrapVit.Api.Model;

/// <summary><c>GET /v1/model</c>: what model is served, and how.</summary>
public static class ModelEndpoints
{
    public static IEndpointRouteBuilder MapModelEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/model", GetModel)
            .WithName("GetModel")
            .WithTags("Model")
            .WithSummary("Describe the served model");
        return app;
    }

    internal static Ok<ModelInfoResponse> GetModel(ModelRuntime runtime, DefenseSelector defense, IOptions<CertifyOptions> certify)
    {
        var m = runtime.Package.Manifest;
        var parts = runtime.Parts;
        var ready = runtime.IsReady;
        var certifier = ready ? runtime.Certifier : null;
        var defended = ready ? runtime.Defense : null;
        return TypedResults.Ok(new ModelInfoResponse(
            m.Name,
            m.Labels,
            new ModelInputInfo(m.Input.Channels, m.Input.Height, m.Input.Width),
            m.PatchSize,
            runtime.ExecutionProvider,
            runtime.Gradients,
            new DefenseAvailability(defended is not null, defended?.Variant,
                defense.DefaultMode.ToString().ToLowerInvariant(), runtime.DefenseUnavailable),
            certifier is null
                ? new CertifyAvailability(false, null, null, null, runtime.CertifyUnavailable)
                : new CertifyAvailability(true, certifier.Classifier.MethodName, certify.Value.PatchSize, certify.Value.MaxPatchSize, null),
            parts));
    }
}
