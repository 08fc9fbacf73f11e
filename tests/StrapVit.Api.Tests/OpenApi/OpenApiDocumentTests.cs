using System.Text.Json;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.OpenApi;

/// <summary>
/// The OpenAPI document the service serves is one Swagger UI can drive from its forms: typed parameters and enums,
/// defaults only where the service has them (so "Try it out" sends nothing that changes a request's meaning), PNG
/// answers declared beside JSON, response schemas, and the health probes listed.
/// </summary>
public sealed class OpenApiDocumentTests(ServiceFactory factory) : IClassFixture<ServiceFactory>
{
    private readonly Lazy<Task<JsonElement>> document = new(async () =>
    {
        using var client = factory.CreateClient();
        return await (await client.GetAsync("/swagger/v1/swagger.json")).JsonAsync();
    });

    public static TheoryData<string> Attacks => ["fgsm", "pgd", "deepfool", "patch"];

    private async Task<JsonElement> OperationAsync(string path, string method = "post") =>
        (await document.Value).GetProperty("paths").GetProperty(path).GetProperty(method);

    private static JsonElement Query(JsonElement operation, string name) =>
        operation.GetProperty("parameters").EnumerateArray().Single(p => p.GetProperty("name").GetString() == name && p.GetProperty("in").GetString() == "query").GetProperty("schema");

    private static JsonElement FormField(JsonElement operation, string name) =>
        operation.GetProperty("requestBody").GetProperty("content").GetProperty("multipart/form-data").GetProperty("schema").GetProperty("properties").GetProperty(name);

    private static string[] Enum(JsonElement schema) => [.. schema.GetProperty("enum").EnumerateArray().Select(v => v.GetString()!)];

    /// <summary>A field Swagger UI leaves blank: no default, and the empty example it fills in instead of 0 or "string".</summary>
    private static void AssertBlank(JsonElement schema)
    {
        Assert.False(schema.TryGetProperty("default", out _), schema.GetRawText());
        Assert.Equal("", schema.GetProperty("example").GetString());
    }

    [Fact]
    public async Task Classify_query_parameters_are_typed_and_only_topK_has_a_default()
    {
        var classify = await OperationAsync("/v1/classify");

        var topK = Query(classify, "topK");
        Assert.Equal("integer", topK.GetProperty("type").GetString());
        Assert.Equal(5, topK.GetProperty("default").GetInt32());
        var defense = Query(classify, "defense");
        Assert.Equal("string", defense.GetProperty("type").GetString());
        Assert.Equal(["off", "detect", "mitigate", "certify"], Enum(defense));
        foreach (var optional in new[] { defense, Query(classify, "seed"), Query(classify, "patch") })
        {
            Assert.False(optional.TryGetProperty("default", out _), optional.GetRawText());
            Assert.False(optional.TryGetProperty("example", out _), optional.GetRawText());
        }

        Assert.Equal("integer", Query(classify, "seed").GetProperty("type").GetString());
        Assert.Equal("integer", Query(classify, "patch").GetProperty("type").GetString());
    }

    [Fact]
    public async Task Fgsm_defaults_to_an_untargeted_attack_at_8_over_255()
    {
        var fgsm = await OperationAsync("/v1/attacks/fgsm");

        var epsilon = FormField(fgsm, "epsilon");
        Assert.Equal("number", epsilon.GetProperty("type").GetString());
        Assert.Equal(8.0 / 255, epsilon.GetProperty("default").GetDouble(), 6);
        foreach (var optional in new[] { "label", "targetClass", "seed" })
        {
            Assert.Equal("integer", FormField(fgsm, optional).GetProperty("type").GetString());
            AssertBlank(FormField(fgsm, optional));
        }

        var image = FormField(fgsm, "image");
        Assert.Equal("binary", image.GetProperty("format").GetString());
        var body = fgsm.GetProperty("requestBody").GetProperty("content").GetProperty("multipart/form-data").GetProperty("schema");
        Assert.Equal(["image"], body.GetProperty("required").EnumerateArray().Select(v => v.GetString()));
        var includePixels = Query(fgsm, "includePixels");
        Assert.Equal("boolean", includePixels.GetProperty("type").GetString());
        Assert.False(includePixels.GetProperty("default").GetBoolean());
    }

