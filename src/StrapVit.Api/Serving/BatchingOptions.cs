namespace StrapVit.Api.Serving;

/// <summary>Whether concurrent classifications are coalesced into shared ONNX Runtime runs.</summary>
public enum BatchingMode
{
    /// <summary>On when the classifier runs on CUDA, off on CPU (where batching buys little: docs/BENCHMARKS.md).</summary>
    Auto,

    /// <summary>Always batch.</summary>
    On,

    /// <summary>Every request runs on its own.</summary>
    Off,
}

/// <summary>
/// Configuration section <c>Batching</c>: Triton's dynamic batcher for <c>POST /v1/classify</c> and
/// <c>POST /v2/models/{name}/infer</c>. Requests wait in one queue; a batch holds requests of one defense mode
/// (each keeps its own seed) and goes to a free run slot as soon as it is full, reaches a preferred size, or its
/// oldest request has waited <see cref="MaxQueueDelayMicroseconds"/>. defense=certify never batches.
/// </summary>
public sealed class BatchingOptions
{
    public const string SectionName = "Batching";

    public BatchingMode Mode { get; set; } = BatchingMode.Auto;

    /// <summary>Most images in one batch (a /v2 request larger than this runs as a batch of its own).</summary>
    public int MaxBatchSize { get; set; } = 32;

    /// <summary>
    /// How long a request may wait for others to join its batch. 0 (Triton's default) never waits when a run slot is
    /// free: requests then batch only while every slot is busy, so a lone request pays no delay.
    /// </summary>
    public int MaxQueueDelayMicroseconds { get; set; }

    /// <summary>Batch sizes sent at once when the queue can form them, without waiting for the delay; empty: none.</summary>
    public int[] PreferredBatchSizes { get; set; } = [];

    /// <summary>Batches running at once (Triton's model instances): while all run, the queue fills the next batch.</summary>
    public int MaxConcurrentBatches { get; set; } = 2;

    /// <summary>The first problem with these settings, or null.</summary>
    public string? Validate()
    {
        if (MaxBatchSize is < 1 or > 4096)
        {
            return "Batching:MaxBatchSize must be in [1, 4096].";
        }

        if (MaxQueueDelayMicroseconds is < 0 or > 1_000_000)
        {
            return "Batching:MaxQueueDelayMicroseconds must be in [0, 1000000].";
        }

        if (PreferredBatchSizes.Any(size => size < 1 || size > MaxBatchSize))
        {
            return "Batching:PreferredBatchSizes must each be in [1, Batching:MaxBatchSize].";
        }

        return MaxConcurrentBatches is < 1 or > 64 ? "Batching:MaxConcurrentBatches must be in [1, 64]." : null;
    }
}
