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
        // Blocks share no pattern node, so every match can be taken from one index of the graph before any edit.
        var matches = Matches(graph, new GraphIndex(graph));
        foreach (var m in matches) Replace(graph, m);
        if (matches.Count > 0)
        {
            OnnxProto.RemoveDeadNodes(graph);
            if (!model.OpsetImport.Any(o => o.Domain == MicrosoftDomain))
            {
                model.OpsetImport.Add(new OperatorSetIdProto { Domain = MicrosoftDomain, Version = 1 });
            }
        }

        return matches.Count;
    }

    /// <summary>Every standard-op attention block of <paramref name="graph"/> that matches the pattern exactly.</summary>
    internal static List<AttentionMatch> Matches(GraphProto graph, GraphIndex index) =>
        graph.Node.Where(n => n.OpType == "Transpose" && Perm(n) is [2, 0, 3, 1, 4]).Select(n => Match(index, n)).OfType<AttentionMatch>().ToList();

    /// <summary>
    /// The standard-op attention block around <paramref name="permute"/> (the <c>[2, 0, 3, 1, 4]</c> transpose of the
    /// packed q/k/v), or null when anything differs from the pattern.
    /// </summary>
    private static AttentionMatch? Match(GraphIndex g, NodeProto permute)
    {
        // qkv = Reshape(Add(b, MatMul(X, W)), [N, L, 3, H, dh])
        if (g.Producer(permute.Input[0], "Reshape") is not { } reshape || g.Readers(reshape.Output[0]).Count != 1) return null;
        if (g.Producer(reshape.Input[0], "Add") is not { } biasAdd || g.Readers(biasAdd.Output[0]).Count != 1) return null;
        // The bias and the weights are initializers, possibly passed through Identity nodes: an exporter that folds
        // equal tensors into one (fresh zero biases, say) shares it that way.
        var (bias, product) = g.Initializers.ContainsKey(g.Source(biasAdd.Input[0])) ? (g.Source(biasAdd.Input[0]), biasAdd.Input[1]) : (g.Source(biasAdd.Input[1]), biasAdd.Input[0]);
        if (!g.Initializers.TryGetValue(bias, out var biasTensor) || biasTensor.Dims.Count != 1) return null;
        if (g.Producer(product, "MatMul") is not { } qkv || g.Readers(qkv.Output[0]).Count != 1) return null;
        var weightsName = g.Source(qkv.Input[1]);
        if (!g.Initializers.TryGetValue(weightsName, out var weights) || weights.Dims.Count != 2 || weights.Dims[1] != biasTensor.Dims[0] || weights.Dims[1] % 3 != 0) return null;
        var hidden = weights.Dims[1] / 3;
        var heads = HeadsOf(g, reshape.Input[1], hidden);
        if (heads is not > 0 || hidden % heads != 0) return null;

        // q, k, v = Gather(qkv, 0 / 1 / 2, axis 0)
        var parts = new NodeProto?[3];
        foreach (var user in g.Readers(permute.Output[0]))
        {
            if (user.OpType != "Gather" || OnnxProto.Int(user, "axis", 0) != 0 || g.Ints(user.Input[1]) is not [var i] || i is < 0 or > 2 || parts[i] is not null) return null;
            parts[i] = user;
        }

        if (parts.Any(p => p is null) || g.Readers(permute.Output[0]).Count != 3) return null;
        NodeProto q = parts[0]!, k = parts[1]!, v = parts[2]!;

        // scores = MatMul(Mul(q, s), Transpose(k, [0, 1, 3, 2])); out = MatMul(Softmax(scores), v)
        if (g.OnlyReader(q.Output[0], "Mul") is not { } scale) return null;
        var scaleInput = scale.Input[0] == q.Output[0] ? scale.Input[1] : scale.Input[0];
        if (g.Floats(scaleInput) is not [var s]) return null;
        if (g.OnlyReader(k.Output[0], "Transpose") is not { } kT || Perm(kT) is not [0, 1, 3, 2]) return null;
        if (g.OnlyReader(scale.Output[0], "MatMul") is not { } scores || scores.Input[0] != scale.Output[0] || scores.Input[1] != kT.Output[0]) return null;
        if (g.OnlyReader(kT.Output[0], "MatMul") != scores) return null;
        if (g.OnlyReader(scores.Output[0], "Softmax") is not { } softmax || OnnxProto.Int(softmax, "axis", -1) is not (-1 or 3)) return null;
        if (g.OnlyReader(softmax.Output[0], "MatMul") is not { } mix || mix.Input[0] != softmax.Output[0] || mix.Input[1] != v.Output[0]) return null;
        if (g.OnlyReader(v.Output[0], "MatMul") != mix) return null;

        // Y = Reshape(Transpose(out, [0, 2, 1, 3]), [N, L, H*dh])
        if (g.OnlyReader(mix.Output[0], "Transpose") is not { } back || Perm(back) is not [0, 2, 1, 3]) return null;
        if (g.OnlyReader(back.Output[0], "Reshape") is not { } merge) return null;

        return new AttentionMatch(qkv, biasAdd, reshape, permute, q, k, v, scale, kT, scores, softmax, mix, back, merge, scaleInput, s, heads.Value, bias, weightsName);
    }

    /// <summary>Puts one fused Attention where the block's head merge was and removes the block's nodes.</summary>
    private static void Replace(GraphProto graph, AttentionMatch m)
    {
        var attention = new NodeProto { OpType = "Attention", Domain = MicrosoftDomain, Name = $"{m.Qkv.Name}{FusedSuffix}" };
        attention.Input.AddRange([m.Qkv.Input[0], m.Weights, m.Bias]);
        attention.Output.Add(m.Merge.Output[0]);
        attention.Attribute.Add(OnnxProto.IntAttr("num_heads", m.Heads));
        attention.Attribute.Add(OnnxProto.FloatAttr("scale", m.ScaleValue));
        graph.Node.Insert(graph.Node.IndexOf(m.Merge), attention);
        foreach (var n in m.Nodes) graph.Node.Remove(n);
    }

    /// <summary>One matched attention block: its nodes from the q/k/v projection to the head merge, the scale (tensor and value), the head count and the bias and weight initializers.</summary>
    internal sealed record AttentionMatch(
        NodeProto Qkv, NodeProto BiasAdd, NodeProto Reshape, NodeProto Permute, NodeProto Q, NodeProto K, NodeProto V, NodeProto Scale,
        NodeProto KT, NodeProto Scores, NodeProto Softmax, NodeProto Mix, NodeProto Back, NodeProto Merge, string ScaleInput, float ScaleValue, long Heads, string Bias,
        string Weights)
    {
        /// <summary>Every node of the block, input to output.</summary>
        public NodeProto[] Nodes => [Qkv, BiasAdd, Reshape, Permute, Q, K, V, Scale, KT, Scores, Softmax, Mix, Back, Merge];
    }

    /// <summary>H from the qkv reshape's target shape <c>[N, L, 3, H, dh]</c>: a constant, or a Concat of five pieces with constant 3, H and dh.</summary>
    private static long? HeadsOf(GraphIndex g, string shape, long hidden)
    {
        if (g.Ints(shape) is { Length: 5 } constant) return constant[2] == 3 && constant[3] * constant[4] == hidden ? constant[3] : null;
        if (g.Producer(shape, "Concat") is not { Input.Count: 5 } concat) return null;
        return g.Ints(concat.Input[2]) is [3] && g.Ints(concat.Input[3]) is [var h] && g.Ints(concat.Input[4]) is [var dh] && h * dh == hidden ? h : null;
    }

    private static long[]? Perm(NodeProto transpose) => OnnxProto.Ints(transpose, "perm");
}
