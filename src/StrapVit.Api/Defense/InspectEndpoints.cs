using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Api.Responses;
using StrapVit.Api.Serving;
using StrapVit.Api.Uploads;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Defense;

/// <summary>Answer of <c>POST /v1/defense/inspect</c>.</summary>
/// <param name="Predictions">Top-5 classes with the defense in the requested mode.</param>
/// <param name="Report">What the defense flagged and did.</param>
/// <param name="Rows" example="7">Patch-grid rows.</param>
/// <param name="Cols" example="7">Patch-grid columns.</param>
/// <param name="Scores">Jensen-Shannon distance (or k-NN distance) of every patch, row-major.</param>
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
public static class InspectEndpoints
{
    public static IEndpointRouteBuilder MapInspectEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/defense/inspect", Inspect)
            .WithName("InspectDefense")
            .CountedAs("defense")
            .WithTags("Defense")
            .WithSummary("Show which patches the defense finds anomalous")
            .WithDescription("Scores every patch token against the clean reference and returns JSON with the scores, thresholds, report and "
                + "predictions, or the heatmap itself with Accept: image/png. defense=detect (the default here; off means detect too) or mitigate.")
            .DisableAntiforgery()
            .RequireInferenceSlot()
            .ProducesUploadProblems();
        return app;
    }

    /// <param name="image">The image, as a multipart file field or the raw body.</param>
    /// <param name="query">The defense mode and seed.</param>
    /// <param name="request">The request (its Accept header picks JSON or PNG).</param>
    /// <param name="selector">Resolves the defense mode.</param>
    /// <param name="runtime">The loaded model.</param>
    /// <param name="decoder">Image decoding.</param>
    /// <param name="metrics">Metrics.</param>
    /// <param name="ct">Request cancellation.</param>
    internal static PngOrJson<InspectResponse> Inspect(
        UploadedImage image,
        [AsParameters] DefenseQuery query,
        HttpRequest request,
        DefenseSelector selector,
        ModelRuntime runtime,
        ImageDecoder decoder,
        ServiceMetrics metrics,
        CancellationToken ct)
    {
        var selection = selector.Select(query);
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

        var manifest = runtime.Classifier.Manifest;
        var tensor = decoder.Decode(image.Bytes, manifest.Input.Channels, manifest.Input.Height, manifest.Input.Width);
        var result = DefendedClassification.Run(runtime, metrics, tensor, Math.Min(5, runtime.Classifier.ClassCount), selection, ct);
        var defended = result.Defense!;

        var rows = manifest.Input.Height / manifest.PatchSize;
        var cols = manifest.Input.Width / manifest.PatchSize;
        var ratios = defended.Scores.Select((s, i) => s / Math.Max(defended.Thresholds[i], 1e-12)).ToArray();
        var png = PngEncoding.Encode(Heatmap.Render(tensor, ratios, rows, cols, max: 2.0));
        return new PngOrJson<InspectResponse>(request, png, () => new InspectResponse(
            result.Predictions, defended.Report, rows, cols,
            defended.Scores.Select(s => Math.Round(s, 6)).ToArray(),
            defended.Thresholds.Select(s => Math.Round(s, 6)).ToArray(),
            Convert.ToBase64String(png)));
    }
}
