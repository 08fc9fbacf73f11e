using Onnx;

namespace StrapVit.Core.Gradients.Rules;

/// <summary>Ops that only move values around without changing them: the cotangent is moved back.</summary>
internal static class ShapeRules
{
    public static void Register(Dictionary<string, GradientRule> table)
    {
        table["Reshape"] = ReshapeBack;
        table["Flatten"] = ReshapeBack;
        table["Squeeze"] = ReshapeBack;
        table["Unsqueeze"] = ReshapeBack;
        table["Identity"] = PassThrough;
        table["Dropout"] = PassThrough; // inference graphs: Dropout is the identity on its first output
        table["Cast"] = Cast;
        table["Transpose"] = Transpose;
        table["Expand"] = Expand;
    }

    private static void ReshapeBack(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var x = node.Input[0];
        ctx.Accumulate(x, ctx.ReshapeTo(grads[0]!, ctx.DimsOf(x), x));
    }

    private static void PassThrough(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        if (grads[0] is { } g) ctx.Accumulate(node.Input[0], g);
    }

    /// <summary>Only float32 -> float32 casts reach here (a cast to another type leaves the float32 path and is
    /// rejected by the builder when it feeds the logits).</summary>
    private static void Cast(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        if (OnnxProto.Int(node, "to", 0) != OnnxProto.Float) throw ctx.Fail("only float32 -> float32 casts are differentiable");
        ctx.Accumulate(node.Input[0], grads[0]!);
    }

    private static void Transpose(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var x = node.Input[0];
        var rank = ctx.DimsOf(x).Rank;
        var perm = OnnxProto.Ints(node, "perm") ?? Enumerable.Range(0, rank).Reverse().Select(i => (long)i).ToArray();
        var inverse = new long[rank];
        for (var i = 0; i < rank; i++)
        {
            inverse[perm[i]] = i;
        }

        ctx.Accumulate(x, ctx.Transpose(grads[0]!, inverse));
    }

    private static void Expand(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var x = node.Input[0];
        ctx.Accumulate(x, ctx.ReduceTo(grads[0]!, node.Output[0], x));
    }
}
