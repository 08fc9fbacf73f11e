using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace StrapVit.Api.Uploads;

/// <summary>
/// Writes the request body of the endpoints that take an <see cref="UploadedImage"/>: a multipart form with the file
/// field <c>image</c> (Swagger UI's file picker) and the endpoint's form fields (<see cref="FormFields"/>), each with
/// its type, description and default (the record's constructor default); without form fields the raw image is
/// accepted too. A field with no default gets an empty example, so Swagger UI's "Try it out" leaves it blank and does
/// not send it (it would otherwise fill in 0 and change the request's meaning, e.g. make an attack targeted at class 0).
/// </summary>
internal sealed class ImageUploadOperationFilter(IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json) : IOperationFilter
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
        var content = new Dictionary<string, IOpenApiMediaType> { ["multipart/form-data"] = new OpenApiMediaType { Schema = form } };
        if (meta.FormFields.Count > 0)
        {
            foreach (var field in meta.FormFields)
            {
                // The record's property carries the field's XML documentation.
                var property = field.Member.DeclaringType?.GetProperty(field.Name!);
                var schema = context.SchemaGenerator.GenerateSchema(field.ParameterType, context.SchemaRepository, memberInfo: property);
                if (schema is OpenApiSchema inline)
                {
                    if (field.HasDefaultValue && field.DefaultValue is { } value)
                    {
                        inline.Default = JsonSerializer.SerializeToNode(value, field.ParameterType, json.Value.SerializerOptions);
                    }
                    else
                    {
                        inline.Examples = [JsonValue.Create(string.Empty)];
                    }
                }

                form.Properties[FormFields.Name(field)] = schema;
            }
        }
        else
        {
            var binary = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" };
            content["image/png"] = new OpenApiMediaType { Schema = binary };
            content["image/jpeg"] = new OpenApiMediaType { Schema = binary };
        }

        operation.RequestBody = new OpenApiRequestBody { Required = true, Content = content };
    }
}
