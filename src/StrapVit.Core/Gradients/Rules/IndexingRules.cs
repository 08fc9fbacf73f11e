using Onnx;

namespace StrapVit.Core.Gradients.Rules;

/// <summary>Concat, Split, Slice and Gather with constant indices: the cotangent is cut apart, glued together or
/// scattered back into zeros of the input's shape.</summary>
internal static class IndexingRules
{
    public static void Register(Dictionary<string, GradientRule> table)
    {
        table["Concat"] = Concat;
        table["Split"] = Split;
        table["Slice"] = Slice;
        table["Gather"] = Gather;
    }

    private static void Concat(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var g = grads[0]!;
        var rank = ctx.DimsOf(node.Output[0]).Rank;
        var axis = BackwardContext.NormalizeAxis(OnnxProto.Int(node, "axis", 0), rank);
        long offset = 0;
        foreach (var input in node.Input)
        {
            var d = ctx.DimsOf(input);
            if (d.IsBatch(axis)) throw ctx.Fail("it concatenates along an axis that changes with the batch size");
            var size = d.AtA[axis];
            if (ctx.IsDiff(input))
            {
                ctx.Accumulate(input, ctx.Emit("Slice", [g, ctx.Int64s(offset), ctx.Int64s(offset + size), ctx.Int64s(axis)]));
            }

            offset += size;
        }
    }

    /// <summary>Concat of the outputs' cotangents, with zeros for outputs nothing flows back into.</summary>
    private static void Split(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var x = node.Input[0];
        var axis = BackwardContext.NormalizeAxis(OnnxProto.Int(node, "axis", 0), ctx.DimsOf(x).Rank);
        var parts = node.Output.Select((o, i) => grads[i] ?? ctx.ZerosLike(o)).ToArray();
        ctx.Accumulate(x, parts.Length == 1 ? parts[0] : ctx.Emit("Concat", parts, OnnxProto.IntAttr("axis", axis)));
    }

    /// <summary>Unit-step slices: zero-pad the cotangent back to the input's extent.</summary>
    private static void Slice(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var x = node.Input[0];
        var dx = ctx.DimsOf(x);
        var starts = ctx.IntsOf(node.Input[1], "starts");
        var ends = ctx.IntsOf(node.Input[2], "ends");
        var axes = node.Input.Count > 3 && node.Input[3].Length > 0
            ? ctx.IntsOf(node.Input[3], "axes")
            : Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
        var steps = node.Input.Count > 4 && node.Input[4].Length > 0 ? ctx.IntsOf(node.Input[4], "steps") : null;
        var pads = new long[2 * dx.Rank];
        var cutAxes = new List<int>();
        for (var j = 0; j < starts.Length; j++)
        {
            if (steps is not null && steps[j] != 1) throw ctx.Fail($"step {steps[j]} is not supported (only unit steps)");
            var axis = BackwardContext.NormalizeAxis(axes[j], dx.Rank);
            var (startA, endA) = Clamp(starts[j], ends[j], dx.AtA[axis]);
            var (startB, endB) = Clamp(starts[j], ends[j], dx.AtB[axis]);
            if (dx.IsBatch(axis))
            {
                if (startA != 0 || startB != 0 || endA != dx.AtA[axis] || endB != dx.AtB[axis])
                {
                    throw ctx.Fail("it slices part of the batch axis");
                }

                continue;
            }

            if (endA <= startA) return; // empty slice: nothing flows back
            pads[axis] = startA;
            pads[dx.Rank + axis] = dx.AtA[axis] - endA;
            if (endA - startA != dx.AtA[axis]) cutAxes.Add(axis);
        }

        if (cutAxes.Count == 1)
        {
            var axis = cutAxes[0];
            ctx.AccumulatePiece(x, grads[0]!, axis, pads[axis], dx.AtA[axis] - pads[axis] - pads[dx.Rank + axis]);
            return;
        }

        ctx.Accumulate(x, ctx.Pad(grads[0]!, pads));
    }

    private static (long Start, long End) Clamp(long start, long end, long dim)
    {
        static long Norm(long v, long dim) => Math.Clamp(v < 0 ? v + dim : v, 0, dim);
        return (Norm(start, dim), Norm(end, dim));
    }

    /// <summary>
    /// Constant indices only. A scalar index (class-token selection, q/k/v picking) is an Unsqueeze plus a Pad; a
    /// contiguous run is a Pad; anything else multiplies by a constant one-hot matrix, which also sums duplicates.
    /// </summary>
    private static void Gather(NodeProto node, string?[] grads, BackwardContext ctx)
    {
        var (g, x, indices) = (grads[0]!, node.Input[0], node.Input[1]);
        var dx = ctx.DimsOf(x);
        var axis = BackwardContext.NormalizeAxis(OnnxProto.Int(node, "axis", 0), dx.Rank);
        if (dx.IsBatch(axis)) throw ctx.Fail("it gathers along an axis that changes with the batch size");
        var di = ctx.DimsOf(indices);
        if (di.HasBatchDim) throw ctx.Fail("its indices change with the batch size");
        var dim = dx.AtA[axis];
        var values = ctx.IntsOf(indices, "indices").Select(v => v < 0 ? v + dim : v).ToArray();
        if (di.Rank == 0)
        {
            ctx.AccumulatePiece(x, ctx.Unsqueeze(g, axis), axis, values[0], 1);
            return;
        }

        var k = values.Length;
        var flat = di.Rank == 1 ? g : ctx.ReshapeTo(g, dx.Select(d => { var c = (long[])d.Clone(); c[axis] = k; return c; }), null);
        if (values.Select((v, j) => v - j).Distinct().Count() == 1)
        {
            ctx.AccumulatePiece(x, flat, axis, values[0], k);
            return;
        }

        var oneHot = new float[k * dim];
        for (var j = 0; j < k; j++)
        {
            oneHot[(j * dim) + values[j]] += 1f;
        }

        var toLast = Enumerable.Range(0, dx.Rank).Where(i => i != axis).Append(axis).Select(i => (long)i).ToArray();
        var back = new long[dx.Rank];
        for (var i = 0; i < dx.Rank; i++)
        {
            back[toLast[i]] = i;
        }

        var moved = ctx.Emit("MatMul", [ctx.Transpose(flat, toLast), ctx.FloatConstant([k, dim], oneHot)]);
        ctx.Accumulate(x, ctx.Transpose(moved, back));
    }
}
