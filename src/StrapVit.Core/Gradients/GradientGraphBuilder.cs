using Onnx;
using StrapVit.Core.Gradients.Rules;

namespace StrapVit.Core.Gradients;

/// <summary>
/// Reverse-mode differentiation of an ONNX forward graph <c>pixels [N,C,H,W] -> logits [N,K]</c> into one model
/// that computes the forward pass and the pixel cotangent in a single run, with standard ONNX ops only
/// (ONNX Runtime's *Grad kernels exist in training builds only). Names and objectives: README, 'Attacks'.
/// </summary>
/// <remarks>
/// Algorithm : learn every intermediate's dims and the needed integer values by probing the
/// forward graph; mark the float tensors reachable from the pixels; walk the nodes that lie between the pixels and
/// the logits in reverse order, letting each op's rule add contributions to its inputs' cotangents (several
/// contributions are summed with one Sum node). Weights and the exporters' integer shape arithmetic are constants
/// of the backward pass: their nodes stay as they are, so no weight gradients and no rules for them are needed.
/// </remarks>
public sealed class GradientGraphBuilder
{
    /// <summary>Bumped whenever the emitted graph changes, so cached graphs of an older builder are not reused.</summary>
    public const int Version = 4;

    /// <summary>Lowest default-domain opset accepted: ReduceSum/Squeeze/Unsqueeze take axes as inputs from 13 on.</summary>
    public const int MinimumOpset = 13;

    /// <summary>Ops whose outputs are piecewise constant in their float inputs (shapes, comparisons, masks): the
    /// cotangent through them is zero almost everywhere, which is the exact answer, not an approximation.</summary>
    private static readonly HashSet<string> ZeroGradientOps = new(StringComparer.Ordinal)
    {
        "Shape", "Size", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor",
        "IsNaN", "IsInf",
    };

    private static readonly string[] ReservedNames =
    [
        GradientGraphNames.PixelValues, GradientGraphNames.Labels, GradientGraphNames.LogitsGrad,
        GradientGraphNames.Logits, GradientGraphNames.Loss, GradientGraphNames.PixelGrad,
    ];

    /// <summary>Builds the gradient model for <paramref name="objective"/>. <paramref name="forward"/> is not modified.</summary>
    /// <exception cref="GradientGraphException">The graph has an op without a rule, or breaks a rule's preconditions.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1822", Justification = "An instance API, so callers can hold and substitute a builder.")]
    public ModelProto Build(ModelProto forward, GradientObjective objective) => Build(forward, objective, narrow: true);

    private static ModelProto Build(ModelProto forward, GradientObjective objective, bool narrow)
    {
        ArgumentNullException.ThrowIfNull(forward);
        var model = forward.Clone();
        var graph = model.Graph ?? throw new GradientGraphException("The model has no graph.");
        // A class-token readout needs the last block's token-wise tail for that token only, forward and backward.
        var narrowed = narrow && Onnx.ClassTokenReadout.Apply(model);
        var opset = DefaultOpset(model);
        var (input, output) = Signature(graph);
        var batchParam = BatchParam(input);
        var sampleDims = SampleDims(input);

        ClearReservedNames(graph, input.Name, output.Name);
        OnnxProto.Rename(graph, input.Name, GradientGraphNames.PixelValues);
        OnnxProto.Rename(graph, output.Name, GradientGraphNames.Logits);
        const string pixels = GradientGraphNames.PixelValues;
        const string logits = GradientGraphNames.Logits;

        var probed = ShapeProbe.Run(model, pixels, sampleDims);
        if (narrowed && !Onnx.ClassTokenReadout.RowsAreTokenRows(model, t => probed.TryGetValue(t, out var p) ? p.Dims.Rank : -1))
        {
            // The narrowing took a row from something that is not [N, T, D]: differentiate the graph as it came.
            return Build(forward, objective, narrow: false);
        }

        var differentiable = MarkDifferentiable(graph, probed, pixels);
        var onPath = NodesToDifferentiate(graph, differentiable, logits);
        var logitDims = probed[logits].Dims;
        if (logitDims.Rank != 2 || !logitDims.IsBatch(0) || logitDims.IsBatch(1))
        {
            throw new GradientGraphException($"The output must be logits [N, K]; it has shape {logitDims}.");
        }

        var forwardNodeCount = graph.Node.Count;
        var ctx = new BackwardContext(graph, probed, differentiable, opset);
        var classes = logitDims.AtA[1];
        string? loss = null;
        string seed;
        if (objective == GradientObjective.CrossEntropy)
        {
            (loss, seed) = CrossEntropySeed(ctx, logits, classes);
        }
        else
        {
            seed = GradientGraphNames.LogitsGrad;
        }

        ctx.Accumulate(logits, seed);
        for (var i = onPath.Count - 1; i >= 0; i--)
        {
            var node = onPath[i];
            ctx.Current = node;
            var grads = node.Output.Select(o => o.Length > 0 && ctx.IsDiff(o) ? ctx.Finalize(o) : null).ToArray();
            if (grads.All(g => g is null)) continue;
            if (!GradientRules.TryGet(node.OpType, out var rule))
            {
                throw ctx.Fail("there is no gradient rule for this op (it lies on the path from the pixels to the logits)");
            }

            rule(node, grads, ctx);
        }

        ctx.Current = null;
        var pixelGrad = ctx.Finalize(pixels) ?? ctx.ZerosLike(pixels);
        ctx.EmitTo(GradientGraphNames.PixelGrad, "Identity", [pixelGrad]);

        SetSignature(graph, objective, batchParam, sampleDims, classes, loss);
        graph.Name = $"{graph.Name}_{objective.ToCliName()}_gradient";
        model.MetadataProps.Add(new StringStringEntryProto { Key = "strapvit.gradient.objective", Value = objective.ToCliName() });
        model.MetadataProps.Add(new StringStringEntryProto { Key = "strapvit.gradient.builder_version", Value = Version.ToString() });
        model.MetadataProps.Add(new StringStringEntryProto { Key = "strapvit.gradient.forward_nodes", Value = forwardNodeCount.ToString() });
        return model;
    }

