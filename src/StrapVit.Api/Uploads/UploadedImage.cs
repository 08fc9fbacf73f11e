using System.Reflection;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Extensions.Options;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Uploads;

/// <summary>
/// The image a request uploads: the file field <c>image</c> of a multipart form, or the raw body with an
/// <c>image/*</c> content type, read by <see cref="ImageUpload"/> within the image limits. A handler takes it as a
/// parameter and ASP.NET binds it (before the form fields, so the limits apply to the whole form). When the handler
/// also binds form fields (<see cref="FormFields"/>), ASP.NET accepts only a form (415 otherwise), and the form must
/// carry only those fields, each once: a typo (<c>eps</c> for <c>epsilon</c>) never runs silently with the default.
/// </summary>
public sealed class UploadedImage : IBindableFromHttpContext<UploadedImage>, IEndpointParameterMetadataProvider
{
    private UploadedImage(byte[] bytes) => Bytes = bytes;

    /// <summary>The encoded image as uploaded.</summary>
    public byte[] Bytes { get; }

    public static async ValueTask<UploadedImage?> BindAsync(HttpContext context, ParameterInfo parameter)
    {
        var services = context.RequestServices;
        var upload = await ImageUpload.ReadAsync(context.Request, services.GetRequiredService<IOptions<ImageLimits>>().Value,
            services.GetRequiredService<IOptions<BodyLimitOptions>>().Value, context.RequestAborted);
        var fields = context.GetEndpoint()?.Metadata.GetMetadata<ImageUploadMetadata>()?.FormFields ?? [];
        if (fields.Count > 0 && upload.Form is { } form)
        {
            // What ASP.NET binds the fields from next.
            context.Features.GetRequiredFeature<IFormFeature>().Form = FormFields.Checked(form, fields);
        }

        return new UploadedImage(upload.Bytes);
    }

    public static void PopulateMetadata(ParameterInfo parameter, EndpointBuilder builder) =>
        builder.Metadata.Add(new ImageUploadMetadata(parameter.Member is MethodBase handler ? FormFields.Of(handler) : []));
}

/// <summary>Marks an endpoint that takes an uploaded image, with the form fields it binds beside it, for OpenAPI.</summary>
public sealed record ImageUploadMetadata(IReadOnlyList<ParameterInfo> FormFields);
