using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Inference;

public sealed class ClassifierTests
{
    private static VitClassifier Load(string dir) => new(
        ModelPackage.Load(dir),
        new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance),
        new InferenceOptions { Device = InferenceDevice.Cpu, MaxBatchSize = 2 });

    [Fact]
    public void Baked_normalization_reproduces_torch_logits_of_an_rgb_package_with_other_names()
    {
        var dir = RepoPaths.Fixture("models", "rgb-vit-32");
        using var classifier = Load(dir);
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json"))).RootElement;
        var images = reference.GetProperty("images").EnumerateArray().ToArray();
        var pixels = images.SelectMany(i => i.GetProperty("pixels").EnumerateArray().Select(v => v.GetSingle())).ToArray();
        var expected = images.SelectMany(i => i.GetProperty("logits").EnumerateArray().Select(v => v.GetSingle())).ToArray();

        // Three images with MaxBatchSize 2 also exercises the chunking.
        var logits = classifier.Logits(pixels, images.Length);

        Assert.Equal(expected.Length, logits.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - logits[i]) <= 1e-4f * Math.Max(1f, Math.Abs(expected[i])), $"logit {i}: {logits[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void Ranking_is_sorted_and_labelled()
    {
        using var classifier = Load(RepoPaths.Fixture("models", "rgb-vit-32"));
        var logits = new float[] { 0.5f, 3f, -1f, 2f, 0f };

        var ranked = classifier.Rank(logits, 3);

        Assert.Equal([1, 3, 0], ranked.Select(p => p.Index));
        Assert.Equal(classifier.Manifest.Labels[1], ranked[0].Label);
        Assert.True(ranked[0].Probability > ranked[1].Probability);
    }

    [Fact]
    public void Auto_device_falls_back_or_uses_cuda_and_reports_which()
    {
        var factory = new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Auto }, NullLogger<OnnxSessionFactory>.Instance);
        using var classifier = new VitClassifier(ModelPackage.Load(RepoPaths.Fixture("models", "rgb-vit-32")), factory, new InferenceOptions());

        Assert.Contains(classifier.ExecutionProvider, new[] { OnnxSessionFactory.Cpu, OnnxSessionFactory.Cuda });
    }

    [Fact]
    public void A_package_whose_input_is_already_named_pixel_values_still_loads()
    {
        // Hugging Face exports call their input pixel_values, the name the baked graph itself uses.
        var source = RepoPaths.Fixture("models", "rgb-vit-32");
        var dir = Directory.CreateTempSubdirectory("strapvit-hf-");
        try
        {
            var model = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(source, "model.onnx")));
            foreach (var node in model.Graph.Node)
            {
                for (var i = 0; i < node.Input.Count; i++)
                {
                    if (node.Input[i] == "pixels_in") node.Input[i] = "pixel_values";
                }
            }

            model.Graph.Input[0].Name = "pixel_values";
            File.WriteAllBytes(Path.Combine(dir.FullName, "model.onnx"), Google.Protobuf.MessageExtensions.ToByteArray(model));
            File.WriteAllText(Path.Combine(dir.FullName, "model.json"),
                File.ReadAllText(Path.Combine(source, "model.json")).Replace("\"pixels_in\"", "\"pixel_values\"", StringComparison.Ordinal));
            using var renamed = Load(dir.FullName);
            using var original = Load(source);
            var x = Enumerable.Range(0, 3 * 32 * 32).Select(i => (i % 17) / 17f).ToArray();

            Assert.Equal(original.Logits(x, 1), renamed.Logits(x, 1));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
