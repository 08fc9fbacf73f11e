using System.Security.Cryptography;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using StrapVit.Api.Attacks;
using StrapVit.Api.Auth;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Api.Responses;
using StrapVit.Core.Attacks.Universal;

namespace StrapVit.Api.Patches;

/// <summary>Body of <c>POST /v1/patches</c>. Every field is optional except <c>targetClass</c>.</summary>
/// <param name="TargetClass">The class the patch should force.</param>
/// <param name="PatchSize">Side in pixels at scale 1 (default: about 5% of the image area).</param>
/// <param name="Steps">Training steps (default 500).</param>
/// <param name="BatchSize">Images per step (default 32).</param>
/// <param name="StepSize">Adam learning rate (default 0.05).</param>
/// <param name="MaxRotation">Rotation range in degrees, ± (default 22.5).</param>
/// <param name="MinScale">Smallest scale of the side (default 0.8).</param>
/// <param name="MaxScale">Largest scale (default 1).</param>
/// <param name="Seed">Seed (default: drawn, and reported).</param>
public sealed record PatchJobRequest(
    int? TargetClass,
    int? PatchSize = null,
    int? Steps = null,
    int? BatchSize = null,
    float? StepSize = null,
    float? MaxRotation = null,
    float? MinScale = null,
    float? MaxScale = null,
    int? Seed = null);

/// <summary>A job's state: its place in the queue, progress while running, the held-out result once done.</summary>
public sealed record PatchJobResponse(
    string Id,
    string Status,
    int Step,
    int TotalSteps,
    double SuccessRate,
    double ElapsedSeconds,
    double? EtaSeconds,
    PatchJobRequest Settings,
    PatchJobResult? Result,
    string? Error,
    string ImageUrl,
    int? QueuePosition);

/// <summary>The finished patch: success on held-out images (not of the target class) under random pose, and on the last training batches.</summary>
public sealed record PatchJobResult(double HeldOutSuccessRate, int HeldOutImages, double TrainSuccessRate, string ImagePng);

/// <summary>
/// <c>/v1/patches</c>: universal adversarial patches trained as background jobs by <see cref="PatchJobRunner"/>. Job
/// state lives in <see cref="IPatchJobStore"/> (Redis with <c>Jobs:Redis</c>), so any replica answers for any job.
/// </summary>
public static class PatchJobEndpoints
{
    public const string StartName = "StartUniversalPatch";

