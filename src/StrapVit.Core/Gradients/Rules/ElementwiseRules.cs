using Onnx;

namespace StrapVit.Core.Gradients.Rules;

/// <summary>Broadcasting binary ops, Sum and Where: each operand's cotangent is reduced back to its own shape.</summary>
internal static class ElementwiseRules
{
    public static void Register(Dictionary<string, GradientRule> table)
    {
        table["Add"] = Add;
        table["Sub"] = Sub;
        table["Mul"] = Mul;
        table["Div"] = Div;
        table["Sum"] = Sum;
        table["Where"] = Where;
        table["Pow"] = Pow;
    }

    private static void Add(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, y) = (grads[0]!, node.Output[0]);
        foreach (var operand in node.Input.Where(ctx.IsDiff))
        {
            ctx.Accumulate(operand, ctx.ReduceTo(g, y, operand));
        }
    }

    private static void Sum(NodeProto node, string?[] grads, BackwardContext ctx) => Add(node, grads, ctx);

    private static void Sub(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, y, a, b) = (grads[0]!, node.Output[0], node.Input[0], node.Input[1]);
        if (ctx.IsDiff(a)) ctx.Accumulate(a, ctx.ReduceTo(g, y, a));
        if (ctx.IsDiff(b)) ctx.Accumulate(b, ctx.Neg(ctx.ReduceTo(g, y, b)));
    }

    private static void Mul(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, y, a, b) = (grads[0]!, node.Output[0], node.Input[0], node.Input[1]);
        if (ctx.IsDiff(a)) ctx.Accumulate(a, ctx.ReduceTo(ScaleBy(ctx, g, b), y, a));
        if (ctx.IsDiff(b)) ctx.Accumulate(b, ctx.ReduceTo(ScaleBy(ctx, g, a), y, b));
    }

    /// <summary>g·factor, folding the common "times a scalar 1" away.</summary>
    private static string ScaleBy(BackwardContext ctx, string g, string factor)
    {
        if (!ctx.IsDiff(factor) && ctx.DimsOf(factor).AtA.Aggregate(1L, (p, d) => p * d) == 1)
        {
            var value = TryScalar(ctx, factor);
            if (value == 1f) return g;
        }

        return ctx.Mul(g, factor);
    }

    private static float? TryScalar(BackwardContext ctx, string tensor)
    {
        try
        {
            return ctx.FloatsOf(tensor, "factor") is [var v] ? v : null;
        }
        catch (GradientGraphException)
        {
            return null;
        }
    }

    private static void Div(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, y, a, b) = (grads[0]!, node.Output[0], node.Input[0], node.Input[1]);
        if (ctx.IsDiff(a)) ctx.Accumulate(a, ctx.ReduceTo(ctx.Div(g, b), y, a));
        if (ctx.IsDiff(b))
        {
            // d(a/b)/db = -a/b² = -y/b: reuses the forward output instead of squaring b.
            ctx.Accumulate(b, ctx.ReduceTo(ctx.Neg(ctx.Div(ctx.Mul(g, y), b)), y, b));
        }
    }

    private static void Where(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, y, cond, a, b) = (grads[0]!, node.Output[0], node.Input[0], node.Input[1], node.Input[2]);
        var zero = ctx.Scalar(0f);
        if (ctx.IsDiff(a)) ctx.Accumulate(a, ctx.ReduceTo(ctx.Emit("Where", [cond, g, zero]), y, a));
        if (ctx.IsDiff(b)) ctx.Accumulate(b, ctx.ReduceTo(ctx.Emit("Where", [cond, zero, g]), y, b));
    }

    /// <summary>Pow(x, c) with a constant exponent: g·c·x^(c−1); c = 2 and c = 0.5 avoid a Pow node.</summary>
    private static void Pow(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, y, x, c) = (grads[0]!, node.Output[0], node.Input[0], node.Input[1]);
        if (ctx.IsDiff(c)) throw ctx.Fail("its exponent depends on the pixels; only a constant exponent is supported");
        if (!ctx.IsDiff(x)) return;
        var exponent = ctx.FloatsOf(c, "exponent");
        string local;
        if (exponent is [var e])
        {
            local = e switch
            {
                1f => g,
                2f => ctx.Mul(g, ctx.Mul(x, ctx.Scalar(2f))),
                0.5f => ctx.Div(ctx.Mul(g, ctx.Scalar(0.5f)), y),
                _ => ctx.Mul(g, ctx.Mul(ctx.Scalar(e), ctx.Emit("Pow", [x, ctx.Scalar(e - 1f)]))),
            };
        }
        else
        {
            var dims = ctx.DimsOf(c).AtA;
            var cf = ctx.FloatConstant(dims, exponent);
            var cm1 = ctx.FloatConstant(dims, exponent.Select(v => v - 1f).ToArray());
            local = ctx.Mul(g, ctx.Mul(cf, ctx.Emit("Pow", [x, cm1])));
        }

        ctx.Accumulate(x, ctx.ReduceTo(local, y, x));
    }
}
