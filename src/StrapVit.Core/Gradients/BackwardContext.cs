using Onnx;

namespace StrapVit.Core.Gradients;

/// <summary>Emits the backward nodes for one forward node: <paramref name="outputGrads"/>[i] is the cotangent of
/// <c>node.Output[i]</c> (null when nothing flows back into that output).</summary>
internal delegate void GradientRule(NodeProto node, string?[] outputGrads, BackwardContext ctx);

/// <summary>
/// What a gradient rule works with: the probed facts of the forward tensors, a way to append nodes and constants
/// to the graph, and the cotangent accumulator. Nodes are appended in emission order, which is topological because
/// a rule only reads forward tensors and cotangents that already exist.
/// </summary>
internal sealed class BackwardContext
{
    private readonly GraphProto graph;
    private readonly IReadOnlyDictionary<string, ProbedTensor> probed;
    private readonly IReadOnlySet<string> differentiable;
    private readonly Dictionary<string, TensorProto> constantNodes;
    private readonly HashSet<string> usedNames;
    private readonly Dictionary<string, List<string>> contributions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<Piece>> pieces = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> constantCache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> shapeCache = new(StringComparer.Ordinal);
    private int counter;

    public BackwardContext(GraphProto graph, IReadOnlyDictionary<string, ProbedTensor> probed, IReadOnlySet<string> differentiable, long opset)
    {
        this.graph = graph;
        this.probed = probed;
        this.differentiable = differentiable;
        Opset = opset;
        constantNodes = graph.Node.Where(n => n.OpType == "Constant" && OnnxProto.IsDefaultDomain(n.Domain) && n.Output.Count == 1)
            .Select(n => (n.Output[0], Value: OnnxProto.ConstantValue(n)))
            .Where(p => p.Value is not null)
            .ToDictionary(p => p.Item1, p => p.Value!, StringComparer.Ordinal);
        usedNames = graph.Node.SelectMany(n => n.Output.Concat(n.Input).Append(n.Name))
            .Concat(graph.Input.Select(i => i.Name)).Concat(graph.Output.Select(o => o.Name))
            .Concat(graph.Initializer.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Default-domain opset of the model: rules only emit ops valid at this version.</summary>
    public long Opset { get; }

    /// <summary>The forward node whose rule is running (for error messages and node names).</summary>
    public NodeProto? Current { get; set; }

    public bool IsDiff(string tensor) => tensor.Length > 0 && differentiable.Contains(tensor);

    public Dims DimsOf(string tensor) =>
        probed.TryGetValue(tensor, out var p) ? p.Dims : throw Fail($"the shape of tensor '{tensor}' is unknown");

    /// <summary>Integer contents of a constant input (initializer, Constant node or batch-independent computed value).</summary>
    public long[] IntsOf(string tensor, string what)
    {
        if (constantNodes.TryGetValue(tensor, out var c) && OnnxProto.ReadInts(c) is { } fromConstant) return fromConstant;
        if (IsDiff(tensor)) throw Fail($"its {what} input '{tensor}' depends on the pixels");
        if (!probed.TryGetValue(tensor, out var p) || p.Ints is null) throw Fail($"its {what} input '{tensor}' is not a known integer tensor");
        if (p.ValuesDependOnBatch) throw Fail($"its {what} input '{tensor}' changes with the batch size");
        return p.Ints;
    }

    /// <summary>Float contents of a small constant input (e.g. a Pow exponent).</summary>
    public float[] FloatsOf(string tensor, string what)
    {
        if (constantNodes.TryGetValue(tensor, out var c) && OnnxProto.ReadFloats(c) is { } fromConstant) return fromConstant;
        if (IsDiff(tensor)) throw Fail($"its {what} input '{tensor}' depends on the pixels");
        if (probed.TryGetValue(tensor, out var p) && p.Floats is not null) return p.Floats;
        if (probed.TryGetValue(tensor, out p) && p.Ints is not null && !p.ValuesDependOnBatch) return p.Ints.Select(v => (float)v).ToArray();
        throw Fail($"its {what} input '{tensor}' is not a known constant");
    }

    public GradientGraphException Fail(string reason) => Fail(Current, reason);

    public static GradientGraphException Fail(NodeProto? node, string reason)
    {
        if (node is null) return new GradientGraphException(reason);
        var label = OnnxProto.Label(node);
        return new GradientGraphException($"Cannot differentiate {node.OpType} node '{label}': {reason}.") { OpType = node.OpType, NodeName = label };
    }

    // ---- cotangent accumulation ----

    public void Accumulate(string tensor, string grad)
    {
        if (!IsDiff(tensor)) return;
        if (!contributions.TryGetValue(tensor, out var list))
        {
            contributions[tensor] = list = [];
        }

        list.Add(grad);
    }

    /// <summary>
    /// A contribution that covers only <c>[start, start + length)</c> of <paramref name="tensor"/> along
    /// <paramref name="axis"/> (Gather of one index, Slice, chunk). When the pieces of a tensor tile that axis, as
    /// q/k/v picked from one fused projection do, they are joined with one Concat instead of zero-padding each to
    /// full size and summing.
    /// </summary>
    public void AccumulatePiece(string tensor, string grad, int axis, long start, long length)
    {
        if (!IsDiff(tensor)) return;
        if (!pieces.TryGetValue(tensor, out var list))
        {
            pieces[tensor] = list = [];
        }

        list.Add(new Piece(grad, axis, start, length));
    }

    /// <summary>The total cotangent of a tensor: its only contribution, or one Sum of all of them.</summary>
    public string? Finalize(string tensor)
    {
        if (pieces.Remove(tensor, out var parts)) JoinPieces(tensor, parts);
        if (!contributions.TryGetValue(tensor, out var list) || list.Count == 0) return null;
        if (list.Count == 1) return list[0];
        var sum = Emit("Sum", list);
        contributions[tensor] = [sum];
        return sum;
    }

    private sealed record Piece(string Grad, int Axis, long Start, long Length);

    private void JoinPieces(string tensor, List<Piece> parts)
    {
        var dims = DimsOf(tensor);
        var sorted = parts.OrderBy(p => p.Start).ToList();
        var axis = sorted[0].Axis;
        var tiles = sorted.All(p => p.Axis == axis) && sorted[0].Start == 0 && sorted[^1].Start + sorted[^1].Length == dims.AtA[axis]
            && sorted.Zip(sorted.Skip(1)).All(pair => pair.First.Start + pair.First.Length == pair.Second.Start);
        if (tiles)
        {
            Accumulate(tensor, sorted.Count == 1 ? sorted[0].Grad : Emit("Concat", sorted.Select(p => p.Grad), OnnxProto.IntAttr("axis", axis)));
            return;
        }

        foreach (var p in parts)
        {
            var pads = new long[2 * dims.Rank];
            pads[p.Axis] = p.Start;
            pads[dims.Rank + p.Axis] = dims.AtA[p.Axis] - p.Start - p.Length;
            Accumulate(tensor, Pad(p.Grad, pads));
        }
    }

    // ---- emission ----

    public string Emit(string op, IEnumerable<string> inputs, params AttributeProto[] attributes) =>
        EmitMany(op, inputs, 1, attributes)[0];

    public string[] EmitMany(string op, IEnumerable<string> inputs, int outputs, params AttributeProto[] attributes)
    {
        var stem = Current is null ? "grad" : $"grad/{OnnxProto.Label(Current)}";
        var node = new NodeProto { OpType = op, Name = Fresh($"{stem}/{op}") };
        node.Input.AddRange(inputs);
        for (var i = 0; i < outputs; i++)
        {
            node.Output.Add(Fresh($"{stem}/{op}_out{i}"));
        }

        node.Attribute.AddRange(attributes);
        graph.Node.Add(node);
        return node.Output.ToArray();
    }

    /// <summary>Emits a node whose single output gets the fixed name <paramref name="output"/> (graph outputs).</summary>
    public void EmitTo(string output, string op, IEnumerable<string> inputs, params AttributeProto[] attributes)
    {
        Emit(op, inputs, attributes);
        graph.Node[^1].Output[0] = output;
    }

    public string Fresh(string stem)
    {
        string name;
        do
        {
            name = $"{stem}_{counter++}";
        }
        while (!usedNames.Add(name));
        return name;
    }

    public string Scalar(float value) => Constant($"f:{value:R}", () => OnnxProto.FloatTensor("", [], [value]));

    public string Int64s(params long[] values) =>
        Constant("i:" + string.Join(',', values), () => OnnxProto.Int64Tensor("", [values.Length], values));

    public string FloatConstant(long[] dims, float[] values) =>
        AddInitializer(OnnxProto.FloatTensor("", dims, values));

    private string Constant(string key, Func<TensorProto> make)
    {
        if (constantCache.TryGetValue(key, out var name)) return name;
        name = AddInitializer(make());
        constantCache[key] = name;
        return name;
    }

    private string AddInitializer(TensorProto tensor)
    {
        tensor.Name = Fresh("grad/const");
        graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    // ---- shape helpers ----

    /// <summary>The shape of a forward tensor as an int64 tensor: a constant when it has no batch dim.</summary>
    public string ShapeOf(string tensor)
    {
        var dims = DimsOf(tensor);
        if (!dims.HasBatchDim) return Int64s(dims.AtA);
        if (shapeCache.TryGetValue(tensor, out var name)) return name;
        return shapeCache[tensor] = Emit("Shape", [tensor]);
    }

    /// <summary>Reshapes <paramref name="g"/> to <paramref name="target"/>: a constant target (-1 for the batch dim)
    /// when at most one dim scales with N, else the runtime shape of <paramref name="like"/>.</summary>
    public string ReshapeTo(string g, Dims target, string? like)
    {
        if (target.BatchDimCount <= 1) return Emit("Reshape", [g, Int64s(target.ReshapeTarget())]);
        if (like is null) throw Fail($"a cotangent must be reshaped to {target}, which has several batch-sized dims");
        return Emit("Reshape", [g, ShapeOf(like)]);
    }

    /// <summary>
    /// Undoes numpy broadcasting: sums <paramref name="g"/> (dims <paramref name="from"/>) over the leading axes the
    /// operand lacked and over the axes where the operand had size 1, then reshapes it to the operand's dims.
    /// </summary>
    public string ReduceTo(string g, Dims from, Dims to, string? like)
    {
        var lead = from.Rank - to.Rank;
        if (lead < 0) throw Fail($"cannot reduce a cotangent of shape {from} to the larger shape {to}");
        var axes = new List<long>();
        for (var i = 0; i < from.Rank; i++)
        {
            if (i < lead)
            {
                axes.Add(i);
                continue;
            }

            var j = i - lead;
            var operandIsOne = to.AtA[j] == 1 && to.AtB[j] == 1;
            var outputIsOne = from.AtA[i] == 1 && from.AtB[i] == 1;
            if (operandIsOne && !outputIsOne) axes.Add(i);
        }

        if (axes.Count == 0) return g;
        var reduced = Emit("ReduceSum", [g, Int64s([.. axes])], OnnxProto.IntAttr("keepdims", 1));
        return lead > 0 ? ReshapeTo(reduced, to, like) : reduced;
    }

    /// <summary>Convenience: reduce a cotangent shaped like forward tensor <paramref name="output"/> to operand <paramref name="operand"/>.</summary>
    public string ReduceTo(string g, string output, string operand) => ReduceTo(g, DimsOf(output), DimsOf(operand), operand);

    // ---- arithmetic shorthands ----

    public string Mul(string a, string b) => Emit("Mul", [a, b]);

    public string Div(string a, string b) => Emit("Div", [a, b]);

    public string Add(string a, string b) => Emit("Add", [a, b]);

    public string Sub(string a, string b) => Emit("Sub", [a, b]);

    public string Neg(string a) => Emit("Neg", [a]);

    public string Transpose(string a, IEnumerable<long> perm) => Emit("Transpose", [a], OnnxProto.IntsAttr("perm", perm));

    public string ReduceSum(string a, IEnumerable<long> axes, bool keepDims) =>
        Emit("ReduceSum", [a, Int64s([.. axes])], OnnxProto.IntAttr("keepdims", keepDims ? 1 : 0));

    public string Unsqueeze(string a, params long[] axes) => Emit("Unsqueeze", [a, Int64s(axes)]);

    /// <summary>Zero-pads <paramref name="g"/> with ONNX Pad's [begin..., end...] layout.</summary>
    public string Pad(string g, long[] pads) => pads.All(p => p == 0) ? g : Emit("Pad", [g, Int64s(pads)]);

    /// <summary>A tensor of zeros shaped like forward tensor <paramref name="like"/>.</summary>
    public string ZerosLike(string like) => Emit("ConstantOfShape", [ShapeOf(like)],
        OnnxProto.TensorAttr("value", OnnxProto.FloatTensor("value", [1], [0f])));

    public static int NormalizeAxis(long axis, int rank) => (int)(axis < 0 ? axis + rank : axis);
}
