namespace StrapVit.Api.Hosting;

/// <summary>Configuration section <c>Model</c>.</summary>
public sealed class ModelOptions
{
    public const string SectionName = "Model";

    /// <summary>Model package directory; empty means the embedded default (README, 'Bring your own ViT').</summary>
    public string? Path { get; set; }

    /// <summary>Where derived artefacts (gradient graphs, calibration) are cached; empty means beside the package or a temp folder.</summary>
    public string? CacheDirectory { get; set; }
}

/// <summary>Configuration section <c>Limits</c>: bounds on request work.</summary>
public sealed class RequestLimitOptions
{
    public const string SectionName = "Limits";

    /// <summary>Classifications running at once; beyond that, requests queue.</summary>
    public int MaxConcurrentInferences { get; set; } = 32;

    /// <summary>Requests allowed to wait for a slot; beyond that the answer is 429 with Retry-After.</summary>
    public int InferenceQueueLength { get; set; } = 64;

    /// <summary>Largest <c>topK</c> a client may ask for (capped by the class count).</summary>
    public int MaxTopK { get; set; } = 1000;

    /// <summary>
    /// Largest request body of every endpoint that takes no image, the JSON of <c>POST /v1/patches</c> included
    /// (Kestrel's own default would be 30 MB). Image endpoints take <c>Images:MaxBytes</c> instead, plus
    /// <see cref="MaxFormOverheadBytes"/> for a multipart form.
    /// </summary>
    public long MaxRequestBodyBytes { get; set; } = 64 * 1024;

    /// <summary>What a multipart form may carry beyond its image: boundaries, part headers and the attack's form fields.</summary>
    public long MaxFormOverheadBytes { get; set; } = 64 * 1024;
}
