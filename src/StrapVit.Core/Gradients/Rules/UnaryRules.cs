using Onnx;

namespace StrapVit.Core.Gradients.Rules;

/// <summary>Elementwise unary functions: g times the local derivative, written with the forward output where cheaper.</summary>
internal static class UnaryRules
{
    private static readonly float TwoOverSqrtPi = (float)(2.0 / Math.Sqrt(Math.PI));
    private static readonly float InvSqrt2 = (float)(1.0 / Math.Sqrt(2.0));
    private static readonly float InvSqrt2Pi = (float)(1.0 / Math.Sqrt(2.0 * Math.PI));
    private static readonly float Sqrt2OverPi = (float)Math.Sqrt(2.0 / Math.PI);

    public static void Register(Dictionary<string, GradientRule> table)
    {
        table["Neg"] = (n, g, c) => Local(n, c, c.Neg(g[0]!));
        table["Sqrt"] = (n, g, c) => Local(n, c, c.Div(c.Mul(g[0]!, c.Scalar(0.5f)), n.Output[0]));
        table["Exp"] = (n, g, c) => Local(n, c, c.Mul(g[0]!, n.Output[0]));
        table["Log"] = (n, g, c) => Local(n, c, c.Div(g[0]!, n.Input[0]));
        table["Reciprocal"] = (n, g, c) => Local(n, c, c.Neg(c.Mul(g[0]!, c.Mul(n.Output[0], n.Output[0]))));
        table["Tanh"] = (n, g, c) => Local(n, c, c.Sub(g[0]!, c.Mul(g[0]!, c.Mul(n.Output[0], n.Output[0]))));
        table["Sigmoid"] = Sigmoid;
        table["Relu"] = Relu;
        table["Abs"] = (n, g, c) => Local(n, c, c.Mul(g[0]!, c.Emit("Sign", [n.Input[0]])));
        table["Erf"] = Erf;
        table["Gelu"] = Gelu;
    }

    private static void Local(NodeProto node, BackwardContext ctx, string grad) => ctx.Accumulate(node.Input[0], grad);

    private static void Sigmoid(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var y = node.Output[0];
        Local(node, ctx, ctx.Mul(ctx.Mul(grads[0]!, y), ctx.Sub(ctx.Scalar(1f), y)));
    }

    /// <summary>The kink at 0 gets derivative 0, as in PyTorch.</summary>
    private static void Relu(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var positive = ctx.Emit("Greater", [node.Input[0], ctx.Scalar(0f)]);
        Local(node, ctx, ctx.Emit("Where", [positive, grads[0]!, ctx.Scalar(0f)]));
    }

    /// <summary>d erf(x)/dx = 2/√π · exp(−x²).</summary>
    private static void Erf(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var x = node.Input[0];
        var expNegSq = ctx.Emit("Exp", [ctx.Neg(ctx.Mul(x, x))]);
        Local(node, ctx, ctx.Mul(grads[0]!, ctx.Mul(expNegSq, ctx.Scalar(TwoOverSqrtPi))));
    }

    /// <summary>Gelu (opset 20): exact form Φ(x) + x·φ(x); tanh form differentiates 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))).</summary>
    private static void Gelu(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, x) = (grads[0]!, node.Input[0]);
        var approximate = OnnxProto.Str(node, "approximate", "none");
        var x2 = ctx.Mul(x, x);
        string derivative;
        if (approximate == "tanh")
        {
            // u = √(2/π)(x + 0.044715x³); y' = 0.5(1 + t) + 0.5x(1 − t²)·√(2/π)(1 + 3·0.044715x²)
            var inner = ctx.Add(x, ctx.Mul(ctx.Scalar(0.044715f), ctx.Mul(x2, x)));
            var t = ctx.Emit("Tanh", [ctx.Mul(inner, ctx.Scalar(Sqrt2OverPi))]);
            var left = ctx.Mul(ctx.Scalar(0.5f), ctx.Add(ctx.Scalar(1f), t));
            var sech2 = ctx.Sub(ctx.Scalar(1f), ctx.Mul(t, t));
            var du = ctx.Mul(ctx.Scalar(Sqrt2OverPi), ctx.Add(ctx.Scalar(1f), ctx.Mul(ctx.Scalar(3f * 0.044715f), x2)));
            derivative = ctx.Add(left, ctx.Mul(ctx.Mul(ctx.Scalar(0.5f), x), ctx.Mul(sech2, du)));
        }
        else if (approximate == "none")
        {
            var cdf = ctx.Mul(ctx.Scalar(0.5f), ctx.Add(ctx.Scalar(1f), ctx.Emit("Erf", [ctx.Mul(x, ctx.Scalar(InvSqrt2))])));
            var pdf = ctx.Mul(ctx.Scalar(InvSqrt2Pi), ctx.Emit("Exp", [ctx.Mul(x2, ctx.Scalar(-0.5f))]));
            derivative = ctx.Add(cdf, ctx.Mul(x, pdf));
        }
        else
        {
            throw ctx.Fail($"unknown approximate='{approximate}'");
        }

        Local(node, ctx, ctx.Mul(g, derivative));
    }
}
