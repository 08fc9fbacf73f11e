using System.Threading.Channels;
using Microsoft.Extensions.Options;
using StrapVit.Api.Attacks;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Core.Attacks;
using StrapVit.Core.Attacks.Universal;
using StrapVit.Core.Datasets;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Patches;

/// <summary>
/// Runs universal-patch jobs as a hosted service: <c>POST /v1/patches</c> writes the job to the store and into a
/// bounded channel (<c>Attacks:Universal:MaxQueuedJobs</c>; full = 429), and <c>MaxRunningJobs</c> workers train
/// them. A queued job reports its position. Progress, snapshots and the result go to the store every
/// <see cref="FlushInterval"/>, which is also when a cancel request (from any replica) is noticed. On shutdown the
/// running jobs are canceled and recorded as such, and the service waits for them before the model is disposed.
/// A timer sweeps expired jobs.
/// </summary>
public sealed partial class PatchJobRunner(
    IPatchJobStore store,
    GradientModel gradients,
    IOptions<AttackOptions> options,
    IOptions<JobStoreOptions> storeOptions,
    ServiceMetrics metrics,
    TimeProvider clock,
    ILogger<PatchJobRunner> logger) : BackgroundService
{
    private static readonly TimeSpan FlushInterval = TimeSpan.FromMilliseconds(250);

    private readonly Channel<string> queue = Channel.CreateBounded<string>(new BoundedChannelOptions(Math.Max(1, options.Value.Universal.MaxQueuedJobs))
    {
        SingleWriter = false,
        FullMode = BoundedChannelFullMode.Wait,
    });

    private readonly Lock gate = new();
    private readonly SemaphoreSlim writes = new(1, 1);
    private readonly List<string> waiting = [];
    private readonly Dictionary<string, PatchJobState> owned = new(StringComparer.Ordinal);
    private EvaluationSet? train;
    private EvaluationSet? heldOut;

    private UniversalPatchJobOptions Limits => options.Value.Universal;

    private TimeSpan Retention => TimeSpan.FromMinutes(Limits.RetentionMinutes);

    /// <summary>Accepts a job: checks the training data, stores it as queued, and queues it; 429 when the queue is full.</summary>
    public async Task<PatchJobState> EnqueueAsync(PatchJobRequest settings, int channels, CancellationToken ct)
    {
        LoadData();
        var state = new PatchJobState(Guid.NewGuid().ToString("N"), PatchJobStatus.Queued, settings, channels, clock.GetUtcNow());
        lock (gate)
        {
            waiting.Add(state.Id);
            state = owned[state.Id] = state with { QueuePosition = waiting.Count };
        }

        // Stored before a worker can see it, so the worker's writes always come after this one.
        await WriteAsync(state.Id, null, ct);
        bool queued;
        lock (gate)
        {
            queued = queue.Writer.TryWrite(state.Id);
            if (!queued)
            {
                waiting.Remove(state.Id);
                owned.Remove(state.Id);
            }
        }

        if (!queued)
        {
            await store.DeleteAsync(state.Id, ct);
            metrics.ObserveAttack("universal_patch", "rejected", TimeSpan.Zero, 0);
            throw new ProblemException(StatusCodes.Status429TooManyRequests, "Too many patch jobs",
                $"{Limits.MaxRunningJobs} universal-patch job(s) are running and {Limits.MaxQueuedJobs} waiting on this replica; retry later or cancel one.")
            {
                RetryAfterSeconds = 30,
            };
        }

        LogQueued(logger, state.Id, settings.TargetClass ?? -1, state.QueuePosition ?? 0);
        return state;
    }

    public override void Dispose()
    {
        writes.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var workers = Enumerable.Range(0, Limits.MaxRunningJobs).Select(_ => Task.Run(() => WorkAsync(stoppingToken), CancellationToken.None)).ToList();
        workers.Add(SweepAsync(stoppingToken));
        await Task.WhenAll(workers);

        // Shutting down: what is still queued here will never run.
        queue.Writer.TryComplete();
        while (queue.Reader.TryRead(out var id))
        {
            await FinishAsync(id, s => s with { Status = PatchJobStatus.Canceled, Error = "The service shut down before the job started." }, null);
        }
    }

    private async Task WorkAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var id in queue.Reader.ReadAllAsync(stoppingToken))
            {
                try
                {
                    await DequeuedAsync(id);
                    await RunAsync(id, stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
                {
                    // The job store failed (Redis down): this job's record may be stale, but the worker, and with it
                    // the host (a faulted BackgroundService stops it), must live on for the next one.
                    lock (gate) owned.Remove(id);
                    LogStoreFailed(logger, id, ex);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Host shutdown: the job that was running has been recorded by RunAsync.
        }
    }

    private async Task DequeuedAsync(string id)
    {
        List<string> moved;
        lock (gate)
        {
            waiting.Remove(id);
            for (var i = 0; i < waiting.Count; i++) owned[waiting[i]] = owned[waiting[i]] with { QueuePosition = i + 1 };
            moved = [.. waiting];
        }

        foreach (var other in moved)
        {
            await WriteAsync(other, null);
        }
    }

    /// <summary>
    /// Stores what this runner knows of a job now (not a snapshot taken earlier), one write at a time, so a later write
    /// never loses to an earlier one; a job already finished (and written) is skipped, and a queued one a client has
    /// canceled is left as the client's replica wrote it.
    /// </summary>
    private async Task WriteAsync(string id, byte[]? png, CancellationToken ct = default)
    {
        await writes.WaitAsync(ct);
        try
        {
            PatchJobState? state;
            lock (gate) state = owned.GetValueOrDefault(id);
            if (state is null || (state.Status == PatchJobStatus.Queued && await store.IsCancelRequestedAsync(id, ct)))
            {
                return;
            }

            await store.SaveAsync(state, png, Retention, ct);
        }
        finally
        {
            writes.Release();
        }
    }

    private async Task RunAsync(string id, CancellationToken stoppingToken)
    {
        if (await store.IsCancelRequestedAsync(id, CancellationToken.None))
        {
            await FinishAsync(id, s => s with { Status = PatchJobStatus.Canceled }, null);
            metrics.ObserveAttack("universal_patch", "canceled", TimeSpan.Zero, 0);
            return;
        }

        var state = Update(id, s => s with { Status = PatchJobStatus.Running, QueuePosition = null, Started = clock.GetUtcNow() });
        await WriteAsync(id, null, CancellationToken.None);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var progress = new LatestProgress();
        using var flushStop = new CancellationTokenSource();
        var flusher = FlushAsync(id, progress, cancel, flushStop.Token);
        var started = clock.GetTimestamp();
        var s = state.Settings;
        // One span for the whole job (a root span: the job outlives the request that queued it), like any attack.
        using var activity = CoreActivities.Attack("universal_patch", s.BatchSize!.Value)?.SetTag("strapvit.patch_job.id", id);
        try
        {
            var model = gradients.Require();
            var settings = new UniversalPatchSettings(s.PatchSize!.Value, s.TargetClass!.Value)
            {
                Steps = s.Steps!.Value,
                BatchSize = s.BatchSize!.Value,
                StepSize = s.StepSize!.Value,
                MaxRotationDegrees = s.MaxRotation!.Value,
                MinScale = s.MinScale!.Value,
                MaxScale = s.MaxScale!.Value,
            };
            var (trainSet, heldOutSet) = LoadData();
            var trainer = new UniversalPatchTrainer(settings);
            var images = trainSet.Without(settings.TargetClass);
            var result = trainer.Train(model, images.Pixels, images.Count, s.Seed!.Value, progress, cancel.Token);
            var evaluation = trainer.Evaluate(model, result.Patch, heldOutSet.Pixels, heldOutSet.Count, heldOutSet.Labels, s.Seed.Value + 1, cancel.Token);
            await StopAsync(flushStop, flusher);
            await FinishAsync(id, j => j with
            {
                Status = PatchJobStatus.Succeeded,
                Step = result.Steps,
                SuccessRate = result.TrainSuccessRate,
                EtaSeconds = 0,
                Outcome = new PatchJobOutcome(evaluation.SuccessRate, evaluation.Evaluated, result.TrainSuccessRate),
            }, Png(result.Patch, result.Channels, result.Size));
            activity?.SetTag(CoreActivities.AttackIterations, result.Steps).SetTag(CoreActivities.AttackSuccesses, evaluation.Successes);
            var elapsed = clock.GetElapsedTime(started);
            metrics.ObserveAttack("universal_patch", evaluation.SuccessRate >= 0.5 ? "success" : "failure", elapsed, settings.Steps);
            LogFinished(logger, id, evaluation.SuccessRate, evaluation.Evaluated, elapsed.TotalSeconds);
        }
        catch (OperationCanceledException)
        {
            await StopAsync(flushStop, flusher);
            var shutdown = stoppingToken.IsCancellationRequested;
            await FinishAsync(id, j => j with
            {
                Status = PatchJobStatus.Canceled,
                Step = progress.Value?.Step ?? j.Step,
                Error = shutdown ? $"The service shut down while the job ran (at step {progress.Value?.Step ?? 0})." : null,
            }, progress.Value is { } p ? Png(p.Patch, state.Channels, s.PatchSize!.Value) : null);
            metrics.ObserveAttack("universal_patch", "canceled", TimeSpan.Zero, 0);
            LogCanceled(logger, id, shutdown);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A background job has no request to fail: record the error on the job, where GET shows it.
            await StopAsync(flushStop, flusher);
            await FinishAsync(id, j => j with { Status = PatchJobStatus.Failed, Error = ex.Message }, null);
            activity?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, ex.Message);
            metrics.ObserveAttack("universal_patch", "error", TimeSpan.Zero, 0);
            LogFailed(logger, id, ex);
        }
    }

    /// <summary>Writes the latest progress and snapshot, and turns a stored cancel request into a canceled token.</summary>
    private async Task FlushAsync(string id, LatestProgress progress, CancellationTokenSource cancel, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(FlushInterval, clock);
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                try
                {
                    if (await store.IsCancelRequestedAsync(id, stop))
                    {
                        await cancel.CancelAsync();
                    }

                    if (progress.Take() is { } p)
                    {
                        var state = Update(id, s => s with { Step = p.Step, SuccessRate = p.SuccessRate, EtaSeconds = p.Remaining is { } r ? Math.Round(r.TotalSeconds, 1) : null });
                        await WriteAsync(id, Png(p.Patch, state.Channels, state.Settings.PatchSize!.Value), stop);
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
                {
                    // Training goes on; the next tick writes the newer progress.
                    LogStoreFailed(logger, id, ex);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private static async Task StopAsync(CancellationTokenSource stop, Task flusher)
    {
        await stop.CancelAsync();
        await flusher;
    }

    private async Task FinishAsync(string id, Func<PatchJobState, PatchJobState> change, byte[]? png)
    {
        // Recorded even while the host stops: the job's last state is what other replicas will report.
        await writes.WaitAsync(CancellationToken.None);
        try
        {
            var state = Update(id, s => change(s) with { Finished = clock.GetUtcNow(), QueuePosition = null });
            lock (gate) owned.Remove(id);
            await store.SaveAsync(state, png, Retention, CancellationToken.None);
        }
        finally
        {
            writes.Release();
        }
    }

    private PatchJobState Update(string id, Func<PatchJobState, PatchJobState> change)
    {
        lock (gate)
        {
            return owned[id] = change(owned[id]);
        }
    }

    /// <summary>Drops expired jobs, and renews the Redis expiry of the live jobs this replica owns.</summary>
    private async Task SweepAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(storeOptions.Value.SweepIntervalSeconds), clock);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await store.SweepAsync(Limits.MaxJobs, stoppingToken);
                    List<string> live;
                    lock (gate) live = [.. owned.Keys];
                    foreach (var id in live) await WriteAsync(id, null, stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
                {
                    // A store outage must not stop the runner; the next tick tries again.
                    LogSweepFailed(logger, ex);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>The training and held-out sets, loaded once; a 503 problem when the configured files cannot be used.</summary>
    private (EvaluationSet Train, EvaluationSet HeldOut) LoadData()
    {
        var model = gradients.Require();
        lock (gate)
        {
            try
            {
                train ??= Load(Limits.TrainImages, Limits.TrainLabels, model, int.MaxValue);
                heldOut ??= Load(Limits.HoldOutImages, Limits.HoldOutLabels, model, Limits.MaxHoldOut);
            }
            catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException)
            {
                throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "No training images",
                    $"The universal-patch images configured under Attacks:Universal cannot be used: {ex.Message}")
                {
                    RetryAfterSeconds = 60,
                };
            }

            return (train, heldOut);
        }
    }

    private static EvaluationSet Load(string images, string labels, IDifferentiableClassifier model, int max) =>
        EvaluationSet.FromIdx(IdxDataset.Load(Resolve(images), Resolve(labels)), max, model.Channels, model.Height, model.Width);

    private static string Resolve(string path) => Path.IsPathRooted(path) ? path : Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, path));

    private static byte[] Png(float[] patch, int channels, int size) => PngEncoding.Encode(new ImageTensor(patch, channels, size, size));

    /// <summary>The trainer's latest report, taken by the flusher (Progress&lt;T&gt; would post each one to the thread pool).</summary>
    private sealed class LatestProgress : IProgress<UniversalPatchProgress>
    {
        private UniversalPatchProgress? latest;
        private UniversalPatchProgress? unread;

        public UniversalPatchProgress? Value => Volatile.Read(ref latest);

        public void Report(UniversalPatchProgress value)
        {
            Volatile.Write(ref latest, value);
            Volatile.Write(ref unread, value);
        }

        public UniversalPatchProgress? Take() => Interlocked.Exchange(ref unread, null);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Universal patch job {JobId} queued: target {TargetClass}, position {Position}")]
    private static partial void LogQueued(ILogger logger, string jobId, int targetClass, int position);

    [LoggerMessage(Level = LogLevel.Information, Message = "Universal patch job {JobId} finished: held-out success {SuccessRate:P1} on {Images} images in {ElapsedS:F1} s")]
    private static partial void LogFinished(ILogger logger, string jobId, double successRate, int images, double elapsedS);

    [LoggerMessage(Level = LogLevel.Information, Message = "Universal patch job {JobId} canceled (service shutting down: {Shutdown})")]
    private static partial void LogCanceled(ILogger logger, string jobId, bool shutdown);

    [LoggerMessage(Level = LogLevel.Error, Message = "Universal patch job {JobId} failed")]
    private static partial void LogFailed(ILogger logger, string jobId, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The job store failed for universal patch job {JobId}")]
    private static partial void LogStoreFailed(ILogger logger, string jobId, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sweeping universal patch jobs failed")]
    private static partial void LogSweepFailed(ILogger logger, Exception exception);
}
