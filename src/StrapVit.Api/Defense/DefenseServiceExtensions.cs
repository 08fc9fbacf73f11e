namespace StrapVit.Api.Defense;

/// <summary>Composition of the defense's HTTP side: the default mode and the per-request selection.</summary>
public static class DefenseServiceExtensions
{
    public static IServiceCollection AddStrapVitDefense(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<DefenseEndpointOptions>().Bind(configuration.GetSection(Core.Defense.DefenseOptions.SectionName));
        services.AddSingleton<DefenseSelector>();
        return services;
    }
}