    [Fact]
    public async Task Pgd_fields_have_their_types_enums_and_defaults()
    {
        var pgd = await OperationAsync("/v1/attacks/pgd");

        var norm = FormField(pgd, "norm");
        Assert.Equal(["linf", "l2"], Enum(norm));
        Assert.Equal("linf", norm.GetProperty("default").GetString());
        Assert.Equal((10, "integer"), (FormField(pgd, "steps").GetProperty("default").GetInt32(), FormField(pgd, "steps").GetProperty("type").GetString()));
        Assert.Equal(1, FormField(pgd, "restarts").GetProperty("default").GetInt32());
        Assert.True(FormField(pgd, "randomStart").GetProperty("default").GetBoolean());
        Assert.False(FormField(pgd, "earlyStop").GetProperty("default").GetBoolean());
        Assert.Equal("boolean", FormField(pgd, "earlyStop").GetProperty("type").GetString());
        // Their defaults depend on the norm: left to the service.
        AssertBlank(FormField(pgd, "epsilon"));
        AssertBlank(FormField(pgd, "stepSize"));
    }

    [Fact]
    public async Task Saliency_does_not_prefill_the_class()
    {
        var saliency = await OperationAsync("/v1/explain/saliency");

        Assert.Equal("integer", FormField(saliency, "class").GetProperty("type").GetString());
        AssertBlank(FormField(saliency, "class"));
    }

    [Theory]
    [InlineData("/v1/defense/inspect", "InspectResponse")]
    [InlineData("/v1/explain/saliency", "SaliencyResponse")]
    [InlineData("/v1/attacks/fgsm", "AttackResponse")]
    [InlineData("/v1/attacks/pgd", "AttackResponse")]
    [InlineData("/v1/attacks/deepfool", "AttackResponse")]
    [InlineData("/v1/attacks/patch", "AttackResponse")]
    public async Task Endpoints_that_can_answer_a_png_declare_it_beside_json(string path, string schema)
    {
        var content = (await OperationAsync(path)).GetProperty("responses").GetProperty("200").GetProperty("content");

        Assert.Equal($"#/components/schemas/{schema}", content.GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString());
        var png = content.GetProperty("image/png").GetProperty("schema");
        Assert.Equal(("string", "binary"), (png.GetProperty("type").GetString(), png.GetProperty("format").GetString()));
    }

    [Fact]
    public async Task Every_success_has_a_schema_and_every_refusal_is_problem_json()
    {
        var paths = (await document.Value).GetProperty("paths");
        var checkedResponses = 0;
        foreach (var path in paths.EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                foreach (var response in operation.Value.GetProperty("responses").EnumerateObject())
                {
                    var where = $"{operation.Name} {path.Name} {response.Name}";
                    var status = int.Parse(response.Name, System.Globalization.CultureInfo.InvariantCulture);
                    if (status == 204)
                    {
                        continue;
                    }

                    var content = response.Value.GetProperty("content");
                    Assert.True(content.EnumerateObject().Any(), where);
                    Assert.All(content.EnumerateObject(), media => Assert.True(media.Value.TryGetProperty("schema", out _), $"{where} {media.Name}"));
                    if (status >= 400 && !IsProbe(path.Name))
                    {
                        Assert.Equal("#/components/schemas/ProblemDetails",
                            content.GetProperty("application/problem+json").GetProperty("schema").GetProperty("$ref").GetString());
                    }

                    checkedResponses++;
                }
            }
        }

