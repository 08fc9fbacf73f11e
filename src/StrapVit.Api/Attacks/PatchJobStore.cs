using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Core.Attacks;
using StrapVit.Core.Attacks.Universal;
using StrapVit.Core.Datasets;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Attacks;

/// <summary>Lifecycle of a universal-patch job.</summary>
public enum PatchJobStatus
{
    Running,
    Succeeded,
    Failed,
    Canceled,
}

/// <summary>One universal-patch training job: its settings, live progress and, once done, its patch and held-out success.</summary>
public sealed class PatchJob(string id, UniversalPatchSettings settings, int seed, int channels) : IDisposable
{
    private readonly CancellationTokenSource cancellation = new();

    public string Id { get; } = id;

    public UniversalPatchSettings Settings { get; } = settings;

    public int Seed { get; } = seed;

    public int Channels { get; } = channels;

    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;

    public PatchJobStatus Status { get; private set; } = PatchJobStatus.Running;

    public DateTimeOffset? Finished { get; private set; }

    /// <summary>The latest progress report (patch snapshot included), or null before the first step.</summary>
    public UniversalPatchProgress? Progress { get; private set; }

    public UniversalPatchResult? Result { get; private set; }

    public UniversalPatchEvaluation? HeldOut { get; private set; }

    public string? Error { get; private set; }

    internal CancellationToken Token => cancellation.Token;

    internal void Report(UniversalPatchProgress progress) => Progress = progress;

    internal void Complete(UniversalPatchResult result, UniversalPatchEvaluation heldOut)
    {
        (Result, HeldOut) = (result, heldOut);
        Finish(PatchJobStatus.Succeeded);
    }

    internal void Fail(PatchJobStatus status, string? error)
    {
        Error = error;
        Finish(status);
    }

    /// <summary>Asks a running job to stop; it turns <see cref="PatchJobStatus.Canceled"/> when its current run returns.</summary>
    public void Cancel()
    {
        if (Status == PatchJobStatus.Running) cancellation.Cancel();
    }

    /// <summary>The current patch <c>[C, S, S]</c>: the result, else the latest snapshot, else null.</summary>
    public float[]? Patch => Result?.Patch ?? Progress?.Patch;

    private void Finish(PatchJobStatus status)
    {
        Finished = DateTimeOffset.UtcNow;
        Status = status;
    }

    /// <summary>Releases the cancellation source once the store has forgotten a finished job.</summary>
    public void Dispose() => cancellation.Dispose();
}

