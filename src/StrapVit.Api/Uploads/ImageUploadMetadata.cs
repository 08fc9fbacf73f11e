using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace StrapVit.Api.Uploads;

/// <summary>
/// Marks an endpoint that takes an uploaded image, optionally with extra form fields. The handlers read the body
/// themselves (multipart or raw image), so this metadata is what tells OpenAPI, and with it Swagger UI's
/// "Try it out" file picker, what the request looks like.
/// </summary>
public sealed class ImageUploadMetadata(params (string Name, string Type, string Description)[] formFields)
{
    public IReadOnlyList<(string Name, string Type, string Description)> FormFields { get; } = formFields;
}

/// <summary>Writes the request body of endpoints carrying <see cref="ImageUploadMetadata"/>.</summary>
public sealed class ImageUploadOperationFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        var meta = context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<ImageUploadMetadata>().FirstOrDefault();
        if (meta is null)
        {
            return;
        }

        var form = new OpenApiSchema
        {
            Type = JsonSchemaType.Object,
            Required = new HashSet<string> { ImageUpload.FieldName },
            Properties = new Dictionary<string, IOpenApiSchema>
            {
                [ImageUpload.FieldName] = new OpenApiSchema
                {
                    Type = JsonSchemaType.String,
                    Format = "binary",
                    Description = "The image (PNG, JPEG, GIF, BMP or WebP).",
                },
            },
        };
        foreach (var (name, type, description) in meta.FormFields)
        {
            form.Properties[name] = new OpenApiSchema
            {
                Type = type switch
                {
                    "integer" => JsonSchemaType.Integer,
                    "number" => JsonSchemaType.Number,
                    "boolean" => JsonSchemaType.Boolean,
                    _ => JsonSchemaType.String,
                },
                Description = description,
            };
        }

        var binary = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" };
        operation.RequestBody = new OpenApiRequestBody
        {
            Required = true,
            Content = new Dictionary<string, IOpenApiMediaType>
            {
                ["multipart/form-data"] = new OpenApiMediaType { Schema = form },
                ["image/png"] = new OpenApiMediaType { Schema = binary },
                ["image/jpeg"] = new OpenApiMediaType { Schema = binary },
            },
        };
    }
}
