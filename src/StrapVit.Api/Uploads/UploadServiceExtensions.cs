using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Uploads;

/// <summary>Configuration section <c>Limits</c>, the request-body half.</summary>
public sealed class BodyLimitOptions
{
    public const string SectionName = "Limits";

    /// <summary>
    /// Largest request body of every endpoint that takes no image, the JSON of <c>POST /v1/patches</c> included
    /// (Kestrel's own default would be 30 MB). Image endpoints take <c>Images:MaxBytes</c> instead, plus
    /// <see cref="MaxFormOverheadBytes"/> for a multipart form.
    /// </summary>
    public long MaxRequestBodyBytes { get; set; } = 64 * 1024;

    /// <summary>What a multipart form may carry beyond its image: boundaries, part headers and the endpoint's form fields.</summary>
    public long MaxFormOverheadBytes { get; set; } = 64 * 1024;
}

/// <summary>Composition of the upload path: body limits, form limits, and the OpenAPI description of uploads.</summary>
public static class UploadServiceExtensions
{
    public static IServiceCollection AddStrapVitUploads(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<BodyLimitOptions>().Bind(configuration.GetSection(BodyLimitOptions.SectionName))
            .Validate(o => o.MaxRequestBodyBytes >= 1 && o.MaxFormOverheadBytes >= 1024,
                "Limits must be positive (Limits:MaxFormOverheadBytes at least 1024).")
            .ValidateOnStart();
        services.AddOptions<FormOptions>().Configure<IOptions<ImageLimits>, IOptions<BodyLimitOptions>>(
            (form, limits, bodyLimits) => ImageUpload.ConfigureFormOptions(form, limits.Value, bodyLimits.Value));
        // Every body not an image upload (the patch-job JSON) is held to this; image endpoints raise their own.
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<BodyLimitOptions>>(
            (kestrel, bodyLimits) => kestrel.Limits.MaxRequestBodySize = bodyLimits.Value.MaxRequestBodyBytes);
        services.ConfigureSwaggerGen(o => o.OperationFilter<ImageUploadOperationFilter>());
        return services;
    }
}
