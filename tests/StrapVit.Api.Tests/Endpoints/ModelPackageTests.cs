using System.Text.Json;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Endpoints;

/// <summary>Bringing another model package through <c>Model:Path</c>, and refusing a broken one.</summary>
public sealed class ModelPackageTests
{
    private static readonly string RgbPackage = RepoPaths.Fixture("models", "rgb-vit-32");

    [Fact]
    public async Task An_rgb_package_of_another_size_loads_and_matches_torch_logits()
    {
        await using var factory = new ServiceFactory(new Dictionary<string, string?> { ["Model:Path"] = RgbPackage });
        using var client = factory.CreateClient();
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(RgbPackage, "reference.json"))).RootElement;
        var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(RgbPackage, "model.json"))).RootElement;
        var labels = manifest.GetProperty("labels").EnumerateArray().Select(l => l.GetString()).ToArray();

        var model = await (await client.GetAsync("/v1/model")).JsonAsync();
        Assert.Equal(3, model.GetProperty("input").GetProperty("channels").GetInt32());
        Assert.Equal(32, model.GetProperty("input").GetProperty("height").GetInt32());
        Assert.Equal(8, model.GetProperty("patchSize").GetInt32());

        foreach (var sample in reference.GetProperty("images").EnumerateArray())
        {
            var pixels = sample.GetProperty("pixels").EnumerateArray().Select(v => v.GetSingle()).ToArray();
            var logits = sample.GetProperty("logits").EnumerateArray().Select(v => v.GetSingle()).ToArray();
            var png = TestImages.PngFromTensor(pixels, 3, 32, 32);
            using var response = await client.PostAsync($"/v1/classify?topK={labels.Length}", Http.Multipart(png));
            var predictions = (await response.JsonAsync()).GetProperty("predictions").EnumerateArray().ToArray();

            var expectedTop = Array.IndexOf(logits, logits.Max());
            Assert.Equal(labels[expectedTop], predictions[0].GetProperty("label").GetString());
            Assert.Equal(labels.Length, predictions.Length);
        }
    }

    [Theory]
    [InlineData("{ not json", "model.json")]
    [InlineData("""{"name":"x","input":{"name":"input","channels":2,"height":28,"width":28,"mean":[0,0],"std":[1,1]},"output":"logits","labels":["a","b"],"patchSize":4}""", "channels")]
    [InlineData("""{"name":"x","input":{"name":"input","channels":1,"height":28,"width":28,"mean":[0],"std":[0]},"output":"logits","labels":["a","b"],"patchSize":4}""", "std")]
    [InlineData("""{"name":"x","input":{"name":"wrong","channels":1,"height":28,"width":28,"mean":[0.2],"std":[0.3]},"output":"logits","labels":["a","b"],"patchSize":4}""", "input named 'wrong'")]
    [InlineData("""{"name":"x","input":{"name":"input","channels":1,"height":28,"width":28,"mean":[0.2],"std":[0.3]},"output":"logits","labels":["a","b"],"patchSize":4}""", "labels")]
    public void A_broken_package_fails_start_up_with_a_one_line_reason(string manifest, string expected)
    {
        var dir = Directory.CreateTempSubdirectory("strapvit-broken-");
        try
        {
            File.Copy(Path.Combine(RepoPaths.Root, "models", "fashion-vit-tiny", "model.onnx"), Path.Combine(dir.FullName, "model.onnx"));
            File.WriteAllText(Path.Combine(dir.FullName, "model.json"), manifest);
            using var factory = new ServiceFactory(new Dictionary<string, string?> { ["Model:Path"] = dir.FullName });

            var ex = Assert.ThrowsAny<Exception>(() => factory.CreateClient());

            var reason = Unwrap(ex).Message;
            Assert.Contains(expected, reason, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', reason);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void A_missing_package_directory_fails_start_up()
    {
        using var factory = new ServiceFactory(new Dictionary<string, string?> { ["Model:Path"] = "/nonexistent/strapvit-model" });

        var ex = Assert.ThrowsAny<Exception>(() => factory.CreateClient());

        Assert.Contains("Model:Path", Unwrap(ex).Message, StringComparison.Ordinal);
    }

    private static Exception Unwrap(Exception ex)
    {
        while (ex is AggregateException { InnerException: { } inner })
        {
            ex = inner;
        }

        return ex;
    }
}
