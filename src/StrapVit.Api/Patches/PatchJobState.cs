namespace StrapVit.Api.Patches;

/// <summary>Lifecycle of a universal-patch job.</summary>
public enum PatchJobStatus
{
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

/// <summary>
/// Everything a replica needs to answer for a job, whichever replica runs it: what the job store holds (the patch
/// image is stored beside it). Written by the runner that owns the job; read by any replica.
/// </summary>
/// <param name="Id">The job's id (32 hex digits).</param>
/// <param name="Status">Where it stands.</param>
/// <param name="Settings">The request with every default filled in, the seed included.</param>
/// <param name="Channels">Channels of the patch (the model's).</param>
/// <param name="Created">When it was accepted.</param>
/// <param name="Started">When training began.</param>
/// <param name="Finished">When it ended, whichever way.</param>
/// <param name="Step">Training steps done.</param>
/// <param name="SuccessRate">Success on the latest training batches.</param>
/// <param name="EtaSeconds">Estimated time left while running.</param>
/// <param name="QueuePosition">While queued: 1 = next to run on its replica.</param>
/// <param name="Outcome">The held-out result once succeeded.</param>
/// <param name="Error">Why it failed or was canceled by the service (not by a client).</param>
public sealed record PatchJobState(
    string Id,
    PatchJobStatus Status,
    PatchJobRequest Settings,
    int Channels,
    DateTimeOffset Created,
    DateTimeOffset? Started = null,
    DateTimeOffset? Finished = null,
    int Step = 0,
    double SuccessRate = 0,
    double? EtaSeconds = null,
    int? QueuePosition = null,
    PatchJobOutcome? Outcome = null,
    string? Error = null)
{
    public bool IsFinished => Status is PatchJobStatus.Succeeded or PatchJobStatus.Failed or PatchJobStatus.Canceled;
}

/// <summary>A finished job's success on held-out images and on its last training batches.</summary>
public sealed record PatchJobOutcome(double HeldOutSuccessRate, int HeldOutImages, double TrainSuccessRate);

/// <summary>
/// Configuration section <c>Jobs</c>: where universal-patch job state lives. With <see cref="Redis"/> set, state and
/// patch images are in Redis and every replica can poll, fetch and cancel any job; otherwise in this process's memory.
/// </summary>
public sealed class JobStoreOptions
{
    public const string SectionName = "Jobs";

    /// <summary>A StackExchange.Redis configuration string (e.g. <c>redis:6379</c>); empty keeps jobs in memory.</summary>
    public string? Redis { get; set; }

    /// <summary>Prefix of every Redis key, so several deployments can share one Redis.</summary>
    public string KeyPrefix { get; set; } = "strapvit:";

    /// <summary>How often expired jobs are swept and live ones' Redis expiry renewed.</summary>
    public int SweepIntervalSeconds { get; set; } = 60;
}
