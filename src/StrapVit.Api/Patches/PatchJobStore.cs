using System.Collections.Concurrent;

namespace StrapVit.Api.Patches;

/// <summary>
/// Where job state and patch images live: this process (<see cref="InMemoryPatchJobStore"/>) or Redis, shared by
/// every replica (<see cref="RedisPatchJobStore"/>). A cancel request is a flag of its own, so a replica asking for
/// it never races the owner's progress writes.
/// </summary>
public interface IPatchJobStore
{
    /// <summary>Writes the state (and, when given, the patch image); a finished job expires after <paramref name="retention"/>.</summary>
    Task SaveAsync(PatchJobState state, byte[]? patchPng, TimeSpan retention, CancellationToken ct);

    Task<PatchJobState?> GetAsync(string id, CancellationToken ct);

    Task<byte[]?> GetImageAsync(string id, CancellationToken ct);

    /// <summary>Marks the job for cancellation; its owner stops it at the next check.</summary>
    Task RequestCancelAsync(string id, CancellationToken ct);

    Task<bool> IsCancelRequestedAsync(string id, CancellationToken ct);

    /// <summary>Forgets a job; false if it was not there.</summary>
    Task<bool> DeleteAsync(string id, CancellationToken ct);

    /// <summary>Drops finished jobs past their retention, and the oldest finished ones beyond <paramref name="maxJobs"/>.</summary>
    Task SweepAsync(int maxJobs, CancellationToken ct);
}

/// <summary>Job state in this process: one replica, or a deployment without <c>Jobs:Redis</c>.</summary>
public sealed class InMemoryPatchJobStore(TimeProvider clock) : IPatchJobStore
{
    private sealed record Entry(PatchJobState State, byte[]? Png, DateTimeOffset? Expires, bool Cancel);

    private readonly ConcurrentDictionary<string, Entry> jobs = new(StringComparer.Ordinal);

    public Task SaveAsync(PatchJobState state, byte[]? patchPng, TimeSpan retention, CancellationToken ct)
    {
        var expires = state.IsFinished ? clock.GetUtcNow() + retention : (DateTimeOffset?)null;
        jobs.AddOrUpdate(state.Id,
            _ => new Entry(state, patchPng, expires, false),
            (_, old) => old with { State = state, Png = patchPng ?? old.Png, Expires = expires });
        return Task.CompletedTask;
    }

    public Task<PatchJobState?> GetAsync(string id, CancellationToken ct) => Task.FromResult(Live(id)?.State);

    public Task<byte[]?> GetImageAsync(string id, CancellationToken ct) => Task.FromResult(Live(id)?.Png);

    public Task RequestCancelAsync(string id, CancellationToken ct)
    {
        // Compare-and-swap, so a concurrent progress write neither loses the flag nor resurrects a forgotten job.
        while (jobs.TryGetValue(id, out var old) && !jobs.TryUpdate(id, old with { Cancel = true }, old))
        {
        }

        return Task.CompletedTask;
    }

    public Task<bool> IsCancelRequestedAsync(string id, CancellationToken ct) => Task.FromResult(jobs.TryGetValue(id, out var e) && e.Cancel);

    public Task<bool> DeleteAsync(string id, CancellationToken ct) => Task.FromResult(jobs.TryRemove(id, out _));

    public Task SweepAsync(int maxJobs, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var finished = jobs.Where(j => j.Value.Expires is not null).OrderBy(j => j.Value.State.Finished).ToList();
        var drop = finished.Where(j => j.Value.Expires <= now).Select(j => j.Key).ToList();
        drop.AddRange(finished.Where(j => j.Value.Expires > now).Take(Math.Max(0, jobs.Count - drop.Count - maxJobs)).Select(j => j.Key));
        foreach (var id in drop) jobs.TryRemove(id, out _);
        return Task.CompletedTask;
    }

    private Entry? Live(string id) => jobs.TryGetValue(id, out var e) && (e.Expires is null || e.Expires > clock.GetUtcNow()) ? e : null;
}
