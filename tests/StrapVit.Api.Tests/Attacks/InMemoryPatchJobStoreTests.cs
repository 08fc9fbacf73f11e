using StrapVit.Api.Patches;

namespace StrapVit.Api.Tests.Attacks;

/// <summary>Retention of the in-memory job store: expired jobs vanish, and the sweep keeps at most MaxJobs finished ones.</summary>
public sealed class InMemoryPatchJobStoreTests
{
    private static readonly TimeSpan Retention = TimeSpan.FromMinutes(60);

    private sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static PatchJobState Job(string id, PatchJobStatus status, DateTimeOffset at) =>
        new(id, status, new PatchJobRequest(1, 3, 10, 4, 0.05f, 0, 1, 1, 7), 3, at, Finished: status is PatchJobStatus.Running ? null : at);

    [Fact]
    public async Task A_finished_job_expires_after_the_retention_time_and_a_running_one_never_does()
    {
        var clock = new ManualClock();
        var store = new InMemoryPatchJobStore(clock);
        await store.SaveAsync(Job("done", PatchJobStatus.Succeeded, clock.Now), [1, 2, 3], Retention, CancellationToken.None);
        await store.SaveAsync(Job("live", PatchJobStatus.Running, clock.Now), null, Retention, CancellationToken.None);

        clock.Now += Retention - TimeSpan.FromSeconds(1);
        Assert.NotNull(await store.GetAsync("done", CancellationToken.None));
        Assert.Equal([1, 2, 3], await store.GetImageAsync("done", CancellationToken.None));

        clock.Now += TimeSpan.FromSeconds(2);
        await store.SweepAsync(maxJobs: 10, CancellationToken.None);
        Assert.Null(await store.GetAsync("done", CancellationToken.None));
        Assert.NotNull(await store.GetAsync("live", CancellationToken.None));
    }

    [Fact]
    public async Task The_sweep_drops_the_oldest_finished_jobs_beyond_the_cap()
    {
        var clock = new ManualClock();
        var store = new InMemoryPatchJobStore(clock);
        for (var i = 0; i < 5; i++)
        {
            await store.SaveAsync(Job($"job{i}", PatchJobStatus.Failed, clock.Now), null, Retention, CancellationToken.None);
            clock.Now += TimeSpan.FromSeconds(1);
        }

        await store.SweepAsync(maxJobs: 3, CancellationToken.None);

        Assert.Null(await store.GetAsync("job0", CancellationToken.None));
        Assert.Null(await store.GetAsync("job1", CancellationToken.None));
        Assert.NotNull(await store.GetAsync("job2", CancellationToken.None));
        Assert.NotNull(await store.GetAsync("job4", CancellationToken.None));
    }

    [Fact]
    public async Task A_cancel_request_survives_the_owners_progress_writes()
    {
        var store = new InMemoryPatchJobStore(TimeProvider.System);
        await store.SaveAsync(Job("j", PatchJobStatus.Running, DateTimeOffset.UtcNow), null, Retention, CancellationToken.None);

        await store.RequestCancelAsync("j", CancellationToken.None);
        await store.SaveAsync(Job("j", PatchJobStatus.Running, DateTimeOffset.UtcNow) with { Step = 5 }, [9], Retention, CancellationToken.None);

        Assert.True(await store.IsCancelRequestedAsync("j", CancellationToken.None));
    }
}
