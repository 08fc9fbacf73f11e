using Microsoft.Extensions.Options;

namespace StrapVit.Api.Attacks;

/// <summary>Composition of the gradient features' shared parts: attack limits, the concurrency slots and the model with gradients.</summary>
public static class AttackServiceExtensions
{
    public static IServiceCollection AddStrapVitAttacks(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<AttackOptions>().Bind(configuration.GetSection(AttackOptions.SectionName))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<AttackOptions>, AttackOptionsValidator>();
        services.AddSingleton<AttackSlots>();
        services.AddSingleton<GradientModel>();
        return services;
    }
}

/// <summary>Start-up check of <see cref="AttackOptions"/>, reporting the first bad value by name.</summary>
internal sealed class AttackOptionsValidator : IValidateOptions<AttackOptions>
{
    public ValidateOptionsResult Validate(string? name, AttackOptions options) =>
        options.Validate() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
}
