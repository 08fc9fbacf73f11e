using Onnx;
using StrapVit.Core.Gradients;

namespace StrapVit.Core.Onnx;

/// <summary>
/// Gives a token encoder a key mask: a second input <c>[N, T]</c> (int32, 1 = the token takes part, 0 = hidden) that
/// every attention of the encoder applies to its keys. A hidden token then takes no part in any other token's
/// attention, which for a model that reads its answer from the class token gives the logits of the sequence with that
/// token dropped. So views that hide different tokens keep one sequence length and run as one batch, where dropping
/// gives each length its own run (docs/BENCHMARKS.md, session 22).
/// </summary>
/// <remarks>
/// Only where that equivalence holds by construction: every attention is one of the fused operators of
/// <see cref="AttentionFusion"/> (no <c>Softmax</c> is left in the graph, so no attention in standard ops would see a
/// hidden token) and the last block was narrowed to the class token by <see cref="ClassTokenReadout"/> (so no pooling
/// over the tokens reads a hidden one). Everything else mixes no tokens. The fused operators add ONNX Runtime's mask
/// filter value (-10000) to a hidden key's score, whose softmax weight is then exactly 0 in float32.
/// </remarks>
public static class KeyMask
{
    /// <summary>The encoder's second input: <c>[N, T]</c> int32, 1 for each token that takes part.</summary>
    public const string InputName = "strapvit_key_mask";

    /// <summary>Whether <see cref="Apply"/> would add the mask (see the remarks).</summary>
    public static bool CanApply(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var nodes = model.Graph.Node;
        return !nodes.Any(n => n.OpType == "Softmax")
            && nodes.Any(AttentionFusion.IsFused)
            && nodes.Any(ClassTokenReadout.IsNarrowedAttention)
            && nodes.Where(n => n.OpType.Contains("Attention", StringComparison.Ordinal)).All(n => AttentionFusion.IsFused(n) || ClassTokenReadout.IsNarrowedAttention(n));
    }

    /// <summary>Adds the mask input to <paramref name="model"/> in place; false (and no change) where <see cref="CanApply"/> is false.</summary>
    public static bool Apply(ModelProto model)
    {
        if (!CanApply(model)) return false;
        foreach (var node in model.Graph.Node)
        {
            // com.microsoft.Attention takes its mask as input 3 (mask_index), MultiHeadAttention as input 4
            // (key_padding_mask); both accept a [N, total sequence length] int32 mask.
            var slot = AttentionFusion.IsFused(node) ? 3 : ClassTokenReadout.IsNarrowedAttention(node) ? 4 : -1;
            if (slot < 0) continue;
            while (node.Input.Count < slot) node.Input.Add(string.Empty);
            if (node.Input.Count == slot) node.Input.Add(InputName);
            else node.Input[slot] = InputName;
        }

        model.Graph.Input.Add(OnnxProto.TensorInfo(InputName, OnnxProto.Int32, ["N", "T"]));
        return true;
    }
}
