namespace StrapVit.Api.Serving;

/// <summary>
/// Configuration section <c>Batching</c>: Triton's dynamic batcher for <c>POST /v1/classify</c> and
/// <c>POST /v2/models/{name}/infer</c>. Requests wait in one queue; a batch holds requests of one defense mode
/// (each keeps its own seed) and goes to a free run slot as soon as it is full, reaches a preferred size, or its
/// oldest request has waited <see cref="MaxQueueDelayMicroseconds"/>. defense=certify never batches.
/// </summary>
public sealed class BatchingOptions
{
    public const string SectionName = "Batching";

    /// <summary>
    /// Whether concurrent classifications share runs. On by default, on CUDA and on CPU alike: on the 2-core CPU
    /// machine batched throughput and p50 matched or beat unbatched at 1, 8 and 32 connections (docs/BENCHMARKS.md).
    /// </summary>
    public bool Enabled { get; set; } = true;

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
