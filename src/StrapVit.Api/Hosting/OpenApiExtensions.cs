using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.OpenApi;
using StrapVit.Api.Auth;
using StrapVit.Api.Responses;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace StrapVit.Api.Hosting;

/// <summary>
/// The OpenAPI document (<c>/swagger/v1/swagger.json</c>) and Swagger UI (<c>/swagger</c>). The document comes from
/// the endpoints' declarations: typed request records (query and form), typed results, XML comments. Features add
/// what only they know through <c>ConfigureSwaggerGen</c> (the upload body, the health paths).
/// </summary>
public static class OpenApiExtensions
{
    public const string DocumentPath = "/swagger/v1/swagger.json";

    public static IServiceCollection AddStrapVitOpenApi(this IServiceCollection services)
    {
        // Enums travel as their camelCase names (linf, l2), in answers and in the document alike.
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase)));
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(o =>
        {
            o.SwaggerDoc("v1", new OpenApiInfo
            {
                Title = "StrapVitService",
                Version = "v1",
                Description = "A Vision Transformer classifier with the STRAP-ViT adversarial-patch defense, and attacks to red-team it. "
                    + "All pixel values and budgets are in [0, 1] pixel space at the model's input resolution.",
            });
            foreach (var assembly in new[] { typeof(OpenApiExtensions).Assembly, typeof(Core.Inference.Prediction).Assembly })
            {
                var xml = Path.Combine(AppContext.BaseDirectory, $"{assembly.GetName().Name}.xml");
                if (File.Exists(xml))
                {
                    o.IncludeXmlComments(xml);
                }
            }

            o.DescribeAllParametersInCamelCase();
            o.UseInlineDefinitionsForEnums();
            o.SupportNonNullableReferenceTypes();
            o.OperationFilter<ParameterDefaultsOperationFilter>();
            o.OperationFilter<PngResponseOperationFilter>();
            o.AddApiKeySecurity();
        });
        return services;
    }

    public static WebApplication UseStrapVitOpenApi(this WebApplication app)
    {
        app.UseSwagger();
        app.UseSwaggerUI(o =>
        {
            o.SwaggerEndpoint(DocumentPath, "StrapVitService v1");
            o.RoutePrefix = "swagger";
        });
        return app;
    }
}

/// <summary>
/// A parameter declared with a default value (<c>bool IncludePixels = false</c> in an <c>[AsParameters]</c> record)
/// shows that default, so Swagger UI fills it in; one declared without (an optional seed) stays blank.
/// </summary>
internal sealed class ParameterDefaultsOperationFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        foreach (var description in context.ApiDescription.ParameterDescriptions)
        {
            if (description.DefaultValue is null or DBNull
                || operation.Parameters?.FirstOrDefault(p => string.Equals(p.Name, description.Name, StringComparison.OrdinalIgnoreCase)) is not OpenApiParameter { Schema: OpenApiSchema schema })
            {
                continue;
            }

            schema.Default ??= JsonSerializer.SerializeToNode(description.DefaultValue, description.DefaultValue.GetType());
        }
    }
}
