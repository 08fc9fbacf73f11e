using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Core.Tests.Gradients;

/// <summary>The produced graphs use only standard ONNX ops, load in a plain CPU session, keep N symbolic, and
/// carry exactly the contract's input and output names.</summary>
public sealed class GraphStructureTests
{
    public static TheoryData<string, GradientObjective> Packages()
    {
        var data = new TheoryData<string, GradientObjective>();
        foreach (var objective in Enum.GetValues<GradientObjective>())
        {
            data.Add(GradientTestData.FixtureDir("torchvision_op17"), objective);
            data.Add(GradientTestData.FixtureDir("c3_mean_tanh_op14"), objective);
            if (GradientTestData.EmbeddedModelExists) data.Add(GradientTestData.EmbeddedModelDir, objective);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Packages))]
    public void Graph_is_standard_onnx_and_loads_in_a_plain_cpu_session(string packageDir, GradientObjective objective)
    {
        var package = ModelPackage.Load(packageDir);
        var forward = ForwardGraph.LoadNormalized(package);
        var model = new GradientGraphBuilder().Build(forward, objective);

        Assert.All(model.Graph.Node, n => Assert.True(OnnxProto.IsDefaultDomain(n.Domain), $"node {n.Name} ({n.OpType}) is in domain '{n.Domain}'"));
        Assert.DoesNotContain(model.Graph.Node, n => n.OpType.EndsWith("Grad", StringComparison.Ordinal));
        Assert.All(model.OpsetImport, o => Assert.True(OnnxProto.IsDefaultDomain(o.Domain), $"imports domain '{o.Domain}'"));
        Assert.Equal(forward.OpsetImport.Single().Version, model.OpsetImport.Single().Version);

        string[] inputs = objective == GradientObjective.CrossEntropy ? ["pixel_values", "labels"] : ["pixel_values", "logits_grad"];
        string[] outputs = objective == GradientObjective.CrossEntropy ? ["logits", "loss", "pixel_grad"] : ["logits", "pixel_grad"];
        Assert.Equal(inputs, model.Graph.Input.Select(i => i.Name));
        Assert.Equal(outputs, model.Graph.Output.Select(o => o.Name));
        Assert.All(model.Graph.Input.Concat(model.Graph.Output), v => Assert.False(string.IsNullOrEmpty(v.Type.TensorType.Shape.Dim[0].DimParam)));

        using var session = new InferenceSession(model.ToByteArray());
        Assert.Equal(-1, session.InputMetadata["pixel_values"].Dimensions[0]);
        Assert.Equal([-1, package.Manifest.Input.Channels, package.Manifest.Input.Height, package.Manifest.Input.Width], session.OutputMetadata["pixel_grad"].Dimensions);
    }

    [Fact]
    public void Batch_size_is_symbolic_and_samples_are_independent()
    {
        using var runner = GradientTestData.CreateRunner(GradientTestData.FixtureDir("c1_cls_erf_op17"));
        const int batch = 5;
        var rng = new Random(3);
        var pixels = Enumerable.Range(0, batch * runner.SampleSize).Select(_ => (float)rng.NextDouble()).ToArray();
        long[] labels = [0, 1, 2, 3, 4];
        var all = runner.CrossEntropy(pixels, labels, batch);
        for (var i = 0; i < batch; i++)
        {
            var one = runner.CrossEntropy(pixels.AsSpan(i * runner.SampleSize, runner.SampleSize), labels.AsSpan(i, 1), 1);
            Assert.True(GradientTestData.RelativeError(one.PixelGrad, all.PixelGradOf(i).ToArray()) < 1e-5);
            Assert.Equal(one.Loss![0], all.Loss![i], 5);
        }
    }

    [Fact]
    public void Reserved_names_inside_the_forward_graph_are_moved_out_of_the_way()
    {
        // input called "logits", an internal tensor called "pixel_grad", output called "loss"
        var t = new TinyGraph(17, 1, 2, 2);
        var inner = t.Op("Flatten", [TinyGraph.Input], OnnxProto.IntAttr("axis", 1));
        var output = t.Op("MatMul", [t.Op("Tanh", [inner]), t.Weight([4, 3])]);
        var model = t.Finish(output, 3);
        OnnxProto.Rename(model.Graph, TinyGraph.Input, "logits");
        OnnxProto.Rename(model.Graph, inner, "pixel_grad");
        OnnxProto.Rename(model.Graph, output, "loss");

        var error = GradientCheck.WorstDirectionalError(model, t.SampleDims, batch: 2, directions: 2, step: 1e-2f, seed: 5);
        Assert.True(error < 1e-2, $"directional error {error:E2}");
    }
}
