using Microsoft.AspNetCore.Mvc;
using StrapVit.Api.Attacks;
using StrapVit.Api.Auth;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Api.Responses;
using StrapVit.Api.Uploads;
using StrapVit.Core.Attacks;
using StrapVit.Core.Explain;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Explain;

/// <summary>The form fields of <c>POST /v1/explain/saliency</c>, beside the file field <c>image</c>.</summary>
/// <param name="Class">Class to explain (default: the predicted class).</param>
public sealed record SaliencyParameters([FromForm] int? Class = null);

/// <summary>Answer of <c>POST /v1/explain/saliency</c> as JSON.</summary>
/// <param name="Class" example="8">The explained class (given, or the predicted one).</param>
/// <param name="Label" example="Bag">Its label.</param>
/// <param name="Probability" example="0.996">Its probability on the image.</param>
/// <param name="Width" example="28">Map columns (the model's input width).</param>
/// <param name="Height" example="28">Map rows.</param>
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
            .CountedAs("explain")
            .WithTags("Explain")
            .WithSummary("Gradient saliency map of a class")
            .WithDescription("multipart/form-data with the file field 'image' and an optional field 'class' (default: the predicted class). "
                + "With Accept: image/png the body is the heatmap over the image; otherwise JSON with the map as floats and as a PNG.")
            .DisableAntiforgery()
            .RequireApiKey()
            .ProducesUploadProblems();
        return app;
    }

    /// <param name="image">The image to explain.</param>
    /// <param name="form">The class to explain.</param>
    /// <param name="request">The request (its Accept header picks JSON or PNG).</param>
    /// <param name="gradients">The model with gradients.</param>
    /// <param name="slots">The concurrency limit shared with the attacks.</param>
    /// <param name="decoder">Image decoding.</param>
    /// <param name="ct">Aborted when the client disconnects.</param>
    internal static PngOrJson<SaliencyResponse> Saliency(
        UploadedImage image,
        [AsParameters] SaliencyParameters form,
        HttpRequest request,
        GradientModel gradients,
        AttackSlots slots,
        ImageDecoder decoder,
        CancellationToken ct)
    {
        var model = gradients.Require();
        var classIndex = Parameter.InRange(form.Class, 0, model.Classes - 1);
        using var slot = slots.Enter(null);
        var tensor = decoder.Decode(image.Bytes, model.Channels, model.Height, model.Width);
        SaliencyMap map;
        try
        {
            map = GradientSaliency.Compute(model, tensor, classIndex, ct);
        }
        catch (AttackParameterException ex)
        {
            throw ProblemException.BadParameter(ex.Parameter, ex.Message);
        }

        var png = PngEncoding.Encode(GradientSaliency.Render(tensor, map));
        return new PngOrJson<SaliencyResponse>(request, png, () => new SaliencyResponse(map.ClassIndex, gradients.Label(map.ClassIndex), map.Probability,
            map.Width, map.Height, map.Map, map.Max, Convert.ToBase64String(png)));
    }
}
