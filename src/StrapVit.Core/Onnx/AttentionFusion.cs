using Onnx;
using StrapVit.Core.Gradients;

namespace StrapVit.Core.Onnx;

/// <summary>
/// Rewrites the multi-head self-attention of a ViT graph exported from PyTorch (a timm-style block:
/// <c>qkv = X·W + b</c>, reshaped to <c>[N, L, 3, H, dh]</c> and permuted to <c>[3, N, H, L, dh]</c>, then
/// <c>softmax(q·s · kᵀ) · v</c> permuted back to <c>[N, L, H·dh]</c>) into ONNX Runtime's fused <c>com.microsoft.Attention</c>
/// operator, which computes the same thing with its own packed kernel instead of some fifteen standard ops whose
/// transposes and splits cost about a quarter of a small model's run time. Inference sessions only: the gradient
/// builder reads the standard-op graph.
/// </summary>
/// <remarks>
/// The match is exact or nothing: every tensor inside the pattern must be used only inside it, the gathers must take
/// q, k and v (indices 0, 1, 2 on the leading axis), the scale must be one constant and the weights must be
/// initializers. A block that differs in any way keeps its standard ops. The fused operator is the same function (it
/// differs by float rounding only; the tests compare logits on the shipped models).
/// </remarks>
public static class AttentionFusion
{
    public const string MicrosoftDomain = "com.microsoft";

    /// <summary>Name suffix of the Attention nodes this pass creates.</summary>
    private const string FusedSuffix = "_strapvit_fused_attention";

    /// <summary>An Attention node this pass created (only num_heads and scale set; q, k and v of equal width).</summary>
    public static bool IsFused(NodeProto node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return node.Domain == MicrosoftDomain && node.OpType == "Attention" && node.Name.EndsWith(FusedSuffix, StringComparison.Ordinal);
    }

    /// <summary>
    /// Fuses the attention blocks of <paramref name="model"/> in place, then, when the answer is read from the class
    /// token, narrows the end of the last block to it (<see cref="ClassTokenReadout"/>). Returns the number of fused blocks.
    /// </summary>
    public static int Optimize(ModelProto model)
    {
        var fused = Fuse(model);
        // Only where the blocks were recognised: there every tensor of the last block is [N, T, D], which the
        // readout's row selection assumes (it has no shapes to check that against).
        if (fused > 0) ClassTokenReadout.Apply(model);
        return fused;
    }

    /// <summary>Fuses every matching attention block of <paramref name="model"/> in place and returns how many it fused.</summary>
    public static int Fuse(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        var fused = 0;
        foreach (var permute in graph.Node.Where(n => n.OpType == "Transpose" && Perm(n) is [2, 0, 3, 1, 4]).ToList())
        {
            if (TryFuse(graph, permute)) fused++;
        }

        if (fused > 0)
        {
            RemoveDeadNodes(graph);
            if (!model.OpsetImport.Any(o => o.Domain == MicrosoftDomain))
            {
                model.OpsetImport.Add(new OperatorSetIdProto { Domain = MicrosoftDomain, Version = 1 });
            }
        }

        return fused;
    }

