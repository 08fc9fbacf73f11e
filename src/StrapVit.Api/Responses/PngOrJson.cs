using System.Reflection;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace StrapVit.Api.Responses;

/// <summary>
/// The 200 answer of an endpoint that describes an image: JSON by default, or the PNG itself when the client ranks
/// <c>image/png</c> above <c>application/json</c> in Accept. OpenAPI lists both media types.
/// </summary>
public sealed class PngOrJson<T> : IResult, IEndpointMetadataProvider
{
    private readonly IResult result;

    /// <param name="request">The request whose Accept header decides.</param>
    /// <param name="png">The PNG to send when it is preferred.</param>
    /// <param name="json">Builds the JSON body otherwise (it usually carries the PNG as base64 too).</param>
    public PngOrJson(HttpRequest request, byte[] png, Func<T> json) =>
        result = PngAnswer.Preferred(request) ? TypedResults.File(png, PngAnswer.MediaType) : TypedResults.Ok(json());

    public Task ExecuteAsync(HttpContext httpContext) => result.ExecuteAsync(httpContext);

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1000:Do not declare static members on generic types", Justification = "IEndpointMetadataProvider is static by design.")]
    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status200OK, typeof(T), ["application/json", PngAnswer.MediaType]));
}

/// <summary>The one Accept-header check of the API, and the OpenAPI schema of a PNG answer.</summary>
public static class PngAnswer
{
    public const string MediaType = "image/png";

    /// <summary>Whether the client asked for the PNG rather than JSON (image/png or image/* ranked above application/json).</summary>
    public static bool Preferred(HttpRequest request)
    {
        var accept = request.GetTypedHeaders().Accept;
        if (accept is null || accept.Count == 0)
        {
            return false;
        }

        double Quality(string type) => accept.Where(a => a.MediaType.Equals(type, StringComparison.OrdinalIgnoreCase)).Select(a => a.Quality ?? 1).DefaultIfEmpty(-1).Max();
        var png = Math.Max(Quality(MediaType), Quality("image/*"));
        var json = Math.Max(Quality("application/json"), Quality("application/*"));
        return png > 0 && png > json;
    }
}

/// <summary>Every <c>image/png</c> answer in the OpenAPI document is binary, whatever type the endpoint declared for its JSON twin.</summary>
internal sealed class PngResponseOperationFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (operation.Responses is null)
        {
            return;
        }

        foreach (var response in operation.Responses.Values)
        {
            if (response.Content?.TryGetValue(PngAnswer.MediaType, out var media) == true && media is OpenApiMediaType png)
            {
                png.Schema = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" };
            }
        }
    }
}