    private static long DefaultOpset(ModelProto model)
    {
        var import = model.OpsetImport.FirstOrDefault(o => OnnxProto.IsDefaultDomain(o.Domain))
            ?? throw new GradientGraphException("The model imports no default-domain (ai.onnx) opset.");
        if (import.Version < MinimumOpset)
        {
            throw new GradientGraphException(
                $"The model uses opset {import.Version}; the gradient builder needs opset {MinimumOpset} or later (re-export with opset_version >= {MinimumOpset}).");
        }

        return import.Version;
    }

    private static (ValueInfoProto Input, ValueInfoProto Output) Signature(GraphProto graph)
    {
        var initializers = graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var inputs = graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        if (inputs.Count != 1) throw new GradientGraphException($"The model must have exactly one input; it has {inputs.Count}.");
        if (graph.Output.Count != 1) throw new GradientGraphException($"The model must have exactly one output; it has {graph.Output.Count}.");
        if (inputs[0].Type?.TensorType?.ElemType is not OnnxProto.Float)
        {
            throw new GradientGraphException($"Input '{inputs[0].Name}' must be a float32 tensor.");
        }

        return (inputs[0], graph.Output[0]);
    }

    private static string BatchParam(ValueInfoProto input)
    {
        var dims = input.Type.TensorType.Shape?.Dim;
        return dims is { Count: > 0 } && !string.IsNullOrEmpty(dims[0].DimParam) ? dims[0].DimParam : "N";
    }

    private static long[] SampleDims(ValueInfoProto input)
    {
        var dims = input.Type.TensorType.Shape?.Dim;
        if (dims is null || dims.Count < 2 || dims.Skip(1).Any(d => d.ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue))
        {
            throw new GradientGraphException($"Input '{input.Name}' must be [N, C, H, W] with static C, H and W.");
        }

        return dims.Skip(1).Select(d => d.DimValue).ToArray();
    }

    /// <summary>Renames forward tensors that happen to use one of the contract's names for something else.</summary>
    private static void ClearReservedNames(GraphProto graph, string input, string output)
    {
        var names = graph.Node.SelectMany(n => n.Input.Concat(n.Output)).Concat(graph.Initializer.Select(i => i.Name))
            .ToHashSet(StringComparer.Ordinal);
        foreach (var reserved in ReservedNames)
        {
            var isRole = (reserved == GradientGraphNames.PixelValues && input == reserved) || (reserved == GradientGraphNames.Logits && output == reserved);
            if (isRole || !names.Contains(reserved) && input != reserved && output != reserved) continue;
            var fresh = reserved + "_forward";
            for (var i = 1; names.Contains(fresh); i++) fresh = $"{reserved}_forward_{i}";
            OnnxProto.Rename(graph, reserved, fresh);
            names.Add(fresh);
        }
    }