    public static IEndpointRouteBuilder MapPatchJobEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/patches").WithTags("Attacks").CountedAs("patch_job").RequireApiKey();
        group.MapPost("/", StartJob).WithName(StartName).WithSummary("Train a universal patch (Brown et al.) as a background job")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status429TooManyRequests).ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        group.MapGet("/{id}", GetJob).WithName("GetUniversalPatch").WithSummary("Queue position, progress (step, success rate, time left) and result of a job")
            .ProducesProblem(StatusCodes.Status404NotFound);
        group.MapGet("/{id}/image", GetImage).WithName("GetUniversalPatchImage").WithSummary("The patch as a PNG (the latest snapshot while training)")
            .Produces<byte[]>(StatusCodes.Status200OK, PngAnswer.MediaType).ProducesProblem(StatusCodes.Status404NotFound);
        group.MapDelete("/{id}", DeleteJob).WithName("CancelUniversalPatch").WithSummary("Cancel a queued or running job, or forget a finished one")
            .ProducesProblem(StatusCodes.Status404NotFound);
        return app;
    }

    internal static async Task<Accepted<PatchJobResponse>> StartJob(PatchJobRequest? request, PatchJobRunner runner, GradientModel gradients, IOptions<AttackOptions> options, CancellationToken ct)
    {
        var model = gradients.Require();
        var limits = options.Value.Universal;
        if (request?.TargetClass is not { } target)
        {
            throw ProblemException.BadParameter("targetClass", "targetClass is required: the class the patch should force.");
        }

        var defaultSide = Math.Clamp((int)Math.Round(Math.Sqrt(0.05 * model.Height * model.Width)), 1, Math.Min(model.Height, model.Width));
        var defaults = new UniversalPatchSettings(request.PatchSize ?? defaultSide, target);
        var settings = defaults with
        {
            Steps = request.Steps ?? defaults.Steps,
            BatchSize = request.BatchSize ?? defaults.BatchSize,
            StepSize = request.StepSize ?? defaults.StepSize,
            MaxRotationDegrees = request.MaxRotation ?? defaults.MaxRotationDegrees,
            MinScale = request.MinScale ?? defaults.MinScale,
            MaxScale = request.MaxScale ?? defaults.MaxScale,
        };
        if (settings.Problem(model.Height, model.Width, model.Classes) is { } problem)
        {
            throw ProblemException.BadParameter(problem.Parameter, $"{problem.Parameter} {problem.Reason}");
        }

        if (settings.Steps > limits.MaxSteps) throw ProblemException.BadParameter("steps", $"{settings.Steps} is above the limit of {limits.MaxSteps}.");
        if (settings.BatchSize > limits.MaxBatchSize) throw ProblemException.BadParameter("batchSize", $"{settings.BatchSize} is above the limit of {limits.MaxBatchSize}.");
        if (settings.PatchSize > options.Value.MaxPatchSize) throw ProblemException.BadParameter("patchSize", $"{settings.PatchSize} is above the limit of {options.Value.MaxPatchSize}.");
        if (request.Seed is < 0) throw ProblemException.BadParameter("seed", "seed must be at least 0.");

        var resolved = new PatchJobRequest(settings.TargetClass, settings.PatchSize, settings.Steps, settings.BatchSize, settings.StepSize,
            settings.MaxRotationDegrees, settings.MinScale, settings.MaxScale, request.Seed ?? RandomNumberGenerator.GetInt32(int.MaxValue));
        var job = await runner.EnqueueAsync(resolved, model.Channels, ct);
        return TypedResults.Accepted($"/v1/patches/{job.Id}", Describe(job, null));
    }

    internal static async Task<Ok<PatchJobResponse>> GetJob(string id, IPatchJobStore store, CancellationToken ct)
    {
        var job = await FindAsync(store, id, ct);
        return TypedResults.Ok(Describe(job, job.Status == PatchJobStatus.Succeeded ? await store.GetImageAsync(id, ct) : null));
    }

    internal static async Task<FileContentHttpResult> GetImage(string id, IPatchJobStore store, CancellationToken ct)
    {
        await FindAsync(store, id, ct);
        var png = await store.GetImageAsync(id, ct)
            ?? throw new ProblemException(StatusCodes.Status404NotFound, "No patch yet", $"Job {id} has not reported its first step yet.");
        return TypedResults.File(png, "image/png");
    }

    internal static async Task<Results<Accepted<PatchJobResponse>, NoContent>> DeleteJob(
        string id, IPatchJobStore store, IOptions<AttackOptions> options, TimeProvider clock, CancellationToken ct)
    {
        var job = await FindAsync(store, id, ct);
        if (job.IsFinished)
        {
            await store.DeleteAsync(id, ct);
            return TypedResults.NoContent();
        }

        // The owner (possibly another replica) stops a running job at its next flush; a queued one never starts.
        await store.RequestCancelAsync(id, ct);
        if (job.Status == PatchJobStatus.Queued)
        {
            job = job with { Status = PatchJobStatus.Canceled, Finished = clock.GetUtcNow(), QueuePosition = null };
            await store.SaveAsync(job, null, TimeSpan.FromMinutes(options.Value.Universal.RetentionMinutes), ct);
        }

        return TypedResults.Accepted($"/v1/patches/{id}", Describe(job, null));
    }

    private static async Task<PatchJobState> FindAsync(IPatchJobStore store, string id, CancellationToken ct) =>
        await store.GetAsync(id, ct) ?? throw new ProblemException(StatusCodes.Status404NotFound, "No such patch job", $"There is no universal-patch job '{id}' (finished jobs expire).");

    private static PatchJobResponse Describe(PatchJobState job, byte[]? png)
    {
        var elapsed = (job.Finished ?? DateTimeOffset.UtcNow) - job.Created;
        return new PatchJobResponse(
            job.Id,
            job.Status.ToString().ToLowerInvariant(),
            job.Step,
            job.Settings.Steps ?? 0,
            job.SuccessRate,
            Math.Round(elapsed.TotalSeconds, 3),
            job.Status switch { PatchJobStatus.Running => job.EtaSeconds, PatchJobStatus.Queued => null, _ => 0 },
            job.Settings,
            job.Outcome is { } o && png is not null
                ? new PatchJobResult(o.HeldOutSuccessRate, o.HeldOutImages, o.TrainSuccessRate, Convert.ToBase64String(png))
                : null,
            job.Error,
            $"/v1/patches/{job.Id}/image",
            job.QueuePosition);
    }
}