/// <summary>
/// Runs universal-patch jobs in the background (not on a request's thread or token), at most
/// <see cref="UniversalPatchJobOptions.MaxRunningJobs"/> at once, and keeps finished ones for the retention time.
/// </summary>
public sealed partial class PatchJobStore(
    IOptions<AttackOptions> options,
    IHostEnvironment environment,
    ServiceMetrics metrics,
    ILogger<PatchJobStore> logger) : IDisposable
{
    private readonly ConcurrentDictionary<string, PatchJob> jobs = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    private EvaluationSet? train;
    private EvaluationSet? heldOut;

    private UniversalPatchJobOptions Limits => options.Value.Universal;

    public PatchJob? Get(string id)
    {
        Expire();
        return jobs.GetValueOrDefault(id);
    }

    /// <summary>Starts a job, or throws the problem (429 at the running-job limit, 503 without data or gradients).</summary>
    public PatchJob Start(UniversalPatchSettings settings, int seed, IDifferentiableClassifier model)
    {
        Expire();
        var (trainSet, heldOutSet) = LoadData(model);
        PatchJob job;
        lock (gate)
        {
            if (jobs.Values.Count(j => j.Status == PatchJobStatus.Running) >= Limits.MaxRunningJobs)
            {
                metrics.ObserveAttack("universal_patch", "rejected", TimeSpan.Zero, 0);
                throw new ProblemException(StatusCodes.Status429TooManyRequests, "Too many patch jobs",
                    $"{Limits.MaxRunningJobs} universal-patch job(s) are already running; retry later or cancel one.")
                {
                    RetryAfterSeconds = 30,
                };
            }

            job = new PatchJob(Guid.NewGuid().ToString("N"), settings, seed, model.Channels);
            jobs[job.Id] = job;
        }

        _ = Task.Run(() => Run(job, model, trainSet, heldOutSet));
        LogStarted(logger, job.Id, settings.TargetClass, settings.PatchSize, settings.Steps);
        return job;
    }

    private void Run(PatchJob job, IDifferentiableClassifier model, EvaluationSet trainSet, EvaluationSet heldOutSet)
    {
        var started = TimeProvider.System.GetTimestamp();
        try
        {
            var trainer = new UniversalPatchTrainer(job.Settings);
            var images = trainSet.Without(job.Settings.TargetClass);
            var result = trainer.Train(model, images.Pixels, images.Count, job.Seed, new JobProgress(job), job.Token);
            var evaluation = trainer.Evaluate(model, result.Patch, heldOutSet.Pixels, heldOutSet.Count, heldOutSet.Labels, job.Seed + 1, job.Token);
            job.Complete(result, evaluation);
            metrics.ObserveAttack("universal_patch", evaluation.SuccessRate >= 0.5 ? "success" : "failure",
                TimeProvider.System.GetElapsedTime(started), job.Settings.Steps);
            LogFinished(logger, job.Id, evaluation.SuccessRate, evaluation.Evaluated, TimeProvider.System.GetElapsedTime(started).TotalSeconds);
        }
        catch (OperationCanceledException)
        {
            job.Fail(PatchJobStatus.Canceled, null);
            metrics.ObserveAttack("universal_patch", "canceled", TimeSpan.Zero, 0);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A background job has no request to fail: record the error on the job, where GET shows it.
            job.Fail(PatchJobStatus.Failed, ex.Message);
            metrics.ObserveAttack("universal_patch", "error", TimeSpan.Zero, 0);
            LogFailed(logger, job.Id, ex);
        }
    }

    /// <summary>Cancels a running job (true), or forgets a finished one (false); null when there is no such job.</summary>
    public bool? CancelOrRemove(string id)
    {
        if (!jobs.TryGetValue(id, out var job)) return null;
        if (job.Status == PatchJobStatus.Running)
        {
            job.Cancel();
            return true;
        }

        if (jobs.TryRemove(id, out _)) job.Dispose();
        return false;
    }

    public void Dispose()
    {
        foreach (var job in jobs.Values) job.Cancel();
    }

    private void Expire()
    {
        var cutoff = DateTimeOffset.UtcNow - TimeSpan.FromMinutes(Limits.RetentionMinutes);
        var finished = jobs.Values.Where(j => j.Finished is not null).OrderBy(j => j.Finished).ToList();
        var drop = finished.Where(j => j.Finished < cutoff).ToList();
        drop.AddRange(finished.Where(j => j.Finished >= cutoff).Take(Math.Max(0, jobs.Count - drop.Count - Limits.MaxJobs)));
        foreach (var job in drop)
        {
            if (jobs.TryRemove(job.Id, out _)) job.Dispose();
        }
    }

    private (EvaluationSet Train, EvaluationSet HeldOut) LoadData(IDifferentiableClassifier model)
    {
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

    private EvaluationSet Load(string images, string labels, IDifferentiableClassifier model, int max) =>
        EvaluationSet.FromIdx(IdxDataset.Load(Resolve(images), Resolve(labels)), max, model.Channels, model.Height, model.Width);

    private string Resolve(string path) => Path.IsPathRooted(path) ? path : Path.GetFullPath(Path.Combine(environment.ContentRootPath, path));

    /// <summary>Stores each report on the job synchronously (Progress&lt;T&gt; would post to the thread pool, out of order).</summary>
    private sealed class JobProgress(PatchJob job) : IProgress<UniversalPatchProgress>
    {
        public void Report(UniversalPatchProgress value) => job.Report(value);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Universal patch job {JobId} started: target {TargetClass}, {PatchSize} px, {Steps} steps")]
    private static partial void LogStarted(ILogger logger, string jobId, int targetClass, int patchSize, int steps);

    [LoggerMessage(Level = LogLevel.Information, Message = "Universal patch job {JobId} finished: held-out success {SuccessRate:P1} on {Images} images in {ElapsedS:F1} s")]
    private static partial void LogFinished(ILogger logger, string jobId, double successRate, int images, double elapsedS);

    [LoggerMessage(Level = LogLevel.Error, Message = "Universal patch job {JobId} failed")]
    private static partial void LogFailed(ILogger logger, string jobId, Exception exception);
}

/// <summary>Patch tensors as PNGs.</summary>
internal static class PatchImages
{
    public static byte[] Png(float[] patch, int channels, int size) => PngEncoding.Encode(new ImageTensor(patch, channels, size, size));
}
