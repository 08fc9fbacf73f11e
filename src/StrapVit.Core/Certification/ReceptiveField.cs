using Onnx;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Core.Certification;

/// <summary>
/// The pixels one patch token depends on, along one axis: token <c>j</c> (0-based on the patch grid) reads pixels
/// <c>[j·Stride + Offset, j·Stride + Offset + Size − 1]</c> (clipped to the image). A plain ViT patchify conv gives
/// Size = Stride = patch, Offset = 0; the default model's 3x3 stem (padding 1) before its 4x4/stride-4 conv gives
/// Size 6, Offset −1.
/// </summary>
public sealed record AxisReceptiveField(int Offset, int Size, int Stride)
{
    /// <summary>First and last token on a grid of <paramref name="tokens"/> whose receptive field meets pixels [<paramref name="start"/>, <paramref name="end"/>]; (1, 0) when none.</summary>
    public (int First, int Last) TokensTouching(int start, int end, int tokens)
    {
        // Token j meets the range iff j·S + O <= end and j·S + O + R − 1 >= start.
        var first = Math.Max(0, CeilDiv(start - Offset - Size + 1, Stride));
        var last = Math.Min(tokens - 1, FloorDiv(end - Offset, Stride));
        return first <= last ? (first, last) : (1, 0);
    }

    private static int FloorDiv(int a, int b) => (int)Math.Floor(a / (double)b);

    private static int CeilDiv(int a, int b) => (int)Math.Ceiling(a / (double)b);
}

/// <summary>A patch token's receptive field on both axes.</summary>
public sealed record ReceptiveField(AxisReceptiveField Rows, AxisReceptiveField Cols)
{
    /// <summary>The field of a plain ViT: each token sees exactly its own patch.</summary>
    public static ReceptiveField OfPatch(int patchSize) => new(new(0, patchSize, patchSize), new(0, patchSize, patchSize));

    /// <summary>
    /// Derives the field from the embedding half of a split model (<see cref="TokenGraphSplitter"/>): composes the
    /// kernel, stride, padding and dilation of every Conv and pooling node on the path from the pixels to the
    /// tokens. Pointwise ops (normalization, activations, BatchNorm, the position-embedding Add) keep the field;
    /// Reshape/Transpose/Flatten/Concat lay the last feature map out as the token sequence (row-major, as the
    /// patch grid is read everywhere else). Anything that mixes positions makes the derivation fail: a certificate
    /// built on a guessed field would be unsound.
    /// </summary>
    /// <exception cref="ModelPackageException">The path holds an op whose spatial reach is unknown, or the composed stride is not the manifest's patch size.</exception>
    public static ReceptiveField Derive(ModelProto embedding, int patchSize)
    {
        var graph = embedding.Graph;
        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var fields = new Dictionary<string, (AxisReceptiveField Rows, AxisReceptiveField Cols)>(StringComparer.Ordinal)
        {
            [ForwardGraph.PixelInput] = (new(0, 1, 1), new(0, 1, 1)),
        };

        foreach (var node in graph.Node)
        {
            var dataInputs = node.Input.Where(fields.ContainsKey).ToList();
            if (dataInputs.Count == 0 || node.OpType is "Shape" or "Size")
            {
                // Constants, weights, and shape arithmetic: no pixel values flow through them.
                continue;
            }

            (AxisReceptiveField Rows, AxisReceptiveField Cols) output;
            if (node.OpType is "Conv" or "MaxPool" or "AveragePool" or "LpPool")
            {
                if (node.Input[0] != dataInputs[0] || dataInputs.Count > 1)
                {
                    throw Unsupported(node, "its weights depend on the pixels");
                }

                var (kernel, strides, padBegin, dilations) = Window(node, initializers);
                var input = fields[node.Input[0]];
                output = (Compose(input.Rows, kernel[0], strides[0], padBegin[0], dilations[0]),
                    Compose(input.Cols, kernel[1], strides[1], padBegin[1], dilations[1]));
            }
            else if (Pointwise.Contains(node.OpType) || Layout.Contains(node.OpType))
            {
                output = Merge(node, dataInputs.Select(i => fields[i]).ToList());
            }
            else
            {
                throw Unsupported(node, "it may mix pixels across positions");
            }

            foreach (var o in node.Output)
            {
                fields[o] = output;
            }
        }

        if (!fields.TryGetValue(TokenGraphSplitter.TokensName, out var tokens))
        {
            throw new ModelPackageException("The embedding graph's tokens do not depend on the pixels; no receptive field to derive.");
        }

        if (tokens.Rows.Stride != patchSize || tokens.Cols.Stride != patchSize)
        {
            throw new ModelPackageException(
                $"The embedding's Conv/pooling strides compose to {tokens.Rows.Stride}x{tokens.Cols.Stride} pixels per token, not the manifest's patchSize {patchSize}; the token grid cannot be mapped to pixels.");
        }

        return new ReceptiveField(tokens.Rows, tokens.Cols);
    }

