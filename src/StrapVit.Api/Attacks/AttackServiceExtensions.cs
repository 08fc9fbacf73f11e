using Microsoft.Extensions.Options;

namespace StrapVit.Api.Attacks;

/// <summary>Composition of the attack, saliency and universal-patch features.</summary>
public static class AttackServiceExtensions
{
    public static IServiceCollection AddStrapVitAttacks(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<AttackOptions>().Bind(configuration.GetSection(AttackOptions.SectionName))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<AttackOptions>, AttackOptionsValidator>();
        services.AddSingleton<AttackSlots>();
        services.AddSingleton<AttackServices>();
        services.AddSingleton<PatchJobStore>();
        return services;
    }
}

/// <summary>Start-up check of <see cref="AttackOptions"/>, reporting the first bad value by name.</summary>
internal sealed class AttackOptionsValidator : IValidateOptions<AttackOptions>
{
    public ValidateOptionsResult Validate(string? name, AttackOptions options) =>
        options.Validate() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
}
