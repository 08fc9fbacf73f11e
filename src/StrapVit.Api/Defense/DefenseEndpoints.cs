using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using StrapVit.Api.Endpoints;
using StrapVit.Api.Errors;
using StrapVit.Api.Hosting;
using StrapVit.Api.Observability;
using StrapVit.Api.Uploads;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Defense;

/// <summary>Answer of <c>POST /v1/defense/inspect</c>.</summary>
/// <param name="Predictions">Top-K classes with the defense in the requested mode.</param>
/// <param name="Report">What the defense flagged and did.</param>
/// <param name="Rows">Patch-grid rows.</param>
/// <param name="Cols">Patch-grid columns.</param>
/// <param name="Scores">Jensen-Shannon distance of every patch, row-major.</param>
/// <param name="Thresholds">Each patch's threshold (scaled clean quantile), row-major.</param>
/// <param name="HeatmapPng">Base64 PNG: score / threshold over the image (full red at the threshold, yellow at twice it).</param>
public sealed record InspectResponse(
    IReadOnlyList<Prediction> Predictions,
    DefenseReport Report,
    int Rows,
    int Cols,
    IReadOnlyList<double> Scores,
    IReadOnlyList<double> Thresholds,
    string HeatmapPng);

/// <summary><c>POST /v1/defense/inspect</c>: the defense's token scores over an image, as a heatmap and numbers.</summary>
public static class DefenseEndpoints
{
    public static IEndpointRouteBuilder MapDefenseEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/defense/inspect", Inspect)
            .AddEndpointFilter<PatchDefenseFilter>()
            .WithName("InspectDefense")
            .WithTags("Defense")
            .WithSummary("Show which patches the defense finds anomalous")
            .WithDescription("Scores every patch token against the clean reference (Jensen-Shannon distance) and returns the heatmap "
                + "(Accept: image/png) or JSON with the scores, thresholds, report and predictions. defense=detect (default here) or mitigate.")
            .WithMetadata(new ImageUploadMetadata())
            .DisableAntiforgery()
            .RequireRateLimiting(ClassifyEndpoints.InferencePolicy)
            .Produces<InspectResponse>(contentType: "application/json")
            .Produces(StatusCodes.Status200OK, contentType: "image/png")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        return app;
    }

    /// <param name="request">The HTTP request carrying the image.</param>
    /// <param name="defense">detect (default) or mitigate.</param>
    /// <param name="seed">Seed of the randomized transforms in mitigate mode.</param>
    /// <param name="runtime">The loaded model.</param>
    /// <param name="decoder">Image decoding.</param>
    /// <param name="limits">Image limits.</param>
    /// <param name="metrics">Metrics.</param>
    /// <param name="ct">Request cancellation.</param>
    internal static async Task<Results<Ok<InspectResponse>, FileContentHttpResult>> Inspect(
        HttpRequest request,
        string? defense,
        string? seed,
        ModelRuntime runtime,
        ImageDecoder decoder,
        IOptions<ImageLimits> limits,
        ServiceMetrics metrics,
        CancellationToken ct)
    {
        var selection = DefenseSelection.From(request.HttpContext);
        if (selection.Mode == DefenseMode.Certify)
        {
            throw ProblemException.BadParameter("defense", "certify has no token scores to inspect; use detect or mitigate here, and POST /v1/classify?defense=certify for a certificate.");
        }

        if (runtime.Defense is null)
        {
            throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "Defense unavailable", runtime.DefenseUnavailable ?? "No defense.");
        }

        // Inspecting means at least detecting, whatever the service's default mode is.
        if (!selection.Explicit || selection.Mode == DefenseMode.Off)
        {
            selection = selection with { Mode = DefenseMode.Detect };
        }

        var upload = await ImageUpload.ReadAsync(request, limits.Value, ct);
        var input = runtime.Classifier.Manifest.Input;
        var image = decoder.Decode(upload.Bytes, input.Channels, input.Height, input.Width);
        var result = DefendedClassification.Run(runtime, metrics, image, Math.Min(5, runtime.Classifier.ClassCount), selection, ct);
        var defended = result.Defense!;

        var rows = input.Height / runtime.Classifier.Manifest.PatchSize;
        var cols = input.Width / runtime.Classifier.Manifest.PatchSize;
        var ratios = defended.Scores.Select((s, i) => s / Math.Max(defended.Thresholds[i], 1e-12)).ToArray();
        var png = PngEncoding.Encode(Heatmap.Render(image, ratios, rows, cols, max: 2.0));
        if (request.Headers.Accept.Any(a => a?.Contains("image/png", StringComparison.OrdinalIgnoreCase) == true))
        {
            return TypedResults.File(png, "image/png");
        }

        return TypedResults.Ok(new InspectResponse(
            result.Predictions, defended.Report, rows, cols,
            defended.Scores.Select(s => Math.Round(s, 6)).ToArray(),
            defended.Thresholds.Select(s => Math.Round(s, 6)).ToArray(),
            Convert.ToBase64String(png)));
    }
}
