using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Options;
using StrapVit.Api.Errors;

namespace StrapVit.Api.InferenceProtocol;

/// <summary>Answer of <c>GET /v2</c>: the server's name, version and protocol extensions (none).</summary>
/// <param name="Name">Always <c>StrapVitService</c>.</param>
/// <param name="Version">The service's version.</param>
/// <param name="Extensions">The protocol extensions implemented: none.</param>
public sealed record ServerMetadataResponse(string Name, string Version, IReadOnlyList<string> Extensions);

/// <summary>Answer of <c>GET /v2/health/live</c>.</summary>
/// <param name="Live">Always true: the process answers.</param>
public sealed record ServerLiveResponse(bool Live);

/// <summary>Answer of <c>GET /v2/health/ready</c>: 200 when ready, 503 when not.</summary>
/// <param name="Ready">Whether the model is loaded and warmed up.</param>
public sealed record ServerReadyResponse(bool Ready);

/// <summary>Answer of <c>GET /v2/models/{name}/ready</c>: 200 when ready, 503 when not.</summary>
/// <param name="Name">The model's name, as the path gives it.</param>
/// <param name="Ready">Whether the model is loaded and warmed up.</param>
public sealed record ModelReadyResponse(string Name, bool Ready);

/// <summary>One input or output tensor of the model; -1 marks the batch dimension.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="Datatype">FP32, BYTES, INT64 or BOOL.</param>
/// <param name="Shape">Dimensions, -1 where the size varies.</param>
public sealed record MetadataTensor(string Name, string Datatype, IReadOnlyList<long> Shape);

/// <summary>Answer of <c>GET /v2/models/{name}</c>.</summary>
/// <param name="Name">The model's name, the one <c>GET /v1/model</c> reports.</param>
/// <param name="Versions">The one version served: the first 12 hex digits of the model's SHA-256.</param>
/// <param name="Platform">Always <c>onnxruntime_onnx</c>.</param>
/// <param name="Inputs"><c>pixel_values</c> FP32 [-1, C, H, W] in [0, 1] pixel space, or <c>images</c> BYTES [-1] holding encoded images (base64 strings); a request carries one of them.</param>
/// <param name="Outputs"><c>logits</c> and <c>probabilities</c> FP32 [-1, K], <c>predicted_class</c> INT64 [-1], <c>certified</c> BOOL [-1] (defense=certify only).</param>
public sealed record ModelMetadataResponse(
    string Name,
    IReadOnlyList<string> Versions,
    string Platform,
    IReadOnlyList<MetadataTensor> Inputs,
    IReadOnlyList<MetadataTensor> Outputs);

/// <summary>Body of <c>POST /v2/models/{name}/infer</c>, as the Open Inference Protocol's REST binding defines it.</summary>
/// <param name="Id">Echoed in the answer.</param>
/// <param name="Parameters"><c>defense</c> (off | detect | mitigate | certify; default as for <c>POST /v1/classify</c>), <c>seed</c> (the defense's randomized transforms, at least 0; one seed for every image of the batch, as if each were sent alone with it), <c>patch</c> (defense=certify: certified patch side in pixels). Strings or numbers, converted and checked as the query of <c>POST /v1/classify</c> is; any other parameter is refused.</param>
/// <param name="Inputs">Exactly one tensor: <c>pixel_values</c> (FP32 [N, C, H, W]) or <c>images</c> (BYTES [N]).</param>
/// <param name="Outputs">The outputs to return, in this order; all that the defense mode produces when absent.</param>
public sealed record InferenceRequest(
    string? Id,
    Dictionary<string, JsonElement>? Parameters,
    IReadOnlyList<RequestInput>? Inputs,
    IReadOnlyList<RequestOutput>? Outputs)
{
    /// <summary>The binary tensor data extension's header, which this server does not implement.</summary>
    private const string BinaryHeader = "Inference-Header-Content-Length";

    /// <summary>Reads the body as JSON whatever its content type, as the protocol's servers do; malformed JSON is a 400 naming where.</summary>
    public static async ValueTask<InferenceRequest?> BindAsync(HttpContext context)
    {
        if (context.Request.Headers.ContainsKey(BinaryHeader))
        {
            throw new ProblemException(StatusCodes.Status400BadRequest, "Binary tensor data not supported",
                $"This server reads tensors from the JSON body only ({BinaryHeader} is the binary data extension's header); send 'data' as JSON arrays.");
        }

        var options = context.RequestServices.GetRequiredService<IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions;
        try
        {
            return await JsonSerializer.DeserializeAsync<InferenceRequest>(context.Request.Body, options, context.RequestAborted)
                ?? throw new ProblemException(StatusCodes.Status400BadRequest, "Invalid inference request", "The body is JSON null; send an inference request object.");
        }
        catch (JsonException ex)
        {
            throw new ProblemException(StatusCodes.Status400BadRequest, "Invalid inference request", $"The body is not an inference request object: {ex.Message}");
        }
    }
}

/// <summary>One input tensor of an inference request.</summary>
/// <param name="Name">pixel_values or images.</param>
/// <param name="Shape">[N, C, H, W] for pixel_values, [N] for images.</param>
/// <param name="Datatype">FP32 for pixel_values, BYTES for images.</param>
/// <param name="Parameters">None are defined.</param>
/// <param name="Data">Row-major values, flat or nested as the shape; for images, one base64 string per encoded image.</param>
public sealed record RequestInput(
    string? Name,
    IReadOnlyList<long>? Shape,
    string? Datatype,
    Dictionary<string, JsonElement>? Parameters,
    JsonElement Data);

/// <summary>One output the request asks for; its parameters are ignored (outputs are always JSON).</summary>
/// <param name="Name">logits, probabilities, predicted_class or certified.</param>
/// <param name="Parameters">Ignored.</param>
public sealed record RequestOutput(string? Name, Dictionary<string, JsonElement>? Parameters);

/// <summary>Answer of <c>POST /v2/models/{name}/infer</c>.</summary>
/// <param name="ModelName">The model's name.</param>
/// <param name="ModelVersion">The model's version (first 12 hex digits of its SHA-256).</param>
/// <param name="Id">The request's <c>id</c>, when it had one.</param>
/// <param name="Parameters"><c>defense</c> as run (a default falls back to off when the defense is unavailable), with its <c>seed</c> or certified <c>patch</c>.</param>
/// <param name="Outputs">The output tensors, <c>data</c> flat in row-major order.</param>
public sealed record InferenceResponse(
    [property: JsonPropertyName("model_name")] string ModelName,
    [property: JsonPropertyName("model_version")] string ModelVersion,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    IReadOnlyDictionary<string, object> Parameters,
    IReadOnlyList<ResponseOutput> Outputs);

/// <summary>One output tensor.</summary>
/// <param name="Name">logits, probabilities, predicted_class or certified.</param>
/// <param name="Shape">[N, K] or [N].</param>
/// <param name="Datatype">FP32, INT64 or BOOL.</param>
/// <param name="Data">The values, flat in row-major order.</param>
public sealed record ResponseOutput(string Name, IReadOnlyList<long> Shape, string Datatype, object Data);
