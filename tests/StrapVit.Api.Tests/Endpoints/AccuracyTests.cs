using System.Text.Json;
using Xunit.Abstractions;
using StrapVit.Api.Tests.Support;
using StrapVit.Core.Datasets;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Endpoints;

/// <summary>The served model, measured through HTTP, matches what PyTorch measured on the same images.</summary>
public sealed class AccuracyTests(ServiceFactory factory, ITestOutputHelper output) : IClassFixture<ServiceFactory>
{
    private readonly HttpClient _client = factory.CreateClient();

    [Fact]
    public async Task Accuracy_over_http_on_the_shipped_test_images_matches_the_training_scripts_figure()
    {
        var dir = RepoPaths.Sample("fashion-mnist");
        var set = IdxDataset.Load(Path.Combine(dir, "test-1000-images-idx3-ubyte.gz"), Path.Combine(dir, "test-1000-labels-idx1-ubyte.gz"));
        var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(RepoPaths.Root, "models", "fashion-vit-tiny", "metrics.json"))).RootElement;
        var torchAccuracy = metrics.GetProperty("test_accuracy_first_1000").GetDouble();
        var cardAccuracy = metrics.GetProperty("test_accuracy_10000").GetDouble();

        var correct = 0;
        for (var i = 0; i < set.Count; i++)
        {
            var png = TestImages.PngFromTensor(set.Image(i).Data, 1, 28, 28);
            using var response = await _client.PostAsync("/v1/classify?topK=1&defense=off", Http.Raw(png, "image/png"));
            var top = (await response.JsonAsync()).GetProperty("predictions")[0].GetProperty("index").GetInt32();
            correct += top == set.Labels[i] ? 1 : 0;
        }

        var accuracy = correct / (double)set.Count;
        output.WriteLine($"HTTP: {correct}/{set.Count} = {accuracy:P2}; torch on the same images {torchAccuracy:P2}; model card (10,000 images) {cardAccuracy:P2}");
        // Same pixels (the PNGs are lossless), same weights: only float rounding may flip a near-tie.
        Assert.InRange(accuracy, torchAccuracy - 0.003, torchAccuracy + 0.003);
        // And the model card's figure on all 10,000 test images within two standard errors of a 1,000-image sample
        // (sqrt(0.9 x 0.1 / 1000) is about 0.95 points): the first 1,000 are a sample of the same test set.
        var standardError = Math.Sqrt(cardAccuracy * (1 - cardAccuracy) / set.Count);
        Assert.InRange(accuracy, cardAccuracy - (2 * standardError), cardAccuracy + (2 * standardError));
    }
}
