using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using StrapVit.Api.Contracts;
using StrapVit.Api.Defense;
using StrapVit.Api.Hosting;
using StrapVit.Api.Observability;
using StrapVit.Api.Uploads;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Endpoints;

/// <summary><c>POST /v1/classify</c>: classify one uploaded image.</summary>
public static partial class ClassifyEndpoints
{
    public const string InferencePolicy = "inference";

    public static IEndpointRouteBuilder MapClassifyEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/classify", Classify)
            .AddEndpointFilter<PatchDefenseFilter>()
            .WithName("Classify")
            .WithTags("Classification")
            .WithSummary("Classify an image")
            .WithDescription("Upload an image as multipart/form-data (file field 'image') or as the raw body with an image/* content type. "
                + "It is EXIF-oriented, converted to the model's channels, resized to its input size and scaled to [0, 1].")
            .WithMetadata(new ImageUploadMetadata())
            .DisableAntiforgery()
            .RequireRateLimiting(InferencePolicy)
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        return app;
    }

    /// <param name="request">The HTTP request carrying the image.</param>
    /// <param name="topK">How many classes to return, most probable first (default 5).</param>
    /// <param name="defense">off | detect | mitigate (default mitigate): the STRAP-ViT patch defense in front of the classifier; certify: PatchCleanser's certified double masking.</param>
    /// <param name="seed">Seed of the defense's randomized transforms (default: a fresh one, reported back).</param>
    /// <param name="patch">defense=certify only: side in pixels of the patches the answer is certified against (default Certify:PatchSize).</param>
    /// <param name="runtime">The loaded model.</param>
    /// <param name="decoder">Image decoding with limits.</param>
    /// <param name="limits">Image limits.</param>
    /// <param name="requestLimits">Request limits.</param>
    /// <param name="metrics">Service metrics.</param>
    /// <param name="loggerFactory">Logging.</param>
    /// <param name="ct">Aborted when the client disconnects.</param>
    internal static async Task<Ok<ClassifyResponse>> Classify(
        HttpRequest request,
        string? topK,
        string? defense,
        string? seed,
        string? patch,
        ModelRuntime runtime,
        ImageDecoder decoder,
        IOptions<ImageLimits> limits,
        IOptions<RequestLimitOptions> requestLimits,
        ServiceMetrics metrics,
        ILoggerFactory loggerFactory,
        CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        var classifier = runtime.Classifier;
        var k = QueryParsing.ParseInt(topK, "topK", Math.Min(5, classifier.ClassCount), 1, Math.Min(requestLimits.Value.MaxTopK, classifier.ClassCount));
        var selection = DefenseSelection.From(request.HttpContext);
        var upload = await ImageUpload.ReadAsync(request, limits.Value, ct);
        var decodeWatch = Stopwatch.StartNew();
        var input = classifier.Manifest.Input;
        var image = decoder.Decode(upload.Bytes, input.Channels, input.Height, input.Width);
        var decodeMs = decodeWatch.Elapsed.TotalMilliseconds;

        var result = DefendedClassification.Run(runtime, metrics, image, k, selection, ct);

        var totalMs = total.Elapsed.TotalMilliseconds;
        var top = result.Predictions[0];
        LogClassified(loggerFactory.CreateLogger("StrapVit.Api.Classify"), upload.Bytes.Length,
            Convert.ToHexStringLower(SHA256.HashData(upload.Bytes))[..16], top.Label, top.Probability,
            result.Defense?.Report.FlaggedTokens.Count ?? 0, totalMs);
        var timings = new Dictionary<string, double>
        {
            ["decode"] = Math.Round(decodeMs, 3),
            ["inference"] = Math.Round(result.InferenceMs, 3),
            ["total"] = Math.Round(totalMs, 3),
        };
        if (result.Report is not null)
        {
            // With the token defense, embedding, scoring, transforms and encoder are one stage: "inference" includes "defense".
            timings["defense"] = Math.Round(result.DefenseMs, 3);
        }

        return TypedResults.Ok(new ClassifyResponse(result.Predictions, result.Report, timings));
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Classified {ImageBytes}-byte image {ImageSha256} as {Label} (p={Probability:F3}, {TokensFlagged} tokens flagged) in {ElapsedMs:F2} ms")]
    private static partial void LogClassified(ILogger logger, int imageBytes, string imageSha256, string label, float probability, int tokensFlagged, double elapsedMs);
}
