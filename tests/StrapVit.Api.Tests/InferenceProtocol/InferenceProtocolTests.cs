using System.Net;
using StrapVit.Api.Tests.Support;
using StrapVit.Core.Numerics;
using static StrapVit.Api.Tests.InferenceProtocol.V2Bodies;

namespace StrapVit.Api.Tests.InferenceProtocol;

/// <summary>
/// The Open Inference Protocol on the embedded model: metadata and health, and inference whose values are checked
/// against what POST /v1/classify answers for the same image.
/// </summary>
public sealed class InferenceProtocolTests(ServiceFactory factory) : IClassFixture<ServiceFactory>
{
    private readonly HttpClient _client = factory.CreateClient();

    [Fact]
    public async Task Server_metadata_and_health_answer_the_protocols_objects()
    {
        var server = await (await _client.GetAsync("/v2")).JsonAsync();
        Assert.Equal("StrapVitService", server.GetProperty("name").GetString());
        Assert.False(string.IsNullOrEmpty(server.GetProperty("version").GetString()));
        Assert.Equal(0, server.GetProperty("extensions").GetArrayLength());

        using var live = await _client.GetAsync("/v2/health/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.True((await live.JsonAsync()).GetProperty("live").GetBoolean());
        using var ready = await _client.GetAsync("/v2/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.True((await ready.JsonAsync()).GetProperty("ready").GetBoolean());
        using var modelReady = await _client.GetAsync($"/v2/models/{ModelName}/ready");
        var body = await modelReady.JsonAsync();
        Assert.Equal(ModelName, body.GetProperty("name").GetString());
        Assert.True(body.GetProperty("ready").GetBoolean());
    }

    [Fact]
    public async Task Model_metadata_names_the_v1_model_and_lists_inputs_and_outputs()
    {
        var v1 = await (await _client.GetAsync("/v1/model")).JsonAsync();
        var name = v1.GetProperty("name").GetString();

        using var response = await _client.GetAsync($"/v2/models/{name}");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.JsonAsync();
        Assert.Equal(name, body.GetProperty("name").GetString());
        Assert.Equal("onnxruntime_onnx", body.GetProperty("platform").GetString());
        var version = Assert.Single(body.GetProperty("versions").EnumerateArray()).GetString();
        Assert.Matches("^[0-9a-f]{12}$", version);
        var tensors = (string part) => body.GetProperty(part).EnumerateArray()
            .Select(t => $"{t.GetProperty("name").GetString()} {t.GetProperty("datatype").GetString()} [{string.Join(",", t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()))}]")
            .ToArray();
        Assert.Equal(["pixel_values FP32 [-1,1,28,28]", "images BYTES [-1]"], tensors("inputs"));
        Assert.Equal(["logits FP32 [-1,10]", "probabilities FP32 [-1,10]", "predicted_class INT64 [-1]", "certified BOOL [-1]"], tensors("outputs"));

        // The versioned path names the same model; another version is unknown.
        using var versioned = await _client.GetAsync($"/v2/models/{name}/versions/{version}");
        Assert.Equal(HttpStatusCode.OK, versioned.StatusCode);
        using var other = await _client.GetAsync($"/v2/models/{name}/versions/000000000000");
        await other.AssertErrorAsync(404);
    }

    [Fact]
    public async Task The_specification_example_layout_returns_the_requested_output_with_the_v1_answer()
    {
        var png = Png("bag.png");
        var expected = await _client.ClassifyAsync(png);

        using var response = await _client.InferAsync(Tensor([Pixels("bag.png")], parameters: """{ "defense" : "off" }""", outputs: "logits"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var answer = await response.JsonAsync();
        Assert.Equal("42", answer.GetProperty("id").GetString());
        Assert.Equal(ModelName, answer.GetProperty("model_name").GetString());
        Assert.Matches("^[0-9a-f]{12}$", answer.GetProperty("model_version").GetString());
        Assert.Equal("off", answer.GetProperty("parameters").GetProperty("defense").GetString());
        var logits = Assert.Single(answer.GetProperty("outputs").EnumerateArray());
        Assert.Equal("logits", logits.GetProperty("name").GetString());
        Assert.Equal("FP32", logits.GetProperty("datatype").GetString());
        Assert.Equal([1L, 10L], logits.Shape());
        // softmax of the logits is /v1's probability of every class.
        AssertClose(expected, Probabilities.Softmax(logits.Floats()), 1e-6f);
        Assert.Equal(8, Probabilities.ArgMax(logits.Floats()));
    }

    [Fact]
    public async Task Without_an_outputs_list_logits_probabilities_and_the_class_come_back()
    {
        var expected = await _client.ClassifyAsync(Png("trouser.png"));

        var answer = await (await _client.InferAsync(Tensor([Pixels("trouser.png")], parameters: """{ "defense" : "off" }"""))).JsonAsync();

        Assert.Equal(["logits", "probabilities", "predicted_class"], answer.GetProperty("outputs").EnumerateArray().Select(o => o.GetProperty("name").GetString()));
        var probabilities = answer.Output("probabilities");
        Assert.Equal("FP32", probabilities.GetProperty("datatype").GetString());
        Assert.Equal([1L, 10L], probabilities.Shape());
        AssertClose(expected, probabilities.Floats(), 1e-6f);
        var predicted = answer.Output("predicted_class");
        Assert.Equal("INT64", predicted.GetProperty("datatype").GetString());
        Assert.Equal([1L], predicted.Shape());
        Assert.Equal(1, predicted.GetProperty("data")[0].GetInt64());
    }

    [Fact]
    public async Task Nested_data_gives_the_same_answer_as_flat_data()
    {
        float[][] images = [Pixels("sneaker.png"), Pixels("pullover.png")];

        var flat = await (await _client.InferAsync(Tensor(images, parameters: """{ "defense" : "off" }""", outputs: "logits"))).JsonAsync();
        var nested = await (await _client.InferAsync(Tensor(images, nested: true, parameters: """{ "defense" : "off" }""", outputs: "logits"))).JsonAsync();

        Assert.Equal(flat.Output("logits").Floats(), nested.Output("logits").Floats());
    }

    [Theory]
    [InlineData("off", "defense=off")]
    [InlineData("detect", "defense=detect&seed=7")]
    [InlineData("mitigate", "defense=mitigate&seed=7")]
    public async Task A_batch_answers_each_image_as_v1_classify_answers_it_alone(string mode, string query)
    {
        string[] samples = ["bag.png", "trouser.png", "sneaker.png", "ankle-boot.png"];
        var expected = new List<float[]>();
        foreach (var sample in samples)
        {
            expected.Add(await _client.ClassifyAsync(Png(sample), query));
        }

        using var response = await _client.InferAsync(Tensor(samples.Select(Pixels).ToArray(), parameters: $$"""{ "defense" : "{{mode}}", "seed" : 7 }"""));

        var answer = await response.JsonAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var parameters = answer.GetProperty("parameters");
        Assert.Equal(mode, parameters.GetProperty("defense").GetString());
        Assert.Equal(mode == "off" ? 1 : 2, parameters.EnumerateObject().Count());
        var probabilities = answer.Output("probabilities");
        Assert.Equal([4L, 10L], probabilities.Shape());
        var rows = probabilities.Floats().Chunk(10).ToArray();
        var logits = answer.Output("logits").Floats().Chunk(10).ToArray();
        var predicted = answer.Output("predicted_class").GetProperty("data").EnumerateArray().Select(v => v.GetInt64()).ToArray();
        for (var i = 0; i < samples.Length; i++)
        {
            AssertClose(expected[i], rows[i], 1e-4f);
            AssertClose(rows[i], Probabilities.Softmax(logits[i]), 1e-6f);
            Assert.Equal(Probabilities.ArgMax(expected[i]), predicted[i]);
        }

        if (mode != "off")
        {
            Assert.Equal(7, parameters.GetProperty("seed").GetInt32());
        }
    }

    [Fact]
    public async Task Certify_answers_vote_shares_the_class_and_the_certificate_as_v1_does()
    {
        using var v1 = await _client.PostAsync("/v1/classify?defense=certify&patch=6&topK=10", Http.Multipart(Png("bag.png")));
        var reference = await v1.JsonAsync();
        var votes = new float[10];
        foreach (var p in reference.GetProperty("predictions").EnumerateArray())
        {
            votes[p.GetProperty("index").GetInt32()] = p.GetProperty("probability").GetSingle();
        }

        using var response = await _client.InferAsync(Images([Png("bag.png")], parameters: """{ "defense" : "certify", "patch" : 6 }"""));

        var answer = await response.JsonAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(["probabilities", "predicted_class", "certified"], answer.GetProperty("outputs").EnumerateArray().Select(o => o.GetProperty("name").GetString()));
        Assert.Equal(votes, answer.Output("probabilities").Floats());
        Assert.Equal(reference.GetProperty("predictions")[0].GetProperty("index").GetInt64(), answer.Output("predicted_class").GetProperty("data")[0].GetInt64());
        var certified = answer.Output("certified");
        Assert.Equal("BOOL", certified.GetProperty("datatype").GetString());
        Assert.Equal(reference.GetProperty("defense").GetProperty("certified").GetBoolean(), certified.GetProperty("data")[0].GetBoolean());
        Assert.Equal(6, answer.GetProperty("parameters").GetProperty("patch").GetInt32());
    }

    [Fact]
    public async Task Bytes_inputs_carry_base64_pngs_and_jpegs_decoded_as_uploads_are()
    {
        byte[][] images = [Png("bag.png"), Png("pullover.png"), Png("trouser-rgb-112.jpg")];
        float[][] expected =
        [
            await _client.ClassifyAsync(images[0]),
            await _client.ClassifyAsync(images[1]),
            await _client.ClassifyAsync(images[2], contentType: "image/jpeg"),
        ];

        using var response = await _client.InferAsync(Images(images, parameters: """{ "defense" : "off" }""", outputs: "probabilities"));

        var answer = await response.JsonAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var probabilities = Assert.Single(answer.GetProperty("outputs").EnumerateArray());
        Assert.Equal([3L, 10L], probabilities.Shape());
        var rows = probabilities.Floats().Chunk(10).ToArray();
        for (var i = 0; i < images.Length; i++)
        {
            AssertClose(expected[i], rows[i], 1e-5f);
        }
    }

    [Fact]
    public async Task The_default_defense_is_the_one_v1_classify_applies_and_the_fresh_seed_is_reported()
    {
        var answer = await (await _client.InferAsync(Tensor([Pixels("bag.png")]))).JsonAsync();

        var parameters = answer.GetProperty("parameters");
        Assert.Equal("mitigate", parameters.GetProperty("defense").GetString());
        var seed = parameters.GetProperty("seed").GetInt32();
        var expected = await _client.ClassifyAsync(Png("bag.png"), $"seed={seed}");
        AssertClose(expected, answer.Output("probabilities").Floats(), 1e-4f);
    }

    [Fact]
    public async Task The_versioned_paths_serve_the_models_one_version()
    {
        var version = (await (await _client.GetAsync($"/v2/models/{ModelName}")).JsonAsync()).GetProperty("versions")[0].GetString();

        using var ready = await _client.GetAsync($"/v2/models/{ModelName}/versions/{version}/ready");
        using var response = await _client.PostAsync($"/v2/models/{ModelName}/versions/{version}/infer", Json(Tensor([Pixels("bag.png")], parameters: """{ "defense" : "off" }""")));

        Assert.True((await ready.JsonAsync()).GetProperty("ready").GetBoolean());
        var answer = await response.JsonAsync();
        Assert.Equal(version, answer.GetProperty("model_version").GetString());
        Assert.Equal(8, answer.Output("predicted_class").GetProperty("data")[0].GetInt64());
    }

    [Fact]
    public async Task An_answer_without_an_id_in_the_request_has_none()
    {
        var body = Tensor([Pixels("bag.png")], parameters: """{ "defense" : "off" }""").Replace("\"id\" : \"42\",", "", StringComparison.Ordinal);

        var answer = await (await _client.InferAsync(body)).JsonAsync();

        Assert.False(answer.TryGetProperty("id", out _));
        Assert.Equal(ModelName, answer.GetProperty("model_name").GetString());
    }

    /// <summary>A refused defense parameter, as the query of /v1/classify and as a parameter of /v2 infer.</summary>
    public static TheoryData<string, string> RefusedDefenseParameters => new()
    {
        { "defense=maybe", """{ "defense" : "maybe" }""" },
        { "defense=Mitigate", """{ "defense" : "Mitigate" }""" },
        { "defense=7", """{ "defense" : 7 }""" },
        { "seed=x", """{ "seed" : "x" }""" },
        { "seed=1.5", """{ "seed" : 1.5 }""" },
        { "seed=-1", """{ "seed" : -1 }""" },
        { "defense=off&patch=4", """{ "defense" : "off", "patch" : 4 }""" },
        { "defense=certify&patch=0", """{ "defense" : "certify", "patch" : 0 }""" },
        { "defense=certify&patch=99", """{ "defense" : "certify", "patch" : 99 }""" },
    };

    [Theory]
    [MemberData(nameof(RefusedDefenseParameters))]
    public async Task V1_classify_and_v2_infer_refuse_a_defense_parameter_with_the_same_problem(string query, string parameters)
    {
        using var v1 = await _client.PostAsync($"/v1/classify?{query}", Http.Multipart(Png("bag.png")));
        using var v2 = await _client.InferAsync(Tensor([Pixels("bag.png")], parameters: parameters));

        var expected = await v1.AssertProblemAsync(400);
        var problem = await v2.AssertErrorAsync(400);
        Assert.Equal(expected.GetProperty("title").GetString(), problem.GetProperty("title").GetString());
        Assert.Equal(expected.GetProperty("detail").GetString(), problem.GetProperty("detail").GetString());
    }

    public static TheoryData<string, string, string> BadRequests => new()
    {
        { "wrong channels", Tensor([Pixels("bag.png")], shape: "[ 1, 3, 28, 28 ]"), "shape [1, 3, 28, 28]" },
        { "rank 3 as in TorchServe's example", Tensor([Pixels("bag.png")], shape: "[ 1, 28, 28 ]"), "[N, 1, 28, 28]" },
        { "empty batch", Body("""{ "name" : "pixel_values", "shape" : [ 0, 1, 28, 28 ], "datatype" : "FP32", "data" : [ ] }"""), "N >= 1" },
        { "data shorter than the shape", Tensor([Pixels("bag.png")], shape: "[ 2, 1, 28, 28 ]"), "needs 1568" },
        { "nested data of the wrong length", Tensor([Pixels("bag.png"), Pixels("bag.png")], nested: true, shape: "[ 3, 1, 28, 28 ]"), "dimension 0" },
        { "wrong datatype", Tensor([Pixels("bag.png")], datatype: "FP64"), "FP32" },
        { "integer datatype as in the specification's example", Tensor([Pixels("bag.png")], datatype: "UINT32"), "'UINT32'" },
        { "unknown input name", Tensor([Pixels("bag.png")], name: "input0"), "input0" },
        { "pixel above 1", Tensor([[.. Pixels("bag.png")[..783], 1.5f]]), "[0, 1]" },
        { "string pixel", Body("""{ "name" : "pixel_values", "shape" : [ 1, 1, 28, 28 ], "datatype" : "FP32", "data" : [ "0.5" """ + string.Concat(Enumerable.Repeat(", 0", 783)) + " ] }"), "must be numbers" },
        { "no inputs", """{ "id" : "42", "inputs" : [ ] }""", "no input" },
        { "two inputs", Body("""{ "name" : "images", "shape" : [ 1 ], "datatype" : "BYTES", "data" : [ "" ] }, { "name" : "images", "shape" : [ 1 ], "datatype" : "BYTES", "data" : [ "" ] }"""), "2 inputs" },
        { "unknown output", Tensor([Pixels("bag.png")], outputs: "output0"), "output0" },
        { "logits under certify", Tensor([Pixels("bag.png")], parameters: """{ "defense" : "certify" }""", outputs: "logits"), "not produced" },
        { "certified without certify", Tensor([Pixels("bag.png")], parameters: """{ "defense" : "off" }""", outputs: "certified"), "not produced" },
        { "unknown parameter", Tensor([Pixels("bag.png")], parameters: """{ "defence" : "off" }"""), "defence" },
        { "unknown defense", Tensor([Pixels("bag.png")], parameters: """{ "defense" : "maybe" }"""), "maybe" },
        { "fractional seed", Tensor([Pixels("bag.png")], parameters: """{ "seed" : 1.5 }"""), "integer" },
        { "boolean defense", Tensor([Pixels("bag.png")], parameters: """{ "defense" : true }"""), "string or a number" },
        { "patch without certify", Tensor([Pixels("bag.png")], parameters: """{ "defense" : "off", "patch" : 4 }"""), "certify" },
        { "not base64", Body("""{ "name" : "images", "shape" : [ 1 ], "datatype" : "BYTES", "data" : [ "not base64!" ] }"""), "base64" },
        { "base64 of no image", Images([[1, 2, 3, 4, 5, 6, 7, 8]]), "data[0]" },
        { "bytes shape with -1 as in TorchServe's example", Images([Png("bag.png")], shape: "[ -1 ]"), "[N]" },
        { "malformed json", """{ "id" : "42", "inputs" : [ """, "not an inference request" },
        { "id that is not a string", """{ "id" : 42, "inputs" : [ ] }""", "Path: $.id" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_requests_are_400_with_the_protocols_error_beside_the_problem(string why, string body, string mentions)
    {
        using var response = await _client.InferAsync(body);

        var error = (await response.AssertErrorAsync(400)).GetProperty("error").GetString()!;
        Assert.True(error.Contains(mentions, StringComparison.Ordinal), $"{why}: '{error}' does not mention '{mentions}'");
    }

    [Theory]
    [InlineData("GET", "/v2/models/resnet50")]
    [InlineData("GET", "/v2/models/resnet50/ready")]
    [InlineData("POST", "/v2/models/resnet50/infer")]
    [InlineData("POST", "/v2/models/FASHION-VIT-TINY/infer")]
    [InlineData("POST", "/v2/models/fashion-vit-tiny/versions/000000000000/infer")]
    [InlineData("GET", "/v2/models/fashion-vit-tiny/versions/1/ready")]
    public async Task An_unknown_model_is_404_with_the_protocols_error(string method, string path)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (method == "POST")
        {
            request.Content = Json(Tensor([Pixels("bag.png")]));
        }

        using var response = await _client.SendAsync(request);

        var problem = await response.AssertErrorAsync(404);
        Assert.Contains(ModelName, problem.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData(null)]
    public async Task A_body_without_a_json_content_type_is_still_read_as_the_protocols_servers_do(string? contentType)
    {
        using var content = new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(Tensor([Pixels("bag.png")], parameters: """{ "defense" : "off" }""")));
        if (contentType is not null)
        {
            content.Headers.ContentType = new(contentType);
        }

        using var response = await _client.PostAsync($"/v2/models/{ModelName}/infer", content);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(8, (await response.JsonAsync()).Output("predicted_class").GetProperty("data")[0].GetInt64());
    }

    private static void AssertClose(float[] expected, float[] actual, float tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"[{i}]: expected {expected[i]}, got {actual[i]}");
        }
    }
}
