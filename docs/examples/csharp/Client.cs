// Classify an image, attack it with FGSM, and classify it again through the Open Inference Protocol (v2).
// A .NET 10 file-based app (no project file needed). From the repository root:
//
//   dotnet run docs/examples/csharp/Client.cs -- http://localhost:5080 samples/ankle-boot.png
//
// Set STRAPVIT_API_KEY when the service has API keys (the attack endpoints need one then).

// Reflection-based JSON, so not a native AOT app (file-based apps are AOT by default).
#:property PublishAot=false

using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;

var baseAddress = new Uri(args.Length > 0 ? args[0] : "http://localhost:5080");
var path = args.Length > 1 ? args[1] : "samples/ankle-boot.png";
using var http = new HttpClient { BaseAddress = baseAddress };
if (Environment.GetEnvironmentVariable("STRAPVIT_API_KEY") is { Length: > 0 } key)
{
    http.DefaultRequestHeaders.Add("X-API-Key", key);
}

var image = await File.ReadAllBytesAsync(path);

// A multipart form with the image in the field "image", and the endpoint's form fields.
MultipartFormDataContent Upload(params (string Name, string Value)[] fields)
{
    var file = new ByteArrayContent(image);
    file.Headers.ContentType = new MediaTypeHeaderValue(Path.GetExtension(path) is ".jpg" or ".jpeg" ? "image/jpeg" : "image/png");
    var form = new MultipartFormDataContent { { file, "image", Path.GetFileName(path) } };
    foreach (var (name, value) in fields)
    {
        form.Add(new StringContent(value), name);
    }

    return form;
}

try
{
    // 1. Classify: a multipart upload in the field "image"; the defense runs in its default mode (mitigate).
    using (var form = Upload())
    {
        var classified = await Answer<Classification>(await http.PostAsync(new Uri("v1/classify?topK=3", UriKind.Relative), form));
        var top = classified.Predictions[0];
        Console.WriteLine($"classify: {top.Label} ({top.Probability:F3})");
    }

    // 2. FGSM, untargeted, with an L-infinity budget of 8/255 in [0, 1] pixel space.
    using (var form = Upload(("epsilon", (8f / 255).ToString(CultureInfo.InvariantCulture))))
    {
        var fgsm = await Answer<AttackResult>(await http.PostAsync(new Uri("v1/attacks/fgsm", UriKind.Relative), form));
        Console.WriteLine($"fgsm: {fgsm.Original.Label} -> {fgsm.Adversarial.Label} (success: {(fgsm.Success ? "true" : "false")}, linf: {fgsm.Linf:F4})");
    }

    // 3. Open Inference Protocol: the model's name from GET /v1/model, then a BYTES input holding the base64 image.
    var model = await Answer<Model>(await http.GetAsync(new Uri("v1/model", UriKind.Relative)));
    var inference = new
    {
        inputs = new[] { new { name = "images", datatype = "BYTES", shape = new[] { 1 }, data = new[] { Convert.ToBase64String(image) } } },
        outputs = new[] { new { name = "predicted_class" } },
    };
    var inferred = await Answer<InferenceResponse>(await http.PostAsJsonAsync(new Uri($"v2/models/{model.Name}/infer", UriKind.Relative), inference));
    var predicted = inferred.Outputs[0].Data[0];
    Console.WriteLine($"v2 infer: class {predicted} {model.Labels[predicted]}");
    return 0;
}
catch (HttpRequestException ex)
{
    await Console.Error.WriteLineAsync(ex.Message);
    return 1;
}

// The JSON answer, or an exception with the problem's title and detail (RFC 7807) when the service refused.
static async Task<T> Answer<T>(HttpResponseMessage response)
{
    using (response)
    {
        if (!response.IsSuccessStatusCode)
        {
            var problem = response.Content.Headers.ContentType?.MediaType == "application/problem+json"
                ? await response.Content.ReadFromJsonAsync<Problem>()
                : null;
            throw new HttpRequestException($"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri}: {(int)response.StatusCode} "
                + $"{problem?.Title ?? response.ReasonPhrase}: {problem?.Detail}");
        }

        return (await response.Content.ReadFromJsonAsync<T>())!;
    }
}

// The parts of the answers used here; property names match the JSON's camelCase case-insensitively.
internal sealed record Prediction(int Index, string Label, float Probability);

internal sealed record Classification(List<Prediction> Predictions);

internal sealed record AttackResult(string Attack, bool Success, Prediction Original, Prediction Adversarial, float Linf);

internal sealed record Model(string Name, List<string> Labels);

internal sealed record InferenceOutput(string Name, List<long> Shape, string Datatype, List<int> Data);

internal sealed record InferenceResponse(List<InferenceOutput> Outputs);

internal sealed record Problem(string? Title, string? Detail);
