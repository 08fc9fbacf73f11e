using System.Security.Cryptography;
using Microsoft.AspNetCore.Http.HttpResults;
using StrapVit.Api.Auth;
using StrapVit.Api.Errors;
using StrapVit.Core.Attacks.Universal;

namespace StrapVit.Api.Attacks;

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

/// <summary>A job's state: progress while running, the held-out result once done.</summary>
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
    string ImageUrl);

/// <summary>The finished patch: success on held-out images (not of the target class) under random pose, and on the last training batches.</summary>
public sealed record PatchJobResult(double HeldOutSuccessRate, int HeldOutImages, double TrainSuccessRate, string ImagePng);

/// <summary><c>/v1/patches</c>: universal adversarial patches trained as background jobs.</summary>
public static class PatchJobEndpoints
{
    public static IEndpointRouteBuilder MapPatchJobEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/patches").WithTags("Attacks").RequireApiKey();
        group.MapPost("/", StartJob).WithName("StartUniversalPatch").WithSummary("Train a universal patch (Brown et al.) as a background job")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status429TooManyRequests).ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        group.MapGet("/{id}", GetJob).WithName("GetUniversalPatch").WithSummary("Progress (step, success rate, time left) and result of a job")
            .ProducesProblem(StatusCodes.Status404NotFound);
        group.MapGet("/{id}/image", GetImage).WithName("GetUniversalPatchImage").WithSummary("The patch as a PNG (the latest snapshot while training)")
            .Produces(StatusCodes.Status200OK, contentType: "image/png").ProducesProblem(StatusCodes.Status404NotFound);
        group.MapDelete("/{id}", DeleteJob).WithName("CancelUniversalPatch").WithSummary("Cancel a running job, or forget a finished one")
            .ProducesProblem(StatusCodes.Status404NotFound);
        return app;
    }

    internal static Accepted<PatchJobResponse> StartJob(PatchJobRequest? request, PatchJobStore store, AttackServices services)
    {
        var model = services.Model();
        var limits = services.Options.Universal;
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
        if (settings.PatchSize > services.Options.MaxPatchSize) throw ProblemException.BadParameter("patchSize", $"{settings.PatchSize} is above the limit of {services.Options.MaxPatchSize}.");
        if (request.Seed is < 0) throw ProblemException.BadParameter("seed", "seed must be at least 0.");

        var job = store.Start(settings, request.Seed ?? RandomNumberGenerator.GetInt32(int.MaxValue), model);
        return TypedResults.Accepted($"/v1/patches/{job.Id}", Describe(job));
    }

    internal static Ok<PatchJobResponse> GetJob(string id, PatchJobStore store) => TypedResults.Ok(Describe(Find(store, id)));

    internal static FileContentHttpResult GetImage(string id, PatchJobStore store)
    {
        var job = Find(store, id);
        var patch = job.Patch ?? throw new ProblemException(StatusCodes.Status404NotFound, "No patch yet", $"Job {id} has not finished its first step.");
        return TypedResults.File(PatchImages.Png(patch, job.Channels, job.Settings.PatchSize), "image/png");
    }

    internal static Results<Accepted<PatchJobResponse>, NoContent> DeleteJob(string id, PatchJobStore store)
    {
        var job = Find(store, id);
        return store.CancelOrRemove(id) == true ? TypedResults.Accepted($"/v1/patches/{id}", Describe(job)) : TypedResults.NoContent();
    }

    private static PatchJob Find(PatchJobStore store, string id) =>
        store.Get(id) ?? throw new ProblemException(StatusCodes.Status404NotFound, "No such patch job", $"There is no universal-patch job '{id}' (finished jobs expire).");

    private static PatchJobResponse Describe(PatchJob job)
    {
        var s = job.Settings;
        var progress = job.Progress;
        var elapsed = (job.Finished ?? DateTimeOffset.UtcNow) - job.Created;
        return new PatchJobResponse(
            job.Id,
            job.Status.ToString().ToLowerInvariant(),
            progress?.Step ?? 0,
            s.Steps,
            job.Result?.TrainSuccessRate ?? progress?.SuccessRate ?? 0,
            Math.Round(elapsed.TotalSeconds, 3),
            job.Status == PatchJobStatus.Running ? progress?.Remaining?.TotalSeconds is { } eta ? Math.Round(eta, 1) : null : 0,
            new PatchJobRequest(s.TargetClass, s.PatchSize, s.Steps, s.BatchSize, s.StepSize, s.MaxRotationDegrees, s.MinScale, s.MaxScale, job.Seed),
            job.Result is { } r && job.HeldOut is { } h
                ? new PatchJobResult(h.SuccessRate, h.Evaluated, r.TrainSuccessRate, Convert.ToBase64String(PatchImages.Png(r.Patch, r.Channels, r.Size)))
                : null,
            job.Error,
            $"/v1/patches/{job.Id}/image");
    }
}
