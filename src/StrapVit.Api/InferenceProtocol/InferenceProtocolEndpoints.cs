using System.Globalization;
using System.Reflection;
using Microsoft.AspNetCore.Http.HttpResults;
using StrapVit.Api.Auth;
using StrapVit.Api.Serving;

namespace StrapVit.Api.InferenceProtocol;

/// <summary>
/// The Open Inference Protocol's REST binding (KServe v2, Triton): server and model metadata, health, and
/// <c>POST /v2/models/{name}/infer</c>. Paths with <c>/versions/{version}</c> name the model's one version.
/// Errors are the service's problem details with the protocol's <c>error</c> member beside <c>detail</c>.
/// </summary>
public static class InferenceProtocolEndpoints
{
    public const string Prefix = "/v2";

    /// <summary>The OpenAPI tag of every /v2 operation.</summary>
    public const string Tag = "Inference protocol";

    private const string InferDescription =
        "The first input is 'pixel_values' (FP32 [N, C, H, W] in [0, 1] pixel space, data flat or nested) or 'images' "
        + "(BYTES [N], one base64 encoded image each, decoded like an upload). parameters: defense, seed, patch as for POST /v1/classify. "
        + "Outputs: logits, probabilities (FP32 [N, K]), predicted_class (INT64 [N]); under defense=certify probabilities are one-mask vote shares, "
        + "with certified (BOOL [N]) and no logits.";

