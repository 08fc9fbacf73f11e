using Onnx;
using Xunit.Abstractions;
using static StrapVit.Core.Gradients.OnnxProto;

namespace StrapVit.Core.Tests.Gradients;

/// <summary>
/// Rules the ViT fixtures do not reach (Split, Gather with index lists, 1-D MatMul, Gemm transposes, strided and
/// grouped Conv, Where, Pow, Gelu at opset 20, axes as inputs...), each checked on a hand-built graph against
/// central differences of the forward graph.
/// </summary>
public sealed class OpCoverageTests(ITestOutputHelper output)
{
    private const double Tolerance = 2e-2;

    [Fact]
    public void Split_gather_concat_gemm_and_smooth_unaries()
    {
        var t = new TinyGraph(13, 1, 4, 4);
        var flat = t.Op("Flatten", [TinyGraph.Input], IntAttr("axis", 1));
        var parts = t.Ops("Split", [flat, t.Ints(6, 10)], 2, IntAttr("axis", 1));
        var repeated = t.Op("Gather", [parts[1], t.Ints(3, 1, 3, 0)], IntAttr("axis", 1));
        var run = t.Op("Gather", [parts[1], t.Ints(5, 6, 7)], IntAttr("axis", 1));
        var single = t.Op("Unsqueeze", [t.Op("Gather", [parts[1], t.ScalarInt(-1)], IntAttr("axis", 1)), t.Ints(1)]);
        var c = t.Op("Concat", [parts[0], repeated, run, single], IntAttr("axis", 1));
        var one = t.Weight([1], values: [1f]);
        var d = t.Op("Div", [c, t.Op("Add", [t.Op("Mul", [c, c]), one])]);
        var softplus = t.Op("Log", [t.Op("Add", [t.Op("Exp", [c]), one])]);
        var h = t.Op("Sub", [t.Op("Mul", [t.Op("Sigmoid", [d]), softplus]), t.Op("Tanh", [t.Op("Sqrt", [t.Op("Add", [t.Op("Mul", [d, d]), one])])])]);
        h = t.Op("Add", [h, t.Op("Reciprocal", [t.Op("Add", [t.Op("Mul", [c, c]), one])])]);
        var g = t.Op("Gemm", [h, t.Weight([3, 14]), t.Weight([3])], FloatAttr("alpha", 0.7f), FloatAttr("beta", 0.5f), IntAttr("transB", 1));
        var logits = t.Op("Add", [g, t.Op("LogSoftmax", [t.Op("Mul", [g, t.Weight([1], values: [2f])])], IntAttr("axis", 1))]);
        logits = t.Op("Add", [logits, t.Op("Softmax", [logits], IntAttr("axis", -1))]);
        Check(t, logits, 3);
    }

    [Fact]
    public void Matmul_1d_and_batched_reductions_where_pow_expand()
    {
        var t = new TinyGraph(13, 2, 3, 4);
        var m1 = t.Op("MatMul", [t.Op("Transpose", [TinyGraph.Input], IntsAttr("perm", [0, 2, 3, 1])), t.Weight([2])]); // [N,3,4]
        var m2 = t.Op("MatMul", [t.Weight([3]), m1]); // [N,4]
        var q = t.Op("MatMul", [m1, t.Op("Transpose", [m1], IntsAttr("perm", [0, 2, 1]))]); // [N,3,3]
        var r = t.Op("ReduceSum", [q, t.Ints(2)], IntAttr("keepdims", 0)); // [N,3]
        var mean = t.Op("ReduceMean", [m1], IntsAttr("axes", [1]), IntAttr("keepdims", 1)); // [N,1,4]
        var expanded = t.Op("Expand", [mean, t.Ints(3, 4)]); // [N,3,4]
        var positive = t.Op("Greater", [m1, t.Weight([1], values: [0f])]);
        var branchA = t.Op("Pow", [m1, t.Weight([], values: [3f])]);
        var branchB = t.Op("Mul", [t.Op("Abs", [expanded]), t.Op("Neg", [m1])]);
        var w = t.Op("Where", [positive, branchA, branchB]);
        var relu = t.Op("Relu", [t.Op("Add", [w, t.Weight([4], 0.3f)])]);
        var cast = t.Op("Identity", [t.Op("Cast", [relu], IntAttr("to", Float))]);
        var dropped = t.Ops("Dropout", [cast], 1)[0];
        var sq = t.Op("Squeeze", [t.Op("Unsqueeze", [dropped, t.Ints(1)]), t.Ints(1)]);
        var z = t.Op("ReduceSum", [sq, t.Ints(2)], IntAttr("keepdims", 0)); // [N,3]
        var logits = t.Op("Concat", [z, r, m2], IntAttr("axis", 1)); // [N,10]
        Check(t, logits, 10);
    }

    [Fact]
    public void Strided_padded_grouped_conv_and_slices()
    {
        var t = new TinyGraph(13, 2, 6, 6);
        var conv = t.Op("Conv", [TinyGraph.Input, t.Weight([4, 2, 3, 3]), t.Weight([4])],
            IntsAttr("strides", [2, 2]), IntsAttr("pads", [1, 1, 1, 1]), IntsAttr("kernel_shape", [3, 3])); // [N,4,3,3]
        var depthwise = t.Op("Conv", [conv, t.Weight([4, 1, 2, 2])], IntAttr("group", 4)); // [N,4,2,2]
        var same = t.Op("Conv", [TinyGraph.Input, t.Weight([2, 1, 3, 3])], IntAttr("group", 2), StringAttr("auto_pad", "SAME_UPPER"), IntsAttr("strides", [2, 2])); // [N,2,3,3]
        var cut = t.Op("Slice", [same, t.Ints(1, 0), t.Ints(long.MaxValue, 2), t.Ints(2, 3)]); // [N,2,2,2]
        var joined = t.Op("Concat", [depthwise, cut], IntAttr("axis", 1)); // [N,6,2,2]
        var flat = t.Op("Flatten", [joined], IntAttr("axis", 1)); // [N,24]
        var logits = t.Op("MatMul", [flat, t.Weight([24, 5])]);
        Check(t, logits, 5);
    }

    [Fact]
    public void Opset_20_gelu_layernorm_split_and_axes_inputs()
    {
        var t = new TinyGraph(20, 1, 4, 6);
        var x = t.Op("Reshape", [TinyGraph.Input, t.Ints(-1, 4, 6)]);
        var ln = t.Op("LayerNormalization", [x, t.Weight([6], 1f), t.Weight([6])], IntAttr("axis", -1), FloatAttr("epsilon", 1e-5f));
        var gelu = t.Op("Gelu", [t.Op("Gelu", [ln]), ], StringAttr("approximate", "tanh"));
        var parts = t.Ops("Split", [gelu], 2, IntAttr("axis", 2), IntAttr("num_outputs", 2));
        var logits = t.Op("ReduceMean", [t.Op("Mul", [parts[0], parts[1]]), t.Ints(1)], IntAttr("keepdims", 0)); // [N,3]
        Check(t, logits, 3);
    }

    private static AttributeProto StringAttr(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = Google.Protobuf.ByteString.CopyFromUtf8(value) };

    private void Check(TinyGraph t, string logits, long classes)
    {
        var model = t.Finish(logits, classes);
        var error = GradientCheck.WorstDirectionalError(model, t.SampleDims, batch: 3, directions: 4, step: 1e-2f, seed: 11);
        output.WriteLine($"worst directional error {error:E2}");
        Assert.True(error < Tolerance, $"directional derivative error {error:E3}");
    }
}
