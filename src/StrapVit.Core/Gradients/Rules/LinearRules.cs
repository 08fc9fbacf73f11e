using Onnx;

namespace StrapVit.Core.Gradients.Rules;

/// <summary>MatMul, Gemm and Conv. Only the activation operands need cotangents (weights are constants), but a
/// MatMul between two activations (attention: q·kᵀ, softmax·v) differentiates both sides.</summary>
internal static class LinearRules
{
    public static void Register(Dictionary<string, GradientRule> table)
    {
        table["MatMul"] = MatMul;
        table["Gemm"] = Gemm;
        table["Conv"] = Conv;
    }

    /// <summary>numpy matmul: gA = g·Bᵀ, gB = Aᵀ·g over broadcast batch dims (then reduced); 1-D operands are
    /// promoted to [1,k] / [k,1] and the matching axis of g restored before multiplying.</summary>
    private static void MatMul(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, a, b, y) = (grads[0]!, node.Input[0], node.Input[1], node.Output[0]);
        var (da, db, dy) = (ctx.DimsOf(a), ctx.DimsOf(b), ctx.DimsOf(y));
        var (aVec, bVec) = (da.Rank == 1, db.Rank == 1);
        var a2 = aVec ? ctx.Unsqueeze(a, 0) : a;
        var b2 = bVec ? ctx.Unsqueeze(b, 1) : b;
        var rankA2 = Math.Max(da.Rank, 2);
        var rankB2 = Math.Max(db.Rank, 2);
        long[] gAxes = (aVec, bVec) switch
        {
            (true, true) => [-2, -1],
            (true, false) => [-2],
            (false, true) => [-1],
            _ => [],
        };
        var g2 = gAxes.Length > 0 ? ctx.Unsqueeze(g, gAxes) : g;

        // dims of the promoted product: batch dims of y, then [m, n]
        var dy2 = dy.Select(d =>
        {
            var batch = d[..(d.Length - (aVec ? 0 : 1) - (bVec ? 0 : 1))];
            return [.. batch, aVec ? 1 : d[^(bVec ? 1 : 2)], bVec ? 1 : d[^1]];
        });
        var k = da.AtA[^1];

        if (ctx.IsDiff(a))
        {
            // Bᵀ stays a Transpose node, also for a constant weight, so the graph carries no second copy of the
            // weights: a self-contained session folds it into a constant at load (and prepacks that), a session over
            // shared weights (folding off) fuses it into a MatMul that reads B transposed.
            var ga2 = ctx.Emit("MatMul", [g2, ctx.Transpose(b2, SwapLastTwo(rankB2))]);
            var dims = dy2.Select(d => [.. d[..^1], k]);
            ctx.Accumulate(a, ctx.ReduceTo(ga2, dims, da, a));
        }