    private static readonly string ServerVersion =
        typeof(InferenceProtocolEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0";

    public static IEndpointRouteBuilder MapInferenceProtocolEndpoints(this IEndpointRouteBuilder app)
    {
        var v2 = app.MapGroup(Prefix).WithTags(Tag);
        v2.MapGet("", GetServerMetadata).WithName("V2ServerMetadata").WithSummary("Server metadata");
        v2.MapGet("/health/live", GetLive).WithName("V2ServerLive").WithSummary("Server live");
        v2.MapGet("/health/ready", GetReady).WithName("V2ServerReady").WithSummary("Server ready: the model is loaded and warmed up")
            .Produces<ServerReadyResponse>(StatusCodes.Status503ServiceUnavailable);

        // Each model route twice: without a version (the server's one) and with /versions/{version}.
        var model = v2.MapGroup("/models/{name}");
        var versioned = v2.MapGroup("/models/{name}/versions/{version}");
        DescribeModelMetadata(model.MapGet("", GetModelMetadata), "");
        DescribeModelMetadata(versioned.MapGet("", GetModelVersionMetadata), "Version");
        DescribeModelReady(model.MapGet("/ready", GetModelReady), "");
        DescribeModelReady(versioned.MapGet("/ready", GetModelVersionReady), "Version");
        DescribeInfer(model.MapPost("/infer", Infer), "", app.ServiceProvider);
        DescribeInfer(versioned.MapPost("/infer", InferVersion), "Version", app.ServiceProvider);
        return app;
    }

    private static void DescribeModelMetadata(RouteHandlerBuilder endpoint, string suffix) =>
        endpoint.WithName("V2ModelMetadata" + suffix).WithSummary("Model metadata: inputs and outputs").ProducesProblem(StatusCodes.Status404NotFound);

    private static void DescribeModelReady(RouteHandlerBuilder endpoint, string suffix) =>
        endpoint.WithName("V2ModelReady" + suffix).WithSummary("Model ready")
            .Produces<ModelReadyResponse>(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status404NotFound);

    private static void DescribeInfer(RouteHandlerBuilder endpoint, string suffix, IServiceProvider services) =>
        endpoint
            .WithName("V2Infer" + suffix)
            .WithSummary("Classify a batch of images")
            .WithDescription(InferDescription)
            // Read as JSON whatever the content type says, as the protocol's reference servers do (curl -d sends a form type).
            .Accepts<InferenceRequest>("application/json", "*/*")
            .WithMetadata(new InferBodyLimit(services))
            .RequireClassifyKey()
            .RequireInferenceSlot()
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

    internal static Ok<ServerMetadataResponse> GetServerMetadata() =>
        TypedResults.Ok(new ServerMetadataResponse("StrapVitService", ServerVersion, []));

    internal static Ok<ServerLiveResponse> GetLive() => TypedResults.Ok(new ServerLiveResponse(true));

    /// <summary>Ready when the one model is: what <c>/healthz/ready</c> checks.</summary>
    /// <param name="service">The protocol's view of the model.</param>
    /// <param name="response">Gets <c>Retry-After</c> while the model loads.</param>
    internal static Results<Ok<ServerReadyResponse>, JsonHttpResult<ServerReadyResponse>> GetReady(InferenceProtocolService service, HttpResponse response)
    {
        if (!service.IsReady)
        {
            response.Headers.RetryAfter = ModelRuntime.LoadingRetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return TypedResults.Json(new ServerReadyResponse(false), statusCode: StatusCodes.Status503ServiceUnavailable);
        }

        return TypedResults.Ok(new ServerReadyResponse(true));
    }

    /// <param name="name">The model's name, as GET /v1/model reports it.</param>
    /// <param name="service">The protocol's view of the model.</param>
    internal static Ok<ModelMetadataResponse> GetModelMetadata(string name, InferenceProtocolService service) =>
        GetModelVersionMetadata(name, null, service);

    /// <param name="name">The model's name, as GET /v1/model reports it.</param>
    /// <param name="version">The model's version (first 12 hex digits of its SHA-256).</param>
    /// <param name="service">The protocol's view of the model.</param>
    internal static Ok<ModelMetadataResponse> GetModelVersionMetadata(string name, string? version, InferenceProtocolService service)
    {
        service.RequireModel(name, version);
        return TypedResults.Ok(service.Metadata());
    }

    /// <param name="name">The model's name, as GET /v1/model reports it.</param>
    /// <param name="service">The protocol's view of the model.</param>
    /// <param name="response">Gets <c>Retry-After</c> while the model loads.</param>
    internal static Results<Ok<ModelReadyResponse>, JsonHttpResult<ModelReadyResponse>> GetModelReady(string name, InferenceProtocolService service, HttpResponse response) =>
        GetModelVersionReady(name, null, service, response);

    /// <param name="name">The model's name, as GET /v1/model reports it.</param>
    /// <param name="version">The model's version (first 12 hex digits of its SHA-256).</param>
    /// <param name="service">The protocol's view of the model.</param>
    /// <param name="response">Gets <c>Retry-After</c> while the model loads.</param>
    internal static Results<Ok<ModelReadyResponse>, JsonHttpResult<ModelReadyResponse>> GetModelVersionReady(string name, string? version, InferenceProtocolService service, HttpResponse response)
    {
        // The name and version are the package's, known while the model loads: an unknown model is 404 then too.
        service.RequireModel(name, version);
        if (!service.IsReady)
        {
            response.Headers.RetryAfter = ModelRuntime.LoadingRetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return TypedResults.Json(new ModelReadyResponse(name, false), statusCode: StatusCodes.Status503ServiceUnavailable);
        }

        return TypedResults.Ok(new ModelReadyResponse(name, true));
    }

    /// <param name="name">The model's name, as GET /v1/model reports it.</param>
    /// <param name="inference">The inference request.</param>
    /// <param name="service">The protocol's view of the model.</param>
    /// <param name="ct">Aborted when the client disconnects.</param>
    internal static Task<Ok<InferenceResponse>> Infer(string name, InferenceRequest inference, InferenceProtocolService service, CancellationToken ct) =>
        InferVersion(name, null, inference, service, ct);

    /// <param name="name">The model's name, as GET /v1/model reports it.</param>
    /// <param name="version">The model's version (first 12 hex digits of its SHA-256).</param>
    /// <param name="inference">The inference request.</param>
    /// <param name="service">The protocol's view of the model.</param>
    /// <param name="ct">Aborted when the client disconnects.</param>
    internal static async Task<Ok<InferenceResponse>> InferVersion(string name, string? version, InferenceRequest inference, InferenceProtocolService service, CancellationToken ct)
    {
        service.RequireModel(name, version);
        return TypedResults.Ok(await service.InferAsync(inference, ct));
    }
}
