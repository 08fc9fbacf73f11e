using Google.Protobuf;
using Onnx;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;

namespace StrapVit.Core.Onnx;

/// <summary>
/// Builds the forward graph the service actually runs: the package's model with its normalization
/// <c>(x - mean) / std</c> prepended as standard ONNX nodes, so every caller works in [0, 1] pixel space
/// (README, 'Using the API'). Input <see cref="PixelInput"/> <c>[N, C, H, W]</c>, output <see cref="LogitsOutput"/> <c>[N, K]</c>.
/// </summary>
public static class ForwardGraph
{
    public const string PixelInput = "pixel_values";
    public const string LogitsOutput = "logits";

    /// <summary>Parses the package's ONNX, checks it against the manifest and bakes the normalization in.</summary>
    /// <exception cref="ModelPackageException">The graph does not match the manifest.</exception>
    public static ModelProto LoadNormalized(ModelPackage package)
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(package.ReadOnnx());
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new ModelPackageException($"{ModelPackage.OnnxFileName} in '{package.Directory}' is not an ONNX model: {ex.Message}", ex);
        }

        CheckSignature(model, package);
        BakeNormalization(model, package.Manifest);
        return model;
    }

    /// <summary>Serialized form of <see cref="LoadNormalized"/>, ready for an InferenceSession.</summary>
    public static byte[] LoadNormalizedBytes(ModelPackage package) => LoadNormalized(package).ToByteArray();

    private static void CheckSignature(ModelProto model, ModelPackage package)
    {
        var m = package.Manifest;
        var graph = model.Graph ?? throw new ModelPackageException($"{ModelPackage.OnnxFileName} has no graph.");
        var initializers = graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var inputs = graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        if (inputs.Count != 1 || inputs[0].Name != m.Input.Name)
        {
            throw new ModelPackageException(
                $"{ModelPackage.OnnxFileName} must have exactly one input named '{m.Input.Name}' (model.json input.name); it has [{string.Join(", ", inputs.Select(i => i.Name))}].");
        }

        var input = inputs[0];
        if (input.Type?.TensorType is { } tt)
        {
            if (tt.ElemType != (int)TensorProto.Types.DataType.Float)
            {
                throw new ModelPackageException($"Input '{input.Name}' must be float32.");
            }

            var dims = tt.Shape?.Dim;
            if (dims is not null && dims.Count > 0)
            {
                if (dims.Count != 4)
                {
                    throw new ModelPackageException($"Input '{input.Name}' must be rank 4 [N, C, H, W]; it has rank {dims.Count}.");
                }

                long[] expected = [m.Input.Channels, m.Input.Height, m.Input.Width];
                for (var i = 0; i < 3; i++)
                {
                    var d = dims[i + 1];
                    if (d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && d.DimValue != expected[i])
                    {
                        throw new ModelPackageException(
                            $"Input '{input.Name}' has shape [N, {Dim(dims[1])}, {Dim(dims[2])}, {Dim(dims[3])}] but model.json says [N, {m.Input.Channels}, {m.Input.Height}, {m.Input.Width}].");
                    }
                }
            }
        }

        if (graph.Output.Count != 1 || graph.Output[0].Name != m.Output)
        {
            throw new ModelPackageException(
                $"{ModelPackage.OnnxFileName} must have exactly one output named '{m.Output}' (model.json output); it has [{string.Join(", ", graph.Output.Select(o => o.Name))}].");
        }

        static string Dim(TensorShapeProto.Types.Dimension d) =>
            d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue.ToString() : d.DimParam;
    }

    private static void BakeNormalization(ModelProto model, ModelManifest m)
    {
        var graph = model.Graph;
        var original = graph.Input.Single(i => i.Name == m.Input.Name);
        var c = m.Input.Channels;

        var meanName = UniqueName(graph, "strapvit_norm_mean");
        var stdName = UniqueName(graph, "strapvit_norm_std");
        var centered = UniqueName(graph, "strapvit_norm_centered");
        graph.Initializer.Add(FloatTensor(meanName, [1, c, 1, 1], m.Input.Mean));
        graph.Initializer.Add(FloatTensor(stdName, [1, c, 1, 1], m.Input.Std));

        // The original input name becomes an internal tensor fed by the normalization nodes. A model whose input is
        // already called pixel_values (Hugging Face exports) gets its consumers moved to a fresh internal name first.
        var normalized = original.Name;
        if (normalized == PixelInput)
        {
            normalized = UniqueName(graph, "strapvit_normalized_pixels");
            foreach (var node in graph.Node)
            {
                for (var i = 0; i < node.Input.Count; i++)
                {
                    if (node.Input[i] == PixelInput)
                    {
                        node.Input[i] = normalized;
                    }
                }
            }
        }

        var normalize = new[]
        {
            Node("Sub", [PixelInput, meanName], [centered], "strapvit_normalize_sub"),
            Node("Div", [centered, stdName], [normalized], "strapvit_normalize_div"),
        };
        for (var i = normalize.Length - 1; i >= 0; i--)
        {
            graph.Node.Insert(0, normalize[i]);
        }

        var pixelInput = OnnxProto.TensorInfo(PixelInput, OnnxProto.Float, ["N", c, m.Input.Height, m.Input.Width]);
        var index = graph.Input.IndexOf(original);
        graph.Input[index] = pixelInput;

        var output = graph.Output[0];
        if (output.Name != LogitsOutput)
        {
            graph.Node.Add(Node("Identity", [output.Name], [LogitsOutput], "strapvit_logits"));
            graph.Output[0] = new ValueInfoProto
            {
                Name = LogitsOutput,
                Type = output.Type?.Clone() ?? new TypeProto
                {
                    TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float },
                },
            };
        }
    }

    internal static NodeProto Node(string op, string[] inputs, string[] outputs, string name, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        return node;
    }

    internal static TensorProto FloatTensor(string name, long[] dims, IEnumerable<float> values)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        t.FloatData.AddRange(values);
        return t;
    }

    private static string UniqueName(GraphProto graph, string stem)
    {
        var used = graph.Node.SelectMany(n => n.Output).Concat(graph.Initializer.Select(i => i.Name)).Concat(graph.Input.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
        var name = stem;
        for (var i = 1; used.Contains(name); i++)
        {
            name = $"{stem}_{i}";
        }

        return name;
    }
}