    private static readonly HashSet<string> Pointwise = new(StringComparer.Ordinal)
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Neg", "Abs", "Exp", "Log", "Erf", "Tanh", "Sigmoid", "Relu", "LeakyRelu",
        "Elu", "Selu", "Gelu", "HardSigmoid", "HardSwish", "Softplus", "Mish", "Clip", "Min", "Max", "Identity", "Cast",
        "BatchNormalization", "Dropout", "Where", "PRelu",
    };

    // Ops that only lay a feature map out as a sequence or prepend a class token. LayerNormalization normalizes each
    // token over its channels (the last axis) once the map is a sequence.
    private static readonly HashSet<string> Layout = new(StringComparer.Ordinal)
    {
        "Reshape", "Transpose", "Flatten", "Concat", "Unsqueeze", "Squeeze", "Expand", "LayerNormalization",
    };

    private static AxisReceptiveField Compose(AxisReceptiveField input, int kernel, int stride, int padBegin, int dilation) =>
        new(input.Offset - (padBegin * input.Stride), input.Size + ((kernel - 1) * dilation * input.Stride), input.Stride * stride);

    private static (AxisReceptiveField, AxisReceptiveField) Merge(NodeProto node, List<(AxisReceptiveField Rows, AxisReceptiveField Cols)> inputs)
    {
        if (inputs.Count == 1)
        {
            return inputs[0];
        }

        return (MergeAxis(node, inputs.Select(i => i.Rows)), MergeAxis(node, inputs.Select(i => i.Cols)));
    }

    private static AxisReceptiveField MergeAxis(NodeProto node, IEnumerable<AxisReceptiveField> axes)
    {
        var list = axes.ToList();
        if (list.Any(a => a.Stride != list[0].Stride))
        {
            throw Unsupported(node, "it combines feature maps of different strides");
        }

        // A residual branch: the union of the fields.
        var start = list.Min(a => a.Offset);
        var end = list.Max(a => a.Offset + a.Size);
        return new AxisReceptiveField(start, end - start, list[0].Stride);
    }

    private static (int[] Kernel, int[] Strides, int[] PadBegin, int[] Dilations) Window(NodeProto node, Dictionary<string, TensorProto> initializers)
    {
        var attributes = node.Attribute.ToDictionary(a => a.Name, StringComparer.Ordinal);
        if (attributes.TryGetValue("auto_pad", out var autoPad) && autoPad.S.ToStringUtf8() is var mode && mode is not ("" or "NOTSET" or "VALID"))
        {
            throw Unsupported(node, $"auto_pad {mode} pads by the input size");
        }

        int[]? kernel = attributes.TryGetValue("kernel_shape", out var k) ? k.Ints.Select(v => (int)v).ToArray() : null;
        if (kernel is null && node.OpType == "Conv" && node.Input.Count > 1 && initializers.TryGetValue(node.Input[1], out var weight) && weight.Dims.Count == 4)
        {
            kernel = [(int)weight.Dims[2], (int)weight.Dims[3]];
        }

        if (kernel is not { Length: 2 })
        {
            throw Unsupported(node, "its kernel is not a 2-D kernel_shape attribute or a 4-D weight initializer");
        }

        var strides = attributes.TryGetValue("strides", out var s) ? s.Ints.Select(v => (int)v).ToArray() : [1, 1];
        var pads = attributes.TryGetValue("pads", out var p) ? p.Ints.Select(v => (int)v).ToArray() : [0, 0, 0, 0];
        var dilations = attributes.TryGetValue("dilations", out var d) ? d.Ints.Select(v => (int)v).ToArray() : [1, 1];
        return (kernel, strides, [pads[0], pads[1]], dilations);
    }

    private static ModelPackageException Unsupported(NodeProto node, string why) =>
        new($"Cannot derive the tokens' receptive field: node '{node.Name}' ({node.OpType}) lies between the pixels and the tokens and {why}.");
}
