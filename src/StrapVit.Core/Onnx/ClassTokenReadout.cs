using Onnx;
using StrapVit.Core.Gradients;

namespace StrapVit.Core.Onnx;

/// <summary>
/// A ViT that reads its answer from the class token computes the whole last block for every token and then keeps one
/// row. This pass moves that row selection (<c>Gather(·, 0, axis 1)</c> before the head) up through the token-wise ops
/// at the end of the graph (layer norms, the MLP, the attention's output projection, residual additions, scalar
/// arithmetic), so they run on one row instead of all. When it reaches a fused attention (<see cref="AttentionFusion"/>),
/// that becomes a <c>com.microsoft.MultiHeadAttention</c> whose only query is the class token (keys and values still
/// come from every token). Either way the answer is the same function: on a six-block model the tail alone is about a
/// twelfth of the work, the tail and the attention's queries about a sixth. The inference graphs get both; the
/// gradient builder narrows the tail of the standard-op graph before differentiating it, which spares the backward
/// pass the same rows.
/// </summary>
/// <remarks>
/// A tensor is narrowed only when every reader of it is narrowed too (or is the final gather), so nothing that needs
/// all tokens loses them; an op outside the known token-wise set, or a constant operand of rank above 1, ends the
/// narrowed region there (its output is read through a gather of its class-token row).
/// </remarks>
public static class ClassTokenReadout
{
    /// <summary>Ops whose outputs a class-token row may be taken from (graph inputs too).</summary>
    private static readonly HashSet<string> TokenProducers = new(StringComparer.Ordinal) { "Add", "LayerNormalization", "MatMul", "Gemm", "Reshape", "Transpose", "Identity" };

    private static readonly HashSet<string> Elementwise = new(StringComparer.Ordinal) { "Add", "Sub", "Mul", "Div", "Erf", "Relu", "Tanh", "Sigmoid" };

    private const string RowMarker = "_row_";

