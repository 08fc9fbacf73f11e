using System.ComponentModel;
using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using StrapVit.Api.Defense;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Api.Serving;
using StrapVit.Api.Uploads;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Classify;

/// <summary>The query parameters of <c>POST /v1/classify</c> besides the defense's.</summary>
/// <param name="TopK">How many classes to return, most probable first (default 5, at most the class count and <c>Limits:MaxTopK</c>).</param>
/// <param name="Patch">defense=certify only: side in pixels of the patches the answer is certified against (default <c>Certify:PatchSize</c>).</param>
public sealed record ClassifyQuery([property: DefaultValue(ClassifyQuery.DefaultTopK)] int? TopK = null, int? Patch = null)
{
    public const int DefaultTopK = 5;
}

/// <summary>Answer of <c>POST /v1/classify</c>.</summary>
/// <param name="Predictions">The top-K classes, most probable first.</param>
/// <param name="Defense">
/// The defense's report (<see cref="DefenseReport"/> for detect and mitigate; <see cref="CertifyReport"/> for
/// certify, with <c>certified</c>, <c>patchSize</c>, the mask set and the masked forwards), or null when off.
/// </param>
/// <param name="TimingsMs">Wall time of each stage in milliseconds (decode, defense, inference, total).</param>
public sealed record ClassifyResponse(
    IReadOnlyList<Prediction> Predictions,
    object? Defense,
    IReadOnlyDictionary<string, double> TimingsMs);

/// <summary><c>POST /v1/classify</c>: classify one uploaded image.</summary>
public static partial class ClassifyEndpoints
{
    public static IEndpointRouteBuilder MapClassifyEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/classify", Classify)
            .WithName("Classify")
            .CountedAs("classify")
            .WithTags("Classification")
            .WithSummary("Classify an image")
            .WithDescription("Upload an image as multipart/form-data (file field 'image') or as the raw body with an image/* content type. "
                + "It is EXIF-oriented, converted to the model's channels, resized to its input size and scaled to [0, 1].")
            .DisableAntiforgery()
            .RequireInferenceSlot()
            .ProducesUploadProblems();
        return app;
    }

    /// <param name="image">The image, as a multipart file field or the raw body.</param>
    /// <param name="query">How many classes, and the certified patch size.</param>
    /// <param name="defenseQuery">The defense mode and seed.</param>
    /// <param name="selector">Resolves the defense mode.</param>
    /// <param name="runtime">The loaded model.</param>
    /// <param name="batcher">Runs the classification, batched with concurrent ones when <c>Batching</c> is on.</param>
    /// <param name="decoder">Image decoding with limits.</param>
    /// <param name="limits">Request limits.</param>
    /// <param name="metrics">Service metrics.</param>
    /// <param name="loggerFactory">Logging.</param>
    /// <param name="ct">Aborted when the client disconnects.</param>
    internal static async Task<Ok<ClassifyResponse>> Classify(
        UploadedImage image,
        [AsParameters] ClassifyQuery query,
        [AsParameters] DefenseQuery defenseQuery,
        DefenseSelector selector,
        ModelRuntime runtime,
        ClassificationBatcher batcher,
        ImageDecoder decoder,
        IOptions<InferenceLimitOptions> limits,
        ServiceMetrics metrics,
        ILoggerFactory loggerFactory,
        CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        var classifier = runtime.Classifier;
        var topK = Parameter.InRange(query.TopK, 1, Math.Min(limits.Value.MaxTopK, classifier.ClassCount)) ?? Math.Min(ClassifyQuery.DefaultTopK, classifier.ClassCount);
        var selection = selector.Select(defenseQuery, query.Patch);
        var decodeWatch = Stopwatch.StartNew();
        var input = classifier.Manifest.Input;
        var tensor = decoder.Decode(image.Bytes, input.Channels, input.Height, input.Width);
        var decodeMs = decodeWatch.Elapsed.TotalMilliseconds;

        var result = DefendedClassification.Single(runtime, await batcher.ClassifyAsync(tensor.Data, 1, selection, ct), topK);

        var totalMs = total.Elapsed.TotalMilliseconds;
        var top = result.Predictions[0];
        LogClassified(loggerFactory.CreateLogger("StrapVit.Api.Classify"), image.Bytes.Length, Convert.ToHexStringLower(SHA256.HashData(image.Bytes))[..16], top.Label, top.Probability,
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
