using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using StrapVit.Core.Gradients;

namespace StrapVit.Core.Tests.Gradients;

/// <summary>Hand-built forward graphs <c>pixels [N, C, H, W] -> logits [N, K]</c> for op-level gradient tests.</summary>
internal sealed class TinyGraph
{
    private readonly ModelProto model;
    private readonly Random rng = new(7);
    private int counter;

    public TinyGraph(int opset, long channels, long height, long width)
    {
        model = new ModelProto { IrVersion = 8, ProducerName = "strapvit-tests", Graph = new GraphProto { Name = "tiny" } };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        model.Graph.Input.Add(OnnxProto.TensorInfo(Input, OnnxProto.Float, ["N", channels, height, width]));
        SampleDims = [channels, height, width];
    }

    public const string Input = "x";

    public long[] SampleDims { get; }

    public GraphProto Graph => model.Graph;

    public string Op(string op, string[] inputs, params AttributeProto[] attributes) => Ops(op, inputs, 1, attributes)[0];

    public string[] Ops(string op, string[] inputs, int outputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = $"{op.ToLowerInvariant()}_{counter++}" };
        node.Input.AddRange(inputs);
        for (var i = 0; i < outputs; i++) node.Output.Add($"{node.Name}_out{i}");
        node.Attribute.AddRange(attributes);
        model.Graph.Node.Add(node);
        return node.Output.ToArray();
    }

    /// <summary>A float initializer with values drawn from N(0, scale²) (or the given values).</summary>
    public string Weight(long[] dims, float scale = 0.5f, float[]? values = null)
    {
        var count = (int)dims.Aggregate(1L, (a, b) => a * b);
        values ??= Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale * 1.7f).ToArray();
        var name = $"w{counter++}";
        model.Graph.Initializer.Add(OnnxProto.FloatTensor(name, dims, values));
        return name;
    }

    public string Ints(params long[] values)
    {
        var name = $"i{counter++}";
        model.Graph.Initializer.Add(OnnxProto.Int64Tensor(name, [values.Length], values));
        return name;
    }

    public string ScalarInt(long value)
    {
        var name = $"s{counter++}";
        model.Graph.Initializer.Add(OnnxProto.Int64Tensor(name, [], [value]));
        return name;
    }

    public ModelProto Finish(string logits, long classes)
    {
        model.Graph.Output.Add(OnnxProto.TensorInfo(logits, OnnxProto.Float, ["N", classes]));
        return model;
    }

    /// <summary>Runs a forward-only model (input <see cref="Input"/> or pixel_values) on CPU and returns its single output.</summary>
    public static float[] RunForward(InferenceSession session, float[] pixels, long[] shape)
    {
        using var value = OrtValue.CreateTensorValueFromMemory(pixels, shape);
        using var options = new RunOptions();
        var input = session.InputMetadata.Keys.Single();
        using var results = session.Run(options, [input], [value], [session.OutputMetadata.Keys.First()]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public static InferenceSession CpuSession(ModelProto model)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2 };
        return new InferenceSession(model.ToByteArray(), options);
    }
}
