using Microsoft.OpenApi;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace StrapVit.Api.Classify;

/// <summary>Composition of classification's OpenAPI description.</summary>
public static class ClassifyServiceExtensions
{
    public static IServiceCollection AddStrapVitClassify(this IServiceCollection services)
    {
        services.ConfigureSwaggerGen(o => o.SchemaFilter<DefenseReportSchemaFilter>());
        return services;
    }
}

/// <summary>
/// <c>defense</c> in a classification is one of two reports, declared as <c>object</c> because the mode decides which:
/// the document says which two (or null when the defense is off).
/// </summary>
internal sealed class DefenseReportSchemaFilter : ISchemaFilter
{
    public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
    {
        if (context.Type != typeof(ClassifyResponse) || schema.Properties?.TryGetValue("defense", out var defense) != true)
        {
            return;
        }

        schema.Properties["defense"] = new OpenApiSchema
        {
            Description = defense!.Description,
            OneOf =
            [
                context.SchemaGenerator.GenerateSchema(typeof(DefenseReport), context.SchemaRepository),
                context.SchemaGenerator.GenerateSchema(typeof(CertifyReport), context.SchemaRepository),
            ],
        };
    }
}
