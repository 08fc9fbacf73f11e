using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using StrapVit.Api.Tests.Support;
using StrapVit.Core.Imaging;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.InferenceProtocol;

/// <summary>
/// Inference request bodies written the way the protocol's published examples write them: the REST specification's
/// "Inference Request Examples" (id, inputs with name / shape / datatype / data, outputs by name) for tensors, and
/// KServe's v2 BYTES example (one base64 PNG string per image) for encoded images. The /v1/classify answer for the
/// same image is the reference the values are checked against.
/// </summary>
internal static class V2Bodies
{
    public const string ModelName = "fashion-vit-tiny";

    public static byte[] Png(string sample) => File.ReadAllBytes(RepoPaths.Sample(sample));

    /// <summary>The sample's pixels [1, 28, 28] in [0, 1], decoded as an upload is.</summary>
    public static float[] Pixels(string sample) => new ImageDecoder(new ImageLimits()).Decode(Png(sample), 1, 28, 28).Data;

    /// <summary>An FP32 request for the images, data flat (row-major) or nested as the shape.</summary>
    public static string Tensor(IReadOnlyList<float[]> images, bool nested = false, string? parameters = null, string? outputs = null,
        string name = "pixel_values", string datatype = "FP32", string? shape = null)
    {
        shape ??= $"[ {images.Count}, 1, 28, 28 ]";
        var data = nested
            ? "[ " + string.Join(", ", images.Select(i => "[ [ " + string.Join(", ", i.Chunk(28).Select(row => "[ " + Numbers(row) + " ]")) + " ] ]")) + " ]"
            : "[ " + string.Join(", ", images.Select(Numbers)) + " ]";
        return Body($$"""
            {
              "name" : "{{name}}",
              "shape" : {{shape}},
              "datatype" : "{{datatype}}",
              "data" : {{data}}
            }
            """, parameters, outputs);
    }

    /// <summary>A BYTES request: each encoded image as a base64 string.</summary>
    public static string Images(IEnumerable<byte[]> pngs, string? parameters = null, string? outputs = null, string? shape = null)
    {
        var strings = pngs.Select(p => $"\"{Convert.ToBase64String(p)}\"").ToArray();
        return Body($$"""
            {
              "data" : [ {{string.Join(", ", strings)}} ],
              "datatype" : "BYTES",
              "name" : "images",
              "shape" : {{shape ?? $"[ {strings.Length} ]"}}
            }
            """, parameters, outputs);
    }

    /// <summary>The request object around one input, as the specification's example lays it out.</summary>
    public static string Body(string input, string? parameters = null, string? outputs = null)
    {
        var body = new StringBuilder();
        body.Append("{\n  \"id\" : \"42\",\n");
        if (parameters is not null)
        {
            body.Append($"  \"parameters\" : {parameters},\n");
        }

        body.Append($"  \"inputs\" : [\n{input}\n  ]");
        if (outputs is not null)
        {
            body.Append($",\n  \"outputs\" : [\n{string.Join(",\n", outputs.Split(',').Select(o => $"    {{\n      \"name\" : \"{o.Trim()}\"\n    }}"))}\n  ]");
        }

        return body.Append("\n}\n").ToString();
    }

    public static StringContent Json(string body)
    {
        var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    public static Task<HttpResponseMessage> InferAsync(this HttpClient client, string body, string model = ModelName) =>
        client.PostAsync($"/v2/models/{model}/infer", Json(body));

    /// <summary>/v1/classify's probabilities of all ten classes for the image, indexed by class.</summary>
    public static async Task<float[]> ClassifyAsync(this HttpClient client, byte[] image, string query = "defense=off", string contentType = "image/png")
    {
        using var response = await client.PostAsync($"/v1/classify?topK=10&{query}", Http.Multipart(image, contentType));
        var body = await response.JsonAsync();
        Assert.True(response.IsSuccessStatusCode, body.ToString());
        var probabilities = new float[10];
        foreach (var p in body.GetProperty("predictions").EnumerateArray())
        {
            probabilities[p.GetProperty("index").GetInt32()] = p.GetProperty("probability").GetSingle();
        }

        return probabilities;
    }

    /// <summary>The output named <paramref name="name"/> of an inference answer.</summary>
    public static JsonElement Output(this JsonElement answer, string name) =>
        answer.GetProperty("outputs").EnumerateArray().Single(o => o.GetProperty("name").GetString() == name);

    public static float[] Floats(this JsonElement output) => output.GetProperty("data").EnumerateArray().Select(v => v.GetSingle()).ToArray();

    public static long[] Shape(this JsonElement output) => output.GetProperty("shape").EnumerateArray().Select(v => v.GetInt64()).ToArray();

    /// <summary>Floats as numpy's tolist() prints float32 values: the double nearest, to 17 digits.</summary>
    private static string Numbers(float[] values) =>
        string.Join(", ", values.Select(v => ((double)v).ToString("R", CultureInfo.InvariantCulture)));

    /// <summary>Asserts the v2 error shape: an RFC 7807 problem whose <c>error</c> member carries the detail.</summary>
    public static async Task<JsonElement> AssertErrorAsync(this HttpResponseMessage response, int status)
    {
        var problem = await response.AssertProblemAsync(status);
        Assert.Equal(problem.GetProperty("detail").GetString(), problem.GetProperty("error").GetString());
        return problem;
    }
}
