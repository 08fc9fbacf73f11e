namespace StrapVit.Api.Serving;

/// <summary>Configuration section <c>Model</c>.</summary>
public sealed class ModelOptions
{
    public const string SectionName = "Model";

    /// <summary>Model package directory; empty means the embedded default (README, 'Bring your own ViT').</summary>
    public string? Path { get; set; }

    /// <summary>Where derived artefacts (gradient graphs, calibration) are cached; empty means beside the package or a temp folder.</summary>
    public string? CacheDirectory { get; set; }
}

/// <summary>Configuration section <c>Limits</c>, the inference half: how much classification runs at once, and how large an answer may be.</summary>
public sealed class InferenceLimitOptions
{
    public const string SectionName = "Limits";

    /// <summary>Classifications running at once; beyond that, requests queue.</summary>
    public int MaxConcurrentInferences { get; set; } = 32;

    /// <summary>Requests allowed to wait for a slot; beyond that the answer is 429 with Retry-After.</summary>
    public int InferenceQueueLength { get; set; } = 64;

    /// <summary>Largest <c>topK</c> a client may ask for (capped by the class count).</summary>
    public int MaxTopK { get; set; } = 1000;
}
