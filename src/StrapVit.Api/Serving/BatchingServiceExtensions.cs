using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace StrapVit.Api.Serving;

/// <summary>Composition of dynamic batching (<c>Batching</c> options, the <see cref="ClassificationBatcher"/>).</summary>
public static class BatchingServiceExtensions
{
    public static IServiceCollection AddStrapVitBatching(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<BatchingOptions>().Bind(configuration.GetSection(BatchingOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<BatchingOptions>, BatchingOptionsValidator>();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ClassificationBatcher>();
        return services;
    }
}

/// <summary>Start-up validation of <see cref="BatchingOptions"/> with the option's own message.</summary>
public sealed class BatchingOptionsValidator : IValidateOptions<BatchingOptions>
{
    public ValidateOptionsResult Validate(string? name, BatchingOptions options) =>
        options.Validate() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
}
