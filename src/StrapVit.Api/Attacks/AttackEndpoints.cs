using Microsoft.Extensions.Options;
using StrapVit.Api.Auth;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Api.Responses;
using StrapVit.Api.Uploads;
using StrapVit.Core.Attacks;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Attacks;

/// <summary><c>POST /v1/attacks/{fgsm|pgd|deepfool|patch}</c>: adversarial examples for one uploaded image (docs/API.md).</summary>
public static partial class AttackEndpoints
{
    public static IEndpointRouteBuilder MapAttackEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/attacks").WithTags("Attacks").CountedAs("attack").DisableAntiforgery().RequireApiKey()
            .WithDescription("multipart/form-data with the file field 'image' and the attack's form fields. Add ?includePixels=true for the "
                + "float image, or send Accept: image/png to get the adversarial PNG as the body. Untargeted unless targetClass is given; "
                + "the label defaults to the model's own prediction. Budgets are in [0, 1] pixel space.");
        group.MapPost("/fgsm", Run<FgsmParameters>).WithName("AttackFgsm").WithSummary("FGSM (Goodfellow et al., L∞, one step)");
        group.MapPost("/pgd", Run<PgdParameters>).WithName("AttackPgd").WithSummary("PGD (Madry et al., L∞ or L2)");
        group.MapPost("/deepfool", Run<DeepFoolParameters>).WithName("AttackDeepFool").WithSummary("DeepFool (Moosavi-Dezfooli et al., minimal L2)");
        group.MapPost("/patch", Run<PatchParameters>).WithName("AttackPatch").WithSummary("Adversarial patch on one image (LaVAN-style)");
        group.ProducesUploadProblems();
        return app;
    }

    /// <summary>Runs one attack on the uploaded image.</summary>
    /// <param name="image">The clean image.</param>
    /// <param name="target">Whom the attack aims at, and its seed.</param>
    /// <param name="form">The attack's own form fields.</param>
    /// <param name="query">Whether to add the float image.</param>
    /// <param name="request">The request (its Accept header picks JSON or PNG).</param>
    /// <param name="gradients">The model with gradients.</param>
    /// <param name="slots">The attack concurrency limit.</param>
    /// <param name="decoder">Image decoding.</param>
    /// <param name="options">Attack limits.</param>
    /// <param name="metrics">Metrics.</param>
    /// <param name="logger">Logging.</param>
    /// <param name="ct">Aborted when the client disconnects.</param>
    internal static PngOrJson<AttackResponse> Run<TParameters>(
        UploadedImage image,
        [AsParameters] AttackTarget target,
        [AsParameters] TParameters form,
        [AsParameters] AttackQuery query,
        HttpRequest request,
        GradientModel gradients,
        AttackSlots slots,
        ImageDecoder decoder,
        IOptions<AttackOptions> options,
        ServiceMetrics metrics,
        ILogger<GradientModel> logger,
        CancellationToken ct)
        where TParameters : AttackParameters
    {
        var model = gradients.Require();
        var name = form.Name.ToString();
        Attack attack;
        AttackGoal goal;
        int seed;
        try
        {
            goal = target.Goal(model.Classes);
            seed = target.SeedOrDrawn();
            attack = form.Configure(model, options.Value);
        }
        catch (ProblemException)
        {
            metrics.ObserveAttack(name, "rejected", TimeSpan.Zero, 0);
            throw;
        }

        using var slot = slots.Enter(name);
        var tensor = decoder.Decode(image.Bytes, model.Channels, model.Height, model.Width);
        AttackResult result;
        try
        {
            result = attack.Run(model, tensor.Data, 1, goal, seed, ct);
        }
        catch (AttackParameterException ex)
        {
            metrics.ObserveAttack(name, "rejected", TimeSpan.Zero, 0);
            throw ProblemException.BadParameter(ex.Parameter, ex.Message);
        }
        catch (OperationCanceledException)
        {
            metrics.ObserveAttack(name, "canceled", TimeSpan.Zero, 0);
            throw;
        }
        catch
        {
            metrics.ObserveAttack(name, "error", TimeSpan.Zero, 0);
            throw;
        }

        var sample = result.Samples[0];
        metrics.ObserveAttack(name, sample.Success ? "success" : "failure", result.Elapsed, sample.Iterations);
        var png = PngEncoding.Encode(tensor with { Data = result.Adversarial });
        LogAttack(logger, name, image.Bytes.Length, sample.CleanClass, sample.AdversarialClass, sample.Success, sample.SuccessQuantized,
            sample.Iterations, result.Elapsed.TotalMilliseconds);

        return new PngOrJson<AttackResponse>(request, png, () => new AttackResponse(
            form.Name,
            sample.Success,
            sample.SuccessQuantized,
            gradients.Top(result.CleanLogitsOf(0)),
            gradients.Top(result.AdversarialLogitsOf(0)),
            gradients.Top(result.QuantizedLogitsOf(0)),
            sample.Linf,
            sample.L2,
            sample.Iterations,
            Math.Round(result.Elapsed.TotalMilliseconds, 3),
            result.Seed,
            Convert.ToBase64String(png),
            query.IncludePixels ? result.Adversarial : null,
            sample.Patch is { } place ? new PatchLocation(place.X, place.Y, place.Size) : null));
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Attack {Attack} on a {ImageBytes}-byte image: class {CleanClass} -> {AdversarialClass} (success {Success}, quantized {SuccessQuantized}) in {Iterations} iterations, {ElapsedMs:F1} ms")]
    private static partial void LogAttack(ILogger logger, string attack, int imageBytes, int cleanClass, int adversarialClass, bool success, bool successQuantized,
        int iterations, double elapsedMs);
}