    /// <summary>
    /// The standard-op attention block around <paramref name="permute"/> (the <c>[2, 0, 3, 1, 4]</c> transpose of the
    /// packed q/k/v), or null when anything differs from the pattern.
    /// </summary>
    internal static AttentionMatch? Match(GraphProto graph, NodeProto permute)
    {
        var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        foreach (var n in graph.Node)
        {
            foreach (var o in n.Output) producers[o] = n;
            foreach (var i in n.Input)
            {
                if (!consumers.TryGetValue(i, out var list)) consumers[i] = list = [];
                list.Add(n);
            }
        }

        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        NodeProto? Producer(string tensor, string op) => producers.TryGetValue(tensor, out var n) && n.OpType == op && OnnxProto.IsDefaultDomain(n.Domain) ? n : null;
        List<NodeProto> Users(string tensor) => consumers.TryGetValue(tensor, out var l) ? l : [];
        NodeProto? OnlyUser(string tensor, string op) => !outputs.Contains(tensor) && Users(tensor) is [var u] && u.OpType == op && OnnxProto.IsDefaultDomain(u.Domain) ? u : null;
        long[]? Ints(string tensor) =>
            initializers.TryGetValue(tensor, out var t) ? OnnxProto.ReadInts(t)
            : Producer(tensor, "Constant") is { } c && OnnxProto.Attr(c, "value") is { } v ? OnnxProto.ReadInts(v.T) : null;
        float[]? Floats(string tensor) =>
            initializers.TryGetValue(tensor, out var t) ? OnnxProto.ReadFloats(t)
            : Producer(tensor, "Constant") is { } c && OnnxProto.Attr(c, "value") is { } v ? OnnxProto.ReadFloats(v.T) : null;

        // qkv = Reshape(Add(b, MatMul(X, W)), [N, L, 3, H, dh])
        if (Producer(permute.Input[0], "Reshape") is not { } reshape || Users(reshape.Output[0]).Count != 1) return null;
        if (Producer(reshape.Input[0], "Add") is not { } biasAdd || Users(biasAdd.Output[0]).Count != 1) return null;
        var (bias, product) = initializers.ContainsKey(biasAdd.Input[0]) ? (biasAdd.Input[0], biasAdd.Input[1]) : (biasAdd.Input[1], biasAdd.Input[0]);
        if (!initializers.TryGetValue(bias, out var biasTensor) || biasTensor.Dims.Count != 1) return null;
        if (Producer(product, "MatMul") is not { } qkv || Users(qkv.Output[0]).Count != 1) return null;
        if (!initializers.TryGetValue(qkv.Input[1], out var weights) || weights.Dims.Count != 2 || weights.Dims[1] != biasTensor.Dims[0] || weights.Dims[1] % 3 != 0) return null;
        var hidden = weights.Dims[1] / 3;
        var heads = HeadsOf(reshape.Input[1], producers, Ints, hidden);
        if (heads is not > 0 || hidden % heads != 0) return null;

        // q, k, v = Gather(qkv, 0 / 1 / 2, axis 0)
        var parts = new NodeProto?[3];
        foreach (var user in Users(permute.Output[0]))
        {
            if (user.OpType != "Gather" || OnnxProto.Int(user, "axis", 0) != 0 || Ints(user.Input[1]) is not [var index] || index is < 0 or > 2 || parts[index] is not null) return null;
            parts[index] = user;
        }

        if (parts.Any(p => p is null) || Users(permute.Output[0]).Count != 3) return null;
        NodeProto q = parts[0]!, k = parts[1]!, v = parts[2]!;

        // scores = MatMul(Mul(q, s), Transpose(k, [0, 1, 3, 2])); out = MatMul(Softmax(scores), v)
        if (OnlyUser(q.Output[0], "Mul") is not { } scale) return null;
        var scaleValue = Floats(scale.Input[0] == q.Output[0] ? scale.Input[1] : scale.Input[0]);
        if (scaleValue is not [var s]) return null;
        if (OnlyUser(k.Output[0], "Transpose") is not { } kT || Perm(kT) is not [0, 1, 3, 2]) return null;
        if (OnlyUser(scale.Output[0], "MatMul") is not { } scores || scores.Input[0] != scale.Output[0] || scores.Input[1] != kT.Output[0]) return null;
        if (OnlyUser(kT.Output[0], "MatMul") != scores) return null;
        if (OnlyUser(scores.Output[0], "Softmax") is not { } softmax || OnnxProto.Int(softmax, "axis", -1) is not (-1 or 3)) return null;
        if (OnlyUser(softmax.Output[0], "MatMul") is not { } mix || mix.Input[0] != softmax.Output[0] || mix.Input[1] != v.Output[0]) return null;
        if (OnlyUser(v.Output[0], "MatMul") != mix) return null;

        // Y = Reshape(Transpose(out, [0, 2, 1, 3]), [N, L, H*dh])
        if (OnlyUser(mix.Output[0], "Transpose") is not { } back || Perm(back) is not [0, 2, 1, 3]) return null;
        if (OnlyUser(back.Output[0], "Reshape") is not { } merge) return null;

        return new AttentionMatch(qkv, biasAdd, reshape, permute, q, k, v, scale, s, kT, scores, softmax, mix, back, merge, heads.Value, bias);
    }