    /// <summary>Float32 tensors that depend on the pixels. Non-float and zero-gradient outputs are constants here.</summary>
    private static HashSet<string> MarkDifferentiable(GraphProto graph, Dictionary<string, ProbedTensor> probed, string pixels)
    {
        var diff = new HashSet<string>(StringComparer.Ordinal) { pixels };
        foreach (var node in graph.Node)
        {
            if (!node.Input.Any(diff.Contains) || ZeroGradientOps.Contains(node.OpType)) continue;
            foreach (var o in node.Output)
            {
                if (o.Length > 0 && probed.TryGetValue(o, out var p) && p.ElemType == OnnxProto.Float) diff.Add(o);
            }
        }

        return diff;
    }

    /// <summary>Nodes with a pixel-dependent input and an output the logits depend on, in graph order.</summary>
    private static List<NodeProto> NodesToDifferentiate(GraphProto graph, HashSet<string> diff, string logits)
    {
        var needed = new HashSet<string>(StringComparer.Ordinal) { logits };
        var result = new List<NodeProto>();
        for (var i = graph.Node.Count - 1; i >= 0; i--)
        {
            var node = graph.Node[i];
            if (!node.Output.Any(needed.Contains)) continue;
            foreach (var input in node.Input) needed.Add(input);
            if (!node.Input.Any(diff.Contains) || ZeroGradientOps.Contains(node.OpType)) continue;
            if (!OnnxProto.IsDefaultDomain(node.Domain) || !GradientRules.TryGet(node.OpType, out _) || node.Output.Any(o => o.Length > 0 && !diff.Contains(o) && needed.Contains(o)))
            {
                // An op without a rule, or one whose non-float output (ArgMax, TopK indices, Cast to int) feeds the
                // logits: differentiating around it would be silently wrong.
                var why = OnnxProto.IsDefaultDomain(node.Domain) && GradientRules.TryGet(node.OpType, out _)
                    ? "a non-float32 output of it depends on the pixels and feeds the logits"
                    : $"there is no gradient rule for this op{(OnnxProto.IsDefaultDomain(node.Domain) ? "" : $" (domain '{node.Domain}')")} and it lies on the path from the pixels to the logits";
                throw BackwardContext.Fail(node, why);
            }

            result.Add(node);
        }

        result.Reverse();
        return result;
    }

    /// <summary>loss = -log_softmax(z)[y] per sample; d(sum loss)/dz = softmax(z) - onehot(y).</summary>
    private static (string Loss, string Seed) CrossEntropySeed(BackwardContext ctx, string logits, long classes)
    {
        var logProbs = ctx.Emit("LogSoftmax", [logits], OnnxProto.IntAttr("axis", 1));
        var picked = ctx.Emit("GatherElements", [logProbs, ctx.Unsqueeze(GradientGraphNames.Labels, 1)], OnnxProto.IntAttr("axis", 1));
        var negated = ctx.Neg(ctx.Emit("Squeeze", [picked, ctx.Int64s(1)]));
        ctx.EmitTo(GradientGraphNames.Loss, "Identity", [negated]);
        var oneHot = ctx.Emit("OneHot", [GradientGraphNames.Labels, ctx.Int64s(classes), ctx.FloatConstant([2], [0f, 1f])], OnnxProto.IntAttr("axis", -1));
        var seed = ctx.Sub(ctx.Emit("Exp", [logProbs]), oneHot);
        return (GradientGraphNames.Loss, seed);
    }

    private static void SetSignature(GraphProto graph, GradientObjective objective, string batch, long[] sampleDims, long classes, string? loss)
    {
        object[] pixelDims = [batch, .. sampleDims.Cast<object>()];
        graph.Input.Clear();
        graph.Input.Add(OnnxProto.TensorInfo(GradientGraphNames.PixelValues, OnnxProto.Float, pixelDims));
        graph.Input.Add(objective == GradientObjective.CrossEntropy
            ? OnnxProto.TensorInfo(GradientGraphNames.Labels, OnnxProto.Int64, [batch])
            : OnnxProto.TensorInfo(GradientGraphNames.LogitsGrad, OnnxProto.Float, [batch, classes]));
        graph.Output.Clear();
        graph.Output.Add(OnnxProto.TensorInfo(GradientGraphNames.Logits, OnnxProto.Float, [batch, classes]));
        if (loss is not null) graph.Output.Add(OnnxProto.TensorInfo(loss, OnnxProto.Float, [batch]));
        graph.Output.Add(OnnxProto.TensorInfo(GradientGraphNames.PixelGrad, OnnxProto.Float, pixelDims));
    }
}
