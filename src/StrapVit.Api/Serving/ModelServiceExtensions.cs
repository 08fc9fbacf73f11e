using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Runtime;

namespace StrapVit.Api.Serving;

/// <summary>Composition of the served model (classifier, defense, certifier, gradients), image decoding and their options.</summary>
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
        services.AddOptions<InferenceLimitOptions>().Bind(configuration.GetSection(InferenceLimitOptions.SectionName))
            .Validate(o => o.MaxConcurrentInferences >= 1 && o.InferenceQueueLength >= 0 && o.MaxTopK >= 1,
                "Limits must be positive (Limits:MaxConcurrentInferences and Limits:MaxTopK at least 1, Limits:InferenceQueueLength at least 0).")
            .ValidateOnStart();

        services.AddOptions<DefenseOptions>().Bind(configuration.GetSection(DefenseOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<DefenseOptions>, DefenseOptionsValidator>();
        services.AddOptions<CertifyOptions>().Bind(configuration.GetSection(CertifyOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<CertifyOptions>, CertifyOptionsValidator>();

        services.AddSingleton(sp => sp.GetRequiredService<IOptions<InferenceOptions>>().Value);
        services.AddSingleton(sp => new ImageDecoder(sp.GetRequiredService<IOptions<ImageLimits>>().Value));
        services.AddSingleton<ModelRuntimeFactory>();
        services.TryAddSingleton<ModelLoadGate>();
        services.AddSingleton<ModelRuntime>();
        services.AddHostedService(sp => sp.GetRequiredService<ModelRuntime>());
        return services;
    }
}