        Assert.True(checkedResponses > 50, $"only {checkedResponses} responses");
    }

    /// <summary>Health and readiness probes answer "not ready" in their own format (plain text, or the inference protocol's ready object), not as a problem.</summary>
    private static bool IsProbe(string path) =>
        path.StartsWith("/healthz/", StringComparison.Ordinal) || (path.StartsWith("/v2/", StringComparison.Ordinal) && path.EndsWith("/ready", StringComparison.Ordinal));

    [Fact]
    public async Task Inference_protocol_operations_are_tagged_together_with_their_request_and_response_schemas()
    {
        var paths = (await document.Value).GetProperty("paths");
        var v2 = paths.EnumerateObject().Where(p => p.Name == "/v2" || p.Name.StartsWith("/v2/", StringComparison.Ordinal))
            .SelectMany(p => p.Value.EnumerateObject().Select(o => (Path: p.Name, Method: o.Name, Operation: o.Value))).ToArray();

        Assert.Equal(
            ["get /v2", "get /v2/health/live", "get /v2/health/ready", "get /v2/models/{name}", "get /v2/models/{name}/ready",
                "get /v2/models/{name}/versions/{version}", "get /v2/models/{name}/versions/{version}/ready",
                "post /v2/models/{name}/infer", "post /v2/models/{name}/versions/{version}/infer"],
            v2.Select(o => $"{o.Method} {o.Path}").Order(StringComparer.Ordinal).ToArray());
        Assert.All(v2, o => Assert.Equal(["Inference protocol"], o.Operation.GetProperty("tags").EnumerateArray().Select(t => t.GetString())));

        static string? Ok(JsonElement operation, string status = "200") =>
            operation.GetProperty("responses").GetProperty(status).GetProperty("content").GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString();
        Assert.Equal("#/components/schemas/ServerMetadataResponse", Ok(await OperationAsync("/v2", "get")));
        Assert.Equal("#/components/schemas/ServerReadyResponse", Ok(await OperationAsync("/v2/health/ready", "get"), "503"));
        Assert.Equal("#/components/schemas/ModelMetadataResponse", Ok(await OperationAsync("/v2/models/{name}", "get")));
        Assert.Equal("#/components/schemas/ModelReadyResponse", Ok(await OperationAsync("/v2/models/{name}/versions/{version}/ready", "get"), "503"));
        foreach (var path in new[] { "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer" })
        {
            var infer = await OperationAsync(path);
            Assert.Equal("#/components/schemas/InferenceResponse", Ok(infer));
            Assert.Equal("#/components/schemas/InferenceRequest",
                infer.GetProperty("requestBody").GetProperty("content").GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString());
            Assert.Equal(["200", "400", "404", "413", "429", "503"], infer.GetProperty("responses").EnumerateObject().Select(r => r.Name).Order(StringComparer.Ordinal));
        }

        var response = (await document.Value).GetProperty("components").GetProperty("schemas").GetProperty("InferenceResponse").GetProperty("properties");
        Assert.True(response.TryGetProperty("model_name", out _), response.GetRawText());
        Assert.True(response.TryGetProperty("model_version", out _), response.GetRawText());
    }

    [Fact]
    public async Task Response_schemas_name_the_attack_and_the_defense_report()
    {
        var schemas = (await document.Value).GetProperty("components").GetProperty("schemas");

        Assert.Equal(["fgsm", "pgd", "deepfool", "patch"], Enum(schemas.GetProperty("AttackResponse").GetProperty("properties").GetProperty("attack")));
        var defense = schemas.GetProperty("ClassifyResponse").GetProperty("properties").GetProperty("defense");
        Assert.Equal(["#/components/schemas/DefenseReport", "#/components/schemas/CertifyReport"],
            defense.GetProperty("oneOf").EnumerateArray().Select(s => s.GetProperty("$ref").GetString()));
        Assert.Equal(JsonValueKind.Number, schemas.GetProperty("AttackResponse").GetProperty("properties").GetProperty("linf").GetProperty("example").ValueKind);
    }

    [Fact]
    public async Task The_patch_job_form_starts_from_the_target_class_alone()
    {
        var example = (await OperationAsync("/v1/patches")).GetProperty("requestBody").GetProperty("content").GetProperty("application/json").GetProperty("example");

        var property = Assert.Single(example.EnumerateObject());
        Assert.Equal(("targetClass", 1), (property.Name, property.Value.GetInt32()));
    }

    [Theory]
    [InlineData("/healthz/live", new[] { "200" })]
    [InlineData("/healthz/ready", new[] { "200", "503" })]
    public async Task Health_probes_are_listed_with_their_plain_text_answers(string path, string[] statuses)
    {
        var get = await OperationAsync(path, "get");

        Assert.Equal(statuses, get.GetProperty("responses").EnumerateObject().Select(r => r.Name));
        Assert.All(get.GetProperty("responses").EnumerateObject(), r => Assert.True(r.Value.GetProperty("content").TryGetProperty("text/plain", out _)));
        Assert.Equal("Healthy", get.GetProperty("responses").GetProperty("200").GetProperty("content").GetProperty("text/plain").GetProperty("example").GetString());
    }
}
