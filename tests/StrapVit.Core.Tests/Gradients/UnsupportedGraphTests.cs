using StrapVit.Core.Gradients;
using static StrapVit.Core.Gradients.OnnxProto;

namespace StrapVit.Core.Tests.Gradients;

/// <summary>Graphs the builder must refuse, with a message naming the op type and the node.</summary>
public sealed class UnsupportedGraphTests
{
    [Fact]
    public void TopK_on_the_path_names_the_op_and_node()
    {
        var t = new TinyGraph(13, 1, 4, 4);
        var flat = t.Op("Flatten", [TinyGraph.Input], IntAttr("axis", 1));
        var top = t.Ops("TopK", [flat, t.Ints(3)], 2, IntAttr("axis", 1));
        var ex = Assert.Throws<GradientGraphException>(() => new GradientGraphBuilder().Build(t.Finish(top[0], 3), GradientObjective.CrossEntropy));
        Assert.Contains("TopK", ex.Message, StringComparison.Ordinal);
        Assert.Contains("topk_", ex.Message, StringComparison.Ordinal);
        Assert.Equal("TopK", ex.OpType);
    }

    [Fact]
    public void ArgMax_feeding_the_logits_is_not_silently_zero()
    {
        var t = new TinyGraph(13, 1, 4, 4);
        var flat = t.Op("Flatten", [TinyGraph.Input], IntAttr("axis", 1));
        var arg = t.Op("ArgMax", [flat], IntAttr("axis", 1), IntAttr("keepdims", 1));
        var logits = t.Op("Add", [t.Op("MatMul", [t.Op("Cast", [arg], IntAttr("to", Float)), t.Weight([1, 2])]), t.Op("MatMul", [flat, t.Weight([16, 2])])]);
        var ex = Assert.Throws<GradientGraphException>(() => new GradientGraphBuilder().Build(t.Finish(logits, 2), GradientObjective.Vjp));
        Assert.Contains("ArgMax node 'argmax_", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Strided_slice_is_refused()
    {
        var t = new TinyGraph(13, 1, 4, 4);
        var flat = t.Op("Flatten", [TinyGraph.Input], IntAttr("axis", 1));
        var strided = t.Op("Slice", [flat, t.Ints(0), t.Ints(16), t.Ints(1), t.Ints(2)]);
        var ex = Assert.Throws<GradientGraphException>(() => new GradientGraphBuilder().Build(t.Finish(strided, 8), GradientObjective.Vjp));
        Assert.Contains("Slice node 'slice_", ex.Message, StringComparison.Ordinal);
        Assert.Contains("step 2", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Opsets_before_13_are_refused()
    {
        var t = new TinyGraph(12, 1, 2, 2);
        var flat = t.Op("Flatten", [TinyGraph.Input], IntAttr("axis", 1));
        var ex = Assert.Throws<GradientGraphException>(() => new GradientGraphBuilder().Build(t.Finish(flat, 4), GradientObjective.Vjp));
        Assert.Contains("opset 12", ex.Message, StringComparison.Ordinal);
    }
}
