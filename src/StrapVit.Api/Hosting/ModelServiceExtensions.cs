using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using StrapVit.Api.Uploads;
using StrapVit.Api.Defense;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Runtime;

namespace StrapVit.Api.Hosting;

/// <summary>Composition of the model, decoding and their options.</summary>
public static class ModelServiceExtensions
{
    public static IServiceCollection AddStrapVitModel(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ModelOptions>().Bind(configuration.GetSection(ModelOptions.SectionName))
            .Validate(o => string.IsNullOrWhiteSpace(o.Path) || Directory.Exists(o.Path),
                "Model:Path must name an existing model package directory.")
            .ValidateOnStart();
        services.AddOptions<InferenceOptions>().Bind(configuration.GetSection(InferenceOptions.SectionName))
            .Validate(o => o.MaxBatchSize is >= 1 and <= 4096, "Inference:MaxBatchSize must be in [1, 4096].")
            .Validate(o => o.IntraOpThreads >= 0, "Inference:IntraOpThreads must be >= 0.")
            .ValidateOnStart();
        services.AddOptions<ImageLimits>().Bind(configuration.GetSection(ImageLimits.SectionName))
            .Validate(o => o.MaxBytes > 0 && o.MaxPixels > 0 && o.MaxDimension > 0 && o.MaxFrames >= 1,
                "Images limits must be positive (MaxFrames at least 1).")
            .ValidateOnStart();
        services.AddOptions<RequestLimitOptions>().Bind(configuration.GetSection(RequestLimitOptions.SectionName))
            .Validate(o => o.MaxConcurrentInferences >= 1 && o.InferenceQueueLength >= 0 && o.MaxTopK >= 1
                && o.MaxRequestBodyBytes >= 1 && o.MaxFormOverheadBytes >= 1024,
                "Limits must be positive (Limits:MaxFormOverheadBytes at least 1024).")
            .ValidateOnStart();

        services.AddOptions<DefenseOptions>().Bind(configuration.GetSection(DefenseOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<DefenseOptions>, DefenseOptionsValidator>();
        services.AddOptions<CertifyOptions>().Bind(configuration.GetSection(CertifyOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<CertifyOptions>, CertifyOptionsValidator>();
        services.AddOptions<DefenseEndpointOptions>().Bind(configuration.GetSection(DefenseOptions.SectionName));

        services.AddSingleton(sp => sp.GetRequiredService<IOptions<InferenceOptions>>().Value);
        services.AddSingleton(sp => new ImageDecoder(sp.GetRequiredService<IOptions<ImageLimits>>().Value));
        services.AddSingleton<ModelRuntimeFactory>();
        services.TryAddSingleton<ModelLoadGate>();
        services.AddSingleton<ModelRuntime>();
        services.AddHostedService(sp => sp.GetRequiredService<ModelRuntime>());
        services.AddOptions<FormOptions>().Configure<IOptions<ImageLimits>, IOptions<RequestLimitOptions>>(
            (form, limits, requestLimits) => ImageUpload.ConfigureFormOptions(form, limits.Value, requestLimits.Value));
        // Every body not an image upload (the patch-job JSON) is held to this; image endpoints raise their own.
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<RequestLimitOptions>>(
            (kestrel, requestLimits) => kestrel.Limits.MaxRequestBodySize = requestLimits.Value.MaxRequestBodyBytes);
        return services;
    }
}
