using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

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
        services.AddOptions<JobStoreOptions>().Bind(configuration.GetSection(JobStoreOptions.SectionName))
            .Validate(o => o.SweepIntervalSeconds >= 1, "Jobs:SweepIntervalSeconds must be at least 1.")
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        // Resolved only with Jobs:Redis; the container disposes it after the runner has stopped.
        services.AddSingleton<IConnectionMultiplexer>(sp =>
        {
            var redis = ConfigurationOptions.Parse(sp.GetRequiredService<IOptions<JobStoreOptions>>().Value.Redis!);
            redis.AbortOnConnectFail = false; // start even while Redis is still coming up; job requests answer 503 until it is
            return ConnectionMultiplexer.Connect(redis);
        });
        services.AddSingleton<IPatchJobStore>(sp => string.IsNullOrWhiteSpace(sp.GetRequiredService<IOptions<JobStoreOptions>>().Value.Redis)
            ? ActivatorUtilities.CreateInstance<InMemoryPatchJobStore>(sp)
            : ActivatorUtilities.CreateInstance<RedisPatchJobStore>(sp));
        services.AddSingleton<PatchJobRunner>();
        services.AddHostedService(sp => sp.GetRequiredService<PatchJobRunner>());
        return services;
    }
}

/// <summary>Start-up check of <see cref="AttackOptions"/>, reporting the first bad value by name.</summary>
internal sealed class AttackOptionsValidator : IValidateOptions<AttackOptions>
{
    public ValidateOptionsResult Validate(string? name, AttackOptions options) =>
        options.Validate() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
}
