using System.Security.Cryptography;
using Microsoft.AspNetCore.Http.HttpResults;
using StrapVit.Api.Auth;
using StrapVit.Api.Errors;
using StrapVit.Api.Uploads;
using StrapVit.Core.Attacks;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Attacks;

/// <summary><c>POST /v1/attacks/{fgsm|pgd|deepfool|patch}</c>: adversarial examples for one uploaded image (README, 'Using the API').</summary>
public static partial class AttackEndpoints
{
    private static readonly string[] CommonFields = ["label", "targetClass", "seed"];

    public static IEndpointRouteBuilder MapAttackEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/attacks").WithTags("Attacks").DisableAntiforgery().RequireApiKey();
        Describe(group.MapPost("/fgsm", Fgsm).WithName("AttackFgsm").WithSummary("FGSM (Goodfellow et al., L∞, one step)"),
            ("epsilon", "number", "L∞ budget in [0, 1] pixel space (default 8/255)."));
        Describe(group.MapPost("/pgd", Pgd).WithName("AttackPgd").WithSummary("PGD (Madry et al., L∞ or L2)"),
            ("epsilon", "number", "Budget in the chosen norm (default 8/255 for linf, 0.5 for l2)."),
            ("stepSize", "number", "Step size (default 2/255 for linf, epsilon/5 for l2)."),
            ("steps", "integer", "Gradient steps (default 10)."),
            ("norm", "string", "linf (default) or l2."),
            ("randomStart", "boolean", "Start from a random point of the ball (default true)."),
            ("restarts", "integer", "Random restarts, keeping the best (default 1)."),
            ("earlyStop", "boolean", "Stop once the goal is met (default false)."));
        Describe(group.MapPost("/deepfool", DeepFool).WithName("AttackDeepFool").WithSummary("DeepFool (Moosavi-Dezfooli et al., minimal L2)"),
            ("overshoot", "number", "Factor (1 + overshoot) on the accumulated perturbation (default 0.02)."),
            ("maxIterations", "integer", "Most linearisation steps (default 50)."),
            ("candidates", "integer", "Classes considered, from the top logits (default 10, capped at the class count)."));
        Describe(group.MapPost("/patch", Patch).WithName("AttackPatch").WithSummary("Adversarial patch on one image (LaVAN-style)"),
            ("patchSize", "integer", "Side of the square patch in pixels (default: about 2% of the image area)."),
            ("x", "integer", "Left column of the patch (default: random from seed)."),
            ("y", "integer", "Top row of the patch (default: random from seed)."),
            ("steps", "integer", "Most signed-gradient steps (default 200)."),
            ("stepSize", "number", "Step on patch pixels (default 4/255)."));
        return app;
    }

    private static void Describe(RouteHandlerBuilder endpoint, params (string Name, string Type, string Description)[] fields)
    {
        endpoint
            .WithDescription("multipart/form-data with the file field 'image' and the attack's form fields. Add ?includePixels=true for the "
                + "float image, or send Accept: image/png to get the adversarial PNG as the body. Untargeted unless targetClass is given; "
                + "the label defaults to the model's own prediction.")
            .WithMetadata(new ImageUploadMetadata([
                ("label", "integer", "True class (default: the model's prediction of the clean image)."),
                ("targetClass", "integer", "Class to reach; makes the attack targeted."),
                ("seed", "integer", "Seed of every random choice (default: drawn, and reported)."),
                .. fields]))
            .Produces(StatusCodes.Status200OK, contentType: "image/png")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
    }

    /// <summary>Fast Gradient Sign Method.</summary>
    internal static Task<Results<Ok<AttackResponse>, FileContentHttpResult>> Fgsm(HttpRequest request, string? includePixels, AttackServices services, CancellationToken ct) =>
        RunAsync("fgsm", ["epsilon"], request, includePixels, services, (form, model) =>
            new Fgsm(form.Float("epsilon", Core.Attacks.Fgsm.DefaultEpsilon, 0, services.Options.MaxLinfEpsilon)), ct);

    /// <summary>Projected Gradient Descent.</summary>
    internal static Task<Results<Ok<AttackResponse>, FileContentHttpResult>> Pgd(HttpRequest request, string? includePixels, AttackServices services, CancellationToken ct) =>
        RunAsync("pgd", ["epsilon", "stepSize", "steps", "norm", "randomStart", "restarts", "earlyStop"], request, includePixels, services, (form, model) =>
        {
            var o = services.Options;
            var normText = form.String("norm") ?? "linf";
            if (!PerturbationNorm.TryParse(normText, out var norm))
            {
                throw ProblemException.BadParameter("norm", $"'{normText}' is not linf or l2.");
            }

            var l2 = norm == PerturbationNorm.L2;
            var eps = form.Float("epsilon", l2 ? 0.5f : Core.Attacks.Pgd.DefaultEpsilon, 0, l2 ? o.MaxL2Epsilon : o.MaxLinfEpsilon);
            var step = form.Float("stepSize", l2 ? eps / 5 : Core.Attacks.Pgd.DefaultStepSize, 0, l2 ? o.MaxL2Epsilon : 1f);
            return new Pgd(norm, eps, step, form.Int("steps", Core.Attacks.Pgd.DefaultSteps, 1, o.MaxSteps), form.Bool("randomStart", true),
                form.Int("restarts", 1, 1, o.MaxRestarts), form.Bool("earlyStop", false));
        }, ct);

    /// <summary>DeepFool (L2).</summary>
    internal static Task<Results<Ok<AttackResponse>, FileContentHttpResult>> DeepFool(HttpRequest request, string? includePixels, AttackServices services, CancellationToken ct) =>
        RunAsync("deepfool", ["overshoot", "maxIterations", "candidates"], request, includePixels, services, (form, model) =>
            new DeepFool(
                form.Float("overshoot", Core.Attacks.DeepFool.DefaultOvershoot, 0, services.Options.MaxOvershoot),
                form.Int("maxIterations", Core.Attacks.DeepFool.DefaultMaxIterations, 1, services.Options.MaxIterations),
                form.Int("candidates", Math.Min(Core.Attacks.DeepFool.DefaultCandidates, model.Classes), 2, model.Classes)), ct);

    /// <summary>Per-image adversarial patch.</summary>
    internal static Task<Results<Ok<AttackResponse>, FileContentHttpResult>> Patch(HttpRequest request, string? includePixels, AttackServices services, CancellationToken ct) =>
        RunAsync("patch", ["patchSize", "x", "y", "steps", "stepSize"], request, includePixels, services, (form, model) =>
        {
            var o = services.Options;
            var maxSide = Math.Min(o.MaxPatchSize, Math.Min(model.Height, model.Width));
            var side = form.Int("patchSize", Math.Clamp((int)Math.Round(Math.Sqrt(0.02 * model.Height * model.Width)), 1, maxSide), 1, maxSide);
            return new PatchAttack(side,
                form.NullableInt("x", 0, model.Width - side),
                form.NullableInt("y", 0, model.Height - side),
                form.Int("steps", PatchAttack.DefaultSteps, 1, o.MaxPatchSteps),
                form.Float("stepSize", PatchAttack.DefaultStepSize, 0, 1, minExclusive: true));
        }, ct);

    private static async Task<Results<Ok<AttackResponse>, FileContentHttpResult>> RunAsync(
        string name,
        string[] fields,
        HttpRequest request,
        string? includePixels,
        AttackServices services,
        Func<AttackForm, IDifferentiableClassifier, Attack> configure,
        CancellationToken ct)
    {
        var model = services.Model();
        var withPixels = includePixels?.Trim().ToLowerInvariant() switch
        {
            null or "" or "false" or "0" => false,
            "true" or "1" => true,
            _ => throw ProblemException.BadParameter("includePixels", $"'{includePixels}' is not true or false."),
        };
        var upload = await ImageUpload.ReadAsync(request, services.ImageLimits, ct);
        Attack attack;
        AttackGoal goal;
        int seed;
        try
        {
            var form = new AttackForm(upload.Form, [.. CommonFields, .. fields]);
            var label = form.NullableInt("label", 0, model.Classes - 1);
            var target = form.NullableInt("targetClass", 0, model.Classes - 1);
            goal = target is { } t ? AttackGoal.Targeted([t]) : AttackGoal.Untargeted(label is { } l ? [l] : null);
            seed = form.NullableInt("seed", 0, int.MaxValue) ?? RandomNumberGenerator.GetInt32(int.MaxValue);
            attack = configure(form, model);
        }
        catch (ProblemException)
        {
            services.Metrics.ObserveAttack(name, "rejected", TimeSpan.Zero, 0);
            throw;
        }

        using var slot = services.Slots.Enter(name);
        var image = services.Decoder.Decode(upload.Bytes, model.Channels, model.Height, model.Width);
        AttackResult result;
        try
        {
            result = attack.Run(model, image.Data, 1, goal, seed, ct);
        }
        catch (AttackParameterException ex)
        {
            services.Metrics.ObserveAttack(name, "rejected", TimeSpan.Zero, 0);
            throw ProblemException.BadParameter(ex.Parameter, ex.Message);
        }
        catch (OperationCanceledException)
        {
            services.Metrics.ObserveAttack(name, "canceled", TimeSpan.Zero, 0);
            throw;
        }
        catch
        {
            services.Metrics.ObserveAttack(name, "error", TimeSpan.Zero, 0);
            throw;
        }

        var sample = result.Samples[0];
        services.Metrics.ObserveAttack(name, sample.Success ? "success" : "failure", result.Elapsed, sample.Iterations);
        var png = PngEncoding.Encode(image with { Data = result.Adversarial });
        LogAttack(services.Logger, name, upload.Bytes.Length, sample.CleanClass, sample.AdversarialClass, sample.Success, sample.SuccessQuantized,
            sample.Iterations, result.Elapsed.TotalMilliseconds);

        if (WantsPng(request))
        {
            return TypedResults.File(png, "image/png");
        }

        Prediction Predict(ReadOnlySpan<float> logits) => services.Runtime.Classifier.Rank(logits, 1)[0];

        return TypedResults.Ok(new AttackResponse(
            name,
            sample.Success,
            sample.SuccessQuantized,
            Predict(result.CleanLogitsOf(0)),
            Predict(result.AdversarialLogitsOf(0)),
            Predict(result.QuantizedLogitsOf(0)),
            sample.Linf,
            sample.L2,
            sample.Iterations,
            Math.Round(result.Elapsed.TotalMilliseconds, 3),
            result.Seed,
            Convert.ToBase64String(png),
            withPixels ? result.Adversarial : null,
            sample.Patch is { } place ? new PatchLocation(place.X, place.Y, place.Size) : null));
    }

    /// <summary>Whether the client asked for the PNG rather than JSON (image/png ranked above application/json).</summary>
    internal static bool WantsPng(HttpRequest request)
    {
        var accept = request.GetTypedHeaders().Accept;
        if (accept is null || accept.Count == 0) return false;
        double Quality(string type) => accept.Where(a => a.MediaType.Equals(type, StringComparison.OrdinalIgnoreCase)).Select(a => a.Quality ?? 1).DefaultIfEmpty(-1).Max();
        var png = Math.Max(Quality("image/png"), Quality("image/*"));
        var json = Math.Max(Quality("application/json"), Quality("application/*"));
        return png > 0 && png > json;
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Attack {Attack} on a {ImageBytes}-byte image: class {CleanClass} -> {AdversarialClass} (success {Success}, quantized {SuccessQuantized}) in {Iterations} iterations, {ElapsedMs:F1} ms")]
    private static partial void LogAttack(ILogger logger, string attack, int imageBytes, int cleanClass, int adversarialClass, bool success, bool successQuantized,
        int iterations, double elapsedMs);
}