    /// <summary>
    /// Whether every class-token row this pass selects is taken from a tensor of rank 3 (<c>[N, T, D]</c>), given each
    /// tensor's rank (<paramref name="rankOf"/>, e.g. from running the graph once). The pass itself cannot see shapes;
    /// a caller that can checks its work with this and keeps the unnarrowed graph when it fails.
    /// </summary>
    public static bool RowsAreTokenRows(ModelProto model, Func<string, int> rankOf)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(rankOf);
        return model.Graph.Node
            .Where(n => n.OpType == "Gather" && n.Name.StartsWith("strapvit_cls_", StringComparison.Ordinal) && n.Name.Contains(RowMarker, StringComparison.Ordinal))
            .All(n => rankOf(n.Input[0]) == 3);
    }

    /// <summary>The fused attention this pass created for the class-token query (<c>com.microsoft.MultiHeadAttention</c>).</summary>
    public static bool IsNarrowedAttention(NodeProto node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return node.Domain == AttentionFusion.MicrosoftDomain && node.OpType == "MultiHeadAttention"
            && node.Name.StartsWith("strapvit_cls_", StringComparison.Ordinal) && node.Name.EndsWith("_attention", StringComparison.Ordinal);
    }

    /// <summary>Rewrites <paramref name="model"/> in place; true when some of the last block now runs for the class token only.</summary>
    public static bool Apply(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        // Squeeze takes its axes as an input from opset 13 on (and the gradient builder needs 13 anyway).
        if (model.OpsetImport.FirstOrDefault(o => OnnxProto.IsDefaultDomain(o.Domain)) is not { Version: >= 13 }) return false;
        var g = new GraphIndex(graph);

        // The readout: Gather(tokens, scalar 0, axis 1) feeding the head.
        var readout = graph.Node.LastOrDefault(n => n.OpType == "Gather" && OnnxProto.IsDefaultDomain(n.Domain) && OnnxProto.Int(n, "axis", 0) == 1
            && g.Constant(n.Input[1])?.Dims.Count == 0 && g.Ints(n.Input[1]) is [0]);
        if (readout is null) return false;

        // Standard-op attention blocks, by the Reshape that merges their heads.
        var standard = AttentionFusion.Matches(graph, g).ToDictionary(m => m.Merge, m => m, (IEqualityComparer<NodeProto>)ReferenceEqualityComparer.Instance);

        // Which tensors only ever need their class-token row: walk back from the readout.
        var narrow = new HashSet<string>(StringComparer.Ordinal);
        var region = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var attention = (NodeProto?)null;
        var standardAttention = (AttentionFusion.AttentionMatch?)null;
        var frontier = new Queue<string>([readout.Input[0]]);
        while (frontier.Count > 0)
        {
            var t = frontier.Dequeue();
            if (narrow.Contains(t) || g.Outputs.Contains(t) || g.Producer(t) is not { } node) continue;
            // Every reader must be the readout or a node already in the region.
            if (!g.Readers(t).All(c => c == readout || region.Contains(c))) continue;
            if (AttentionFusion.IsFused(node))
            {
                if (attention is not null) return false;
                attention = node;
                narrow.Add(t);
                region.Add(node);
                continue;
            }

            if (standard.TryGetValue(node, out var match))
            {
                // The heads' merge of a standard-op attention: its class-token row needs only the class token's query.
                if (attention is not null || standardAttention is not null) return false;
                standardAttention = match;
                narrow.Add(t);
                region.Add(node);
                continue;
            }

            if (!OnnxProto.IsDefaultDomain(node.Domain) || !TokenWise(node, g)) continue;
            narrow.Add(t);
            region.Add(node);
            foreach (var i in node.Input.Where(i => !g.IsConstant(i))) frontier.Enqueue(i);
        }

        // Worth it when the region holds matrix products (a projection, an MLP) or the attention.
        if (attention is null && standardAttention is null && !region.Any(n => n.OpType == "MatMul")) return false;

        // The pass sees no shapes, so it only takes a class-token row from tensors that ops making token tensors
        // produce (the residual stream, a projection, a norm, the attention's merge): a computed [1, D] or [T, D]
        // operand (a Cast, an Expand) would be indexed on the wrong axis. RowsAreTokenRows checks ranks where they
        // are known.
        var rows = region.Where(n => n != attention && n != standardAttention?.Merge)
            .SelectMany(n => n.Input).Where(i => !g.IsConstant(i) && !narrow.Contains(i)).Distinct(StringComparer.Ordinal);
        if (rows.Any(t => g.Outputs.Contains(t) || (g.Producer(t) is { } p && !TokenProducers.Contains(p.OpType) && !AttentionFusion.IsFused(p))))
        {
            return false;
        }
        TensorProto? weights = null, bias = null;
        float[]? w = null, b = null;
        if (attention is not null && (attention.Input.Count != 3 || attention.Output.Count != 1
            || !g.Initializers.TryGetValue(attention.Input[1], out weights) || !g.Initializers.TryGetValue(attention.Input[2], out bias)
            || weights.Dims.Count != 2 || weights.Dims[1] % 3 != 0 || bias.Dims.Count != 1 || bias.Dims[0] != weights.Dims[1]
            || (w = OnnxProto.ReadFloats(weights)) is null || w.Length != weights.Dims[0] * weights.Dims[1]
            || (b = OnnxProto.ReadFloats(bias)) is null || b.Length != bias.Dims[0]))
        {
            // Weights held as external data (or any other surprise): leave the graph as it is.
            return false;
        }

        var added = new List<NodeProto>();
        var newInitializers = new List<TensorProto>();
        var prefix = $"strapvit_cls_{graph.Node.IndexOf(readout)}";
        var gathered = new Dictionary<string, string>(StringComparer.Ordinal);
        var zero = Constant(prefix + "_zero", [], [0], newInitializers);
        string Row(string t)
        {
            // The class-token row [N, D] of a full tensor [N, T, D] read by the region.
            if (gathered.TryGetValue(t, out var name)) return name;
            name = $"{prefix}{RowMarker}{gathered.Count}";
            added.Add(ForwardGraph.Node("Gather", [t, zero], [name], name, OnnxProto.IntAttr("axis", 1)));
            return gathered[t] = name;
        }

        string Narrowed(string t) => g.IsConstant(t) ? t : narrow.Contains(t) ? t + "_strapvit_cls" : Row(t);

        if (attention is not null) NarrowAttention(attention, weights!, w!, b!, prefix, added, newInitializers);
        if (standardAttention is not null) NarrowStandardAttention(standardAttention, prefix, added, newInitializers);

        // The rest of the region, in graph order, on class-token rows.
        foreach (var node in graph.Node.Where(n => region.Contains(n) && n != attention && n != standardAttention?.Merge))
        {
            var copy = node.Clone();
            copy.Name = node.Name + "_strapvit_cls";
            for (var i = 0; i < copy.Input.Count; i++) copy.Input[i] = Narrowed(node.Input[i]);
            copy.Output[0] = node.Output[0] + "_strapvit_cls";
            added.Add(copy);
        }

        var final = ForwardGraph.Node("Identity", [Narrowed(readout.Input[0])], [readout.Output[0]], readout.Name + "_strapvit_cls");
        added.Add(final);
        var at = graph.Node.IndexOf(readout);
        graph.Node.Remove(readout);
        for (var i = 0; i < added.Count; i++) graph.Node.Insert(at + i, added[i]);
        graph.Initializer.AddRange(newInitializers);
        OnnxProto.RemoveDeadNodes(graph);
        return true;
    }

    /// <summary>
    /// The fused attention for the class-token query only: q from the class token's row, k and v from every token, one
    /// <c>com.microsoft.MultiHeadAttention</c>; its output is the narrowed attention output <c>[N, D]</c>.
    /// </summary>
    private static void NarrowAttention(NodeProto attention, TensorProto weights, float[] w, float[] b, string prefix, List<NodeProto> added, List<TensorProto> newInitializers)
    {
        var attentionIn = attention.Input[0];
        var d = (int)weights.Dims[0];
        var hidden = (int)(weights.Dims[1] / 3);
        var firstOnly = Constant(prefix + "_first", [1], [0], newInitializers);
        var weightNames = new[] { "q", "k", "v" }.Select((part, j) =>
        {
            var slice = new float[d * hidden];
            for (var r = 0; r < d; r++) Array.Copy(w, (r * 3 * hidden) + (j * hidden), slice, r * hidden, hidden);
            newInitializers.Add(OnnxProto.FloatTensor($"{prefix}_w{part}", [d, hidden], slice));
            return $"{prefix}_w{part}";
        }).ToArray();
        newInitializers.Add(OnnxProto.FloatTensor($"{prefix}_bias", [3L * hidden], b));
        added.Add(ForwardGraph.Node("Gather", [attentionIn, firstOnly], [$"{prefix}_query_in"], $"{prefix}_query_in", OnnxProto.IntAttr("axis", 1)));
        added.Add(ForwardGraph.Node("MatMul", [$"{prefix}_query_in", weightNames[0]], [$"{prefix}_q"], $"{prefix}_q"));
        added.Add(ForwardGraph.Node("MatMul", [attentionIn, weightNames[1]], [$"{prefix}_k"], $"{prefix}_k"));
        added.Add(ForwardGraph.Node("MatMul", [attentionIn, weightNames[2]], [$"{prefix}_v"], $"{prefix}_v"));
        var mha = ForwardGraph.Node("MultiHeadAttention", [$"{prefix}_q", $"{prefix}_k", $"{prefix}_v", $"{prefix}_bias"], [$"{prefix}_attended"], $"{prefix}_attention",
            OnnxProto.IntAttr("num_heads", OnnxProto.Int(attention, "num_heads", 0)));
        if (OnnxProto.Attr(attention, "scale") is { } scale) mha.Attribute.Add(scale.Clone());
        mha.Domain = AttentionFusion.MicrosoftDomain;
        added.Add(mha);
        var axes = Constant(prefix + "_axes", [1], [1], newInitializers);
        added.Add(ForwardGraph.Node("Squeeze", [$"{prefix}_attended", axes], [attention.Output[0] + "_strapvit_cls"], $"{prefix}_squeeze"));
    }

    /// <summary>
    /// A standard-op attention for the class-token query only, in standard ops (the gradient builder differentiates
    /// them): the query's row 0 of every head, scaled, against all keys, softmax, mixed with all values, heads merged
    /// into <c>[N, D]</c>. Keys, values and the packed projection stay as they were.
    /// </summary>
    private static void NarrowStandardAttention(AttentionFusion.AttentionMatch m, string prefix, List<NodeProto> added, List<TensorProto> newInitializers)
    {
        var first = Constant(prefix + "_query_row", [1], [0], newInitializers);
        var mergeShape = Constant(prefix + "_merged", [2], [0, -1], newInitializers);
        added.Add(ForwardGraph.Node("Gather", [m.Q.Output[0], first], [$"{prefix}_q0"], $"{prefix}_q0", OnnxProto.IntAttr("axis", 2)));
        added.Add(ForwardGraph.Node("Mul", [$"{prefix}_q0", m.ScaleInput], [$"{prefix}_q0s"], $"{prefix}_q0s"));
        added.Add(ForwardGraph.Node("MatMul", [$"{prefix}_q0s", m.KT.Output[0]], [$"{prefix}_scores"], $"{prefix}_scores"));
        added.Add(ForwardGraph.Node("Softmax", [$"{prefix}_scores"], [$"{prefix}_weights"], $"{prefix}_softmax", OnnxProto.IntAttr("axis", -1)));
        added.Add(ForwardGraph.Node("MatMul", [$"{prefix}_weights", m.V.Output[0]], [$"{prefix}_mixed"], $"{prefix}_mix"));
        added.Add(ForwardGraph.Node("Reshape", [$"{prefix}_mixed", mergeShape], [m.Merge.Output[0] + "_strapvit_cls"], $"{prefix}_merge"));
    }

    /// <summary>An op that maps each token's row to the same row of its output.</summary>
    private static bool TokenWise(NodeProto node, GraphIndex g)
    {
        if (node.Output.Count != 1) return false;
        bool SmallConstants() => node.Input.Where(g.IsConstant).All(i => i.Length == 0 || g.Constant(i)?.Dims.Count is <= 1);
        return node.OpType switch
        {
            "LayerNormalization" => OnnxProto.Int(node, "axis", -1) == -1 && node.Input.Skip(1).All(g.IsConstant) && SmallConstants(),
            "MatMul" => g.Initializers.GetValueOrDefault(g.Source(node.Input[1])) is { Dims.Count: 2 } && !g.IsConstant(node.Input[0]),
            _ => Elementwise.Contains(node.OpType) && node.Attribute.Count == 0 && SmallConstants() && node.Input.Any(i => !g.IsConstant(i)),
        };
    }

    private static string Constant(string name, long[] dims, long[] values, List<TensorProto> into)
    {
        into.Add(OnnxProto.Int64Tensor(name, dims, values));
        return name;
    }
}
