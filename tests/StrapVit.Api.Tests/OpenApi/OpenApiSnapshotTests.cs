using System.Text.Json;
using System.Text.Json.Nodes;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.OpenApi;

/// <summary>
/// docs/openapi.json is the document the service serves (default settings, the embedded model): a change of the HTTP
/// surface shows in review as a change of that file. Regenerate it with
/// <c>STRAPVIT_UPDATE_OPENAPI=1 dotnet test tests/StrapVit.Api.Tests --filter OpenApiSnapshot</c>.
/// </summary>
public sealed class OpenApiSnapshotTests(ServiceFactory factory) : IClassFixture<ServiceFactory>
{
    public const string UpdateVariable = "STRAPVIT_UPDATE_OPENAPI";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string CommittedPath => Path.Combine(RepoPaths.Root, "docs", "openapi.json");

    [Fact]
    public async Task The_committed_openapi_json_is_the_document_the_service_serves()
    {
        using var client = factory.CreateClient();
        var served = JsonNode.Parse(await client.GetStringAsync("/swagger/v1/swagger.json"))!;

        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
        {
            await File.WriteAllTextAsync(CommittedPath, served.ToJsonString(Indented) + "\n");
        }

        Assert.True(File.Exists(CommittedPath), $"{CommittedPath} is missing; run with {UpdateVariable}=1 to write it.");
        var committed = JsonNode.Parse(await File.ReadAllTextAsync(CommittedPath))!;
        Assert.True(JsonNode.DeepEquals(committed, served),
            $"docs/openapi.json differs from the service's /swagger/v1/swagger.json (first difference at {FirstDifference(committed, served, "$")}). "
            + $"If the change of the API is intended, regenerate the file: {UpdateVariable}=1 dotnet test tests/StrapVit.Api.Tests --filter OpenApiSnapshot");
    }

    /// <summary>The JSON path of the first place the two documents differ, to say where to look.</summary>
    private static string FirstDifference(JsonNode? a, JsonNode? b, string path)
    {
        switch (a, b)
        {
            case (JsonObject x, JsonObject y):
                foreach (var key in x.Select(p => p.Key).Union(y.Select(p => p.Key)))
                {
                    if (!JsonNode.DeepEquals(x[key], y[key]))
                    {
                        return FirstDifference(x[key], y[key], $"{path}['{key}']");
                    }
                }

                return path;
            case (JsonArray x, JsonArray y) when x.Count == y.Count:
                for (var i = 0; i < x.Count; i++)
                {
                    if (!JsonNode.DeepEquals(x[i], y[i]))
                    {
                        return FirstDifference(x[i], y[i], $"{path}[{i}]");
                    }
                }

                return path;
            default:
                return path;
        }
    }
}