    private static bool TryFuse(GraphProto graph, NodeProto permute)
    {
        if (Match(graph, permute) is not { } m) return false;
        var (qkv, biasAdd, reshape, q, k, v, scale, s, kT, scores, softmax, mix, back, merge, heads, bias) =
            (m.Qkv, m.BiasAdd, m.Reshape, m.Q, m.K, m.V, m.Scale, m.ScaleValue, m.KT, m.Scores, m.Softmax, m.Mix, m.Back, m.Merge, m.Heads, m.Bias);
        var attention = new NodeProto
        {
            OpType = "Attention",
            Domain = MicrosoftDomain,
            Name = $"{qkv.Name}{FusedSuffix}",
        };
        attention.Input.AddRange([qkv.Input[0], qkv.Input[1], bias]);
        attention.Output.Add(merge.Output[0]);
        attention.Attribute.Add(OnnxProto.IntAttr("num_heads", heads));
        attention.Attribute.Add(OnnxProto.FloatAttr("scale", s));

        var replaced = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance) { qkv, biasAdd, reshape, permute, q, k, v, scale, kT, scores, softmax, mix, back, merge };
        var at = graph.Node.IndexOf(merge);
        graph.Node.Insert(at, attention);
        foreach (var n in replaced) graph.Node.Remove(n);
        return true;
    }

    /// <summary>The nodes of one matched attention block, input to output.</summary>
    internal sealed record AttentionMatch(
        NodeProto Qkv, NodeProto BiasAdd, NodeProto Reshape, NodeProto Permute, NodeProto Q, NodeProto K, NodeProto V, NodeProto Scale,
        float ScaleValue, NodeProto KT, NodeProto Scores, NodeProto Softmax, NodeProto Mix, NodeProto Back, NodeProto Merge, long Heads, string Bias);

    /// <summary>H from the qkv reshape's target shape <c>[N, L, 3, H, dh]</c>: a constant, or a Concat of five pieces whose fourth is constant.</summary>
    private static long? HeadsOf(string shape, Dictionary<string, NodeProto> producers, Func<string, long[]?> ints, long hidden)
    {
        if (ints(shape) is { Length: 5 } constant) return constant[2] == 3 && constant[3] * constant[4] == hidden ? constant[3] : null;
        if (!producers.TryGetValue(shape, out var concat) || concat.OpType != "Concat" || concat.Input.Count != 5) return null;
        return ints(concat.Input[2]) is [3] && ints(concat.Input[3]) is [var h] && ints(concat.Input[4]) is [var dh] && h * dh == hidden ? h : null;
    }

    private static long[]? Perm(NodeProto transpose) => OnnxProto.Ints(transpose, "perm");

    /// <summary>Removes nodes none of whose outputs is read (the shape arithmetic the fused pattern no longer needs).</summary>
    private static void RemoveDeadNodes(GraphProto graph)
    {
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        bool removed;
        do
        {
            var read = graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
            var dead = graph.Node.Where(n => n.Output.All(o => o.Length == 0 || (!read.Contains(o) && !outputs.Contains(o)))).ToList();
            foreach (var n in dead) graph.Node.Remove(n);
            removed = dead.Count > 0;
        }
        while (removed);

        var used = graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        foreach (var init in graph.Initializer.Where(i => !used.Contains(i.Name)).ToList()) graph.Initializer.Remove(init);
    }
}
