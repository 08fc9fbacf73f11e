using Microsoft.AspNetCore.Http.Metadata;

namespace StrapVit.Api.InferenceProtocol;

/// <summary>Configuration section <c>InferenceProtocol</c>: limits of <c>POST /v2/models/{name}/infer</c>.</summary>
public sealed class InferenceProtocolOptions
{
    public const string SectionName = "InferenceProtocol";

    /// <summary>
    /// Generous JSON size of one FP32 value: 17 significant digits (what numpy's <c>tolist()</c> prints), sign,
    /// exponent, separator and the share of a nested array's brackets.
    /// </summary>
    public const int JsonBytesPerValue = 24;

    /// <summary>Most images (N) one request may carry; more is a 413 problem.</summary>
    public int MaxBatchSize { get; set; } = 64;

    /// <summary>
    /// Largest request body in bytes. 0 (the default): enough for <see cref="MaxBatchSize"/> FP32 images written as
    /// JSON text, or for one BYTES image at <c>Images:MaxBytes</c> in base64, whichever is larger, plus
    /// <c>Limits:MaxRequestBodyBytes</c> for the JSON around the tensor.
    /// </summary>
    public long MaxRequestBodyBytes { get; set; }

    /// <summary>The body limit for a model whose images hold <paramref name="imageValues"/> values (C·H·W).</summary>
    public long BodyLimit(int imageValues, long maxImageBytes, long jsonOverhead) => MaxRequestBodyBytes > 0
        ? MaxRequestBodyBytes
        : Math.Max((long)MaxBatchSize * imageValues * JsonBytesPerValue, (maxImageBytes + 2) / 3 * 4) + jsonOverhead;
}

/// <summary>
/// The infer endpoint's body limit as endpoint metadata. Routing applies it to the request before the body is read;
/// it is computed when asked, because it depends on the model loaded at start-up.
/// </summary>
internal sealed class InferBodyLimit(IServiceProvider services) : IRequestSizeLimitMetadata
{
    public long? MaxRequestBodySize => services.GetRequiredService<InferenceProtocolService>().MaxRequestBodyBytes;
}
