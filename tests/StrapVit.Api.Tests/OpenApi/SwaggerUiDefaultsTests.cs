using System.Globalization;
using System.Text.Json;
using StrapVit.Api.Tests.Attacks;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.OpenApi;

/// <summary>
/// What Swagger UI's "Try it out" sends for each attack (every form field with a default at that default, and the
/// blank ones as empty values, as Swagger UI in Chromium does) runs the same attack as a request that sends no field
/// at all: the declared defaults are the service's own, and an empty field counts as absent. The attack is
/// untargeted, since nothing fills in a label or a target class.
/// </summary>
public sealed class SwaggerUiDefaultsTests(AttackServiceFactory factory) : IClassFixture<AttackServiceFactory>
{
    private readonly HttpClient client = factory.CreateClient();

    public static TheoryData<string> Attacks => ["fgsm", "pgd", "deepfool", "patch"];

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task The_forms_defaults_run_the_services_default_attack(string attack)
    {
        var doc = await (await client.GetAsync("/swagger/v1/swagger.json")).JsonAsync();
        var operation = doc.GetProperty("paths").GetProperty($"/v1/attacks/{attack}").GetProperty("post");
        var fields = operation.GetProperty("requestBody").GetProperty("content").GetProperty("multipart/form-data").GetProperty("schema").GetProperty("properties")
            .EnumerateObject()
            .Where(p => p.Name is not ("image" or "seed"))
            .Select(p => (p.Name, p.Value.TryGetProperty("default", out var value) ? Text(value) : ""))
            .ToArray();
        Assert.Contains(fields, f => f.Item2 != "");
        Assert.Contains(("label", ""), fields);
        Assert.Contains(("targetClass", ""), fields);

        // The seed is fixed in both, so the two runs can be compared.
        var fromForm = await AttackAsync(attack, [.. fields, ("seed", "11")]);
        var bare = await AttackAsync(attack, ("seed", "11"));

        Assert.Equal(bare.GetProperty("pixels").GetRawText(), fromForm.GetProperty("pixels").GetRawText());
        Assert.Equal(bare.GetProperty("iterations").GetInt32(), fromForm.GetProperty("iterations").GetInt32());
        // Untargeted: success means leaving the clean prediction.
        Assert.Equal(fromForm.GetProperty("success").GetBoolean(),
            fromForm.GetProperty("adversarial").GetProperty("index").GetInt32() != fromForm.GetProperty("original").GetProperty("index").GetInt32());
    }

    private async Task<JsonElement> AttackAsync(string attack, params (string, string)[] fields)
    {
        using var response = await client.PostAsync($"/v1/attacks/{attack}?includePixels=true", AttackServiceFactory.Form(AttackServiceFactory.Image(), fields));
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        return await response.JsonAsync();
    }

    /// <summary>A default as Swagger UI puts it in the form: numbers and booleans as JSON writes them, strings bare.</summary>
    private static string Text(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString()!,
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        _ => value.GetDouble().ToString("R", CultureInfo.InvariantCulture),
    };
}