        if (ctx.IsDiff(b))
        {
            var gb2 = ctx.Emit("MatMul", [ctx.Transpose(a2, SwapLastTwo(rankA2)), g2]);
            var dims = dy2.Select(d => [.. d[..^2], k, d[^1]]);
            if (bVec)
            {
                // [..., k, 1] -> [..., k] so that broadcasting aligns k with b's only axis
                gb2 = ctx.Emit("Squeeze", [gb2, ctx.Int64s(-1)]);
                dims = dims.Select(d => d[..^1]);
            }

            ctx.Accumulate(b, ctx.ReduceTo(gb2, dims, db, b));
        }
    }

    private static long[] SwapLastTwo(int rank) =>
        [.. Enumerable.Range(0, rank - 2).Select(i => (long)i), rank - 1, rank - 2];

    /// <summary>Y = α·op(A)·op(B) + β·C: each cotangent is itself one Gemm with the transposes rearranged.</summary>
    private static void Gemm(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, a, b) = (grads[0]!, node.Input[0], node.Input[1]);
        var alpha = OnnxProto.Float32(node, "alpha", 1f);
        var beta = OnnxProto.Float32(node, "beta", 1f);
        var transA = OnnxProto.Int(node, "transA", 0) != 0;
        var transB = OnnxProto.Int(node, "transB", 0) != 0;
        AttributeProto[] Attrs(bool ta, bool tb) =>
            [OnnxProto.FloatAttr("alpha", alpha), OnnxProto.IntAttr("transA", ta ? 1 : 0), OnnxProto.IntAttr("transB", tb ? 1 : 0)];

        if (ctx.IsDiff(a))
        {
            // transA = 0: gA = α·g·op(B)ᵀ;  transA = 1: gA = α·op(B)·gᵀ
            var ga = transA ? ctx.Emit("Gemm", [b, g], Attrs(transB, true)) : ctx.Emit("Gemm", [g, b], Attrs(false, !transB));
            ctx.Accumulate(a, ga);
        }

        if (ctx.IsDiff(b))
        {
            // transB = 0: gB = α·op(A)ᵀ·g;  transB = 1: gB = α·gᵀ·op(A)
            var gb = transB ? ctx.Emit("Gemm", [g, a], Attrs(true, transA)) : ctx.Emit("Gemm", [a, g], Attrs(!transA, false));
            ctx.Accumulate(b, gb);
        }

        if (node.Input.Count > 2 && ctx.IsDiff(node.Input[2]))
        {
            var c = node.Input[2];
            var scaled = beta == 1f ? g : ctx.Mul(g, ctx.Scalar(beta));
            ctx.Accumulate(c, ctx.ReduceTo(scaled, node.Output[0], c));
        }
    }

    /// <summary>The input cotangent of a convolution is the transposed convolution of g with the same weights,
    /// strides, pads, dilations and groups; output_padding restores the rows/columns the forward stride dropped.</summary>
    private static void Conv(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, x, w, y) = (grads[0]!, node.Input[0], node.Input[1], node.Output[0]);
        if (ctx.IsDiff(w) || (node.Input.Count > 2 && ctx.IsDiff(node.Input[2])))
        {
            throw ctx.Fail("its weights or bias depend on the pixels; only the data input can be differentiated");
        }

        var (dx, dw, dy) = (ctx.DimsOf(x), ctx.DimsOf(w), ctx.DimsOf(y));
        var spatial = dx.Rank - 2;
        if (Enumerable.Range(2, spatial).Any(dx.IsBatch)) throw ctx.Fail("its spatial dims change with the batch size");
        var kernel = OnnxProto.Ints(node, "kernel_shape") ?? dw.AtA[2..];
        var strides = OnnxProto.Ints(node, "strides") ?? Enumerable.Repeat(1L, spatial).ToArray();
        var dilations = OnnxProto.Ints(node, "dilations") ?? Enumerable.Repeat(1L, spatial).ToArray();
        var pads = OnnxProto.Ints(node, "pads") ?? new long[2 * spatial];
        var autoPad = OnnxProto.Str(node, "auto_pad", "NOTSET");
        var outputPadding = new long[spatial];
        for (var i = 0; i < spatial; i++)
        {
            var (input, output) = (dx.AtA[2 + i], dy.AtA[2 + i]);
            var span = ((kernel[i] - 1) * dilations[i]) + 1;
            if (autoPad is "SAME_UPPER" or "SAME_LOWER")
            {
                var total = Math.Max(0, ((output - 1) * strides[i]) + span - input);
                var small = total / 2;
                (pads[i], pads[spatial + i]) = autoPad == "SAME_UPPER" ? (small, total - small) : (total - small, small);
            }
            else if (autoPad == "VALID")
            {
                (pads[i], pads[spatial + i]) = (0, 0);
            }

            outputPadding[i] = input - (((output - 1) * strides[i]) + span - pads[i] - pads[spatial + i]);
            if (outputPadding[i] < 0) throw ctx.Fail($"cannot recover the input size {input} on spatial axis {i}");
        }

        var gx = ctx.Emit("ConvTranspose", [g, w],
            OnnxProto.IntsAttr("kernel_shape", kernel),
            OnnxProto.IntsAttr("strides", strides),
            OnnxProto.IntsAttr("dilations", dilations),
            OnnxProto.IntsAttr("pads", pads),
            OnnxProto.IntsAttr("output_padding", outputPadding),
            OnnxProto.IntAttr("group", OnnxProto.Int(node, "group", 1)));
        ctx.Accumulate(x, gx);
    }
}
