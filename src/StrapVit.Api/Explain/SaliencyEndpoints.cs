using Microsoft.AspNetCore.Http.HttpResults;
using StrapVit.Api.Attacks;
using StrapVit.Api.Auth;
using StrapVit.Api.Errors;
using StrapVit.Api.Uploads;
using StrapVit.Core.Attacks;
using StrapVit.Core.Explain;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Explain;

/// <summary>Answer of <c>POST /v1/explain/saliency</c> as JSON.</summary>
/// <param name="Class">The explained class (given, or the predicted one).</param>
/// <param name="Label">Its label.</param>
/// <param name="Probability">Its probability on the image.</param>
/// <param name="Width">Map columns (the model's input width).</param>
/// <param name="Height">Map rows.</param>
/// <param name="Map">|∂logit/∂pixel|, maximum over channels, row-major [H, W].</param>
/// <param name="Max">The largest value of the map.</param>
/// <param name="HeatmapPng">The map over the image as a base64 PNG.</param>
public sealed record SaliencyResponse(int Class, string Label, float Probability, int Width, int Height, float[] Map, float Max, string HeatmapPng);

/// <summary><c>POST /v1/explain/saliency</c>: which pixels the class logit is most sensitive to.</summary>
public static class SaliencyEndpoints
{
    public static IEndpointRouteBuilder MapSaliencyEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/explain/saliency", Saliency)
            .WithName("Saliency")
            .WithTags("Explain")
            .WithSummary("Gradient saliency map of a class")
            .WithDescription("multipart/form-data with the file field 'image' and an optional field 'class' (default: the predicted class). "
                + "With Accept: image/png the body is the heatmap over the image; otherwise JSON with the map as floats and as a PNG.")
            .WithMetadata(new ImageUploadMetadata(("class", "integer", "Class to explain (default: the predicted class).")))
            .DisableAntiforgery()
            .RequireApiKey()
            .Produces(StatusCodes.Status200OK, contentType: "image/png")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        return app;
    }

    internal static async Task<Results<Ok<SaliencyResponse>, FileContentHttpResult>> Saliency(HttpRequest request, AttackServices services, CancellationToken ct)
    {
        var model = services.Model();
        var upload = await ImageUpload.ReadAsync(request, services.ImageLimits, ct);
        var form = new AttackForm(upload.Form, ["class"]);
        var classIndex = form.NullableInt("class", 0, model.Classes - 1);
        using var slot = services.Slots.Enter(null);
        var image = services.Decoder.Decode(upload.Bytes, model.Channels, model.Height, model.Width);
        SaliencyMap map;
        try
        {
            map = GradientSaliency.Compute(model, image, classIndex, ct);
        }
        catch (AttackParameterException ex)
        {
            throw ProblemException.BadParameter(ex.Parameter, ex.Message);
        }

        var png = PngEncoding.Encode(GradientSaliency.Render(image, map));
        if (AttackEndpoints.WantsPng(request))
        {
            return TypedResults.File(png, "image/png");
        }

        return TypedResults.Ok(new SaliencyResponse(map.ClassIndex, services.Runtime.Classifier.Manifest.Labels[map.ClassIndex], map.Probability,
            map.Width, map.Height, map.Map, map.Max, Convert.ToBase64String(png)));
    }
}
