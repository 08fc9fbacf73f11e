using Onnx;

namespace StrapVit.Core.Gradients.Rules;

/// <summary>Softmax, LogSoftmax, native LayerNormalization and the reductions the decomposed LayerNorm uses.</summary>
internal static class NormalizationRules
{
    public static void Register(Dictionary<string, GradientRule> table)
    {
        table["Softmax"] = Softmax;
        table["LogSoftmax"] = LogSoftmax;
        table["LayerNormalization"] = LayerNormalization;
        table["ReduceMean"] = (n, g, c) => Reduce(n, g, c, mean: true);
        table["ReduceSum"] = (n, g, c) => Reduce(n, g, c, mean: false);
    }

    /// <summary>Opset 13+ Softmax works along one axis: gx = y·(g − Σ_axis g·y).</summary>
    private static void Softmax(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, y) = (grads[0]!, node.Output[0]);
        var axis = OnnxProto.Int(node, "axis", -1);
        var dot = ctx.ReduceSum(ctx.Mul(g, y), [axis], keepDims: true);
        ctx.Accumulate(node.Input[0], ctx.Mul(y, ctx.Sub(g, dot)));
    }

    /// <summary>gx = g − softmax·Σ_axis g, with softmax = exp(y).</summary>
    private static void LogSoftmax(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, y) = (grads[0]!, node.Output[0]);
        var axis = OnnxProto.Int(node, "axis", -1);
        var total = ctx.ReduceSum(g, [axis], keepDims: true);
        ctx.Accumulate(node.Input[0], ctx.Sub(g, ctx.Mul(ctx.Emit("Exp", [y]), total)));
    }

    /// <summary>
    /// With x̂ = (x − μ)·r (r = 1/σ) over the normalized axes and h = g·scale:
    /// gx = r·(h − mean(h) − x̂·mean(h·x̂)). μ and r come from the forward node's own optional outputs (Mean,
    /// InvStdDev), which this rule switches on, so the statistics are not computed twice.
    /// </summary>
    private static void LayerNormalization(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, x, scale) = (grads[0], node.Input[0], node.Input[1]);
        if (g is null) return; // only Y is differentiated; Mean/InvStdDev are never consumed by exporters' graphs
        if (ctx.IsDiff(scale) || (node.Input.Count > 2 && ctx.IsDiff(node.Input[2])))
        {
            throw ctx.Fail("its scale or bias depends on the pixels; only X can be differentiated");
        }

        var dx = ctx.DimsOf(x);
        var axis = BackwardContext.NormalizeAxis(OnnxProto.Int(node, "axis", -1), dx.Rank);
        var axes = Enumerable.Range(axis, dx.Rank - axis).ToArray();
        var count = dx.StaticCount(axes) ?? throw ctx.Fail("a normalized axis changes with the batch size");
        while (node.Output.Count < 3) node.Output.Add("");
        if (node.Output[1].Length == 0) node.Output[1] = ctx.Fresh($"{OnnxProto.Label(node)}/mean");
        if (node.Output[2].Length == 0) node.Output[2] = ctx.Fresh($"{OnnxProto.Label(node)}/inv_std_dev");
        var (mean, invStd) = (node.Output[1], node.Output[2]);

        var xHat = ctx.Mul(ctx.Sub(x, mean), invStd);
        var h = ctx.Mul(g, scale);
        var invCount = ctx.Scalar(1f / count);
        var longAxes = axes.Select(a => (long)a).ToArray();
        var meanH = ctx.Mul(ctx.ReduceSum(h, longAxes, keepDims: true), invCount);
        var meanHx = ctx.Mul(ctx.ReduceSum(ctx.Mul(h, xHat), longAxes, keepDims: true), invCount);
        var inner = ctx.Sub(ctx.Sub(h, meanH), ctx.Mul(xHat, meanHx));
        ctx.Accumulate(x, ctx.Mul(inner, invStd));
    }

    /// <summary>g broadcast back over the reduced axes (divided by their size for the mean).</summary>
    private static void Reduce(NodeProto node, string?[] grads, BackwardContext ctx, bool mean)
    {
        var (g, x) = (grads[0]!, node.Input[0]);
        var dx = ctx.DimsOf(x);
        var axes = node.Input.Count > 1 && node.Input[1].Length > 0
            ? ctx.IntsOf(node.Input[1], "axes")
            : OnnxProto.Ints(node, "axes") ?? [];
        if (axes.Length == 0)
        {
            if (OnnxProto.Int(node, "noop_with_empty_axes", 0) != 0)
            {
                ctx.Accumulate(x, g);
                return;
            }

            axes = Enumerable.Range(0, dx.Rank).Select(i => (long)i).ToArray();
        }

        var normalized = axes.Select(a => (long)BackwardContext.NormalizeAxis(a, dx.Rank)).Distinct().Order().ToArray();
        var keep = OnnxProto.Int(node, "keepdims", 1) != 0;
        var expanded = keep ? g : ctx.Unsqueeze(g, normalized);
        if (mean)
        {
            var count = dx.StaticCount(normalized.Select(a => (int)a)) ?? throw ctx.Fail("it averages over an axis that changes with the batch size");
            expanded = ctx.Mul(expanded, ctx.Scalar(1f / count));
        }

        ctx.Accumulate(x, ctx.Emit("Expand", [expanded, ctx.ShapeOf(x)]));
    }
}
