using Google.Protobuf;
using Onnx;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using static StrapVit.Core.Onnx.ForwardGraph;

namespace StrapVit.Core.Defense;

/// <summary>
/// The token bank's nearest-neighbour search as a small ONNX graph, run by ONNX Runtime on the model's own execution
/// provider: <c>d² = |x|² − 2·x·Bᵀ + |b|²</c> as one MatMul, then <c>TopK</c> (smallest k) and the mean of the square
/// roots, the same score as <see cref="TokenBank.ScoreImage"/>. The tokens (offset subtracted on the host) go to the
/// GPU and the scores come back, one run per image; on a GPU that is a fraction of a millisecond where the CPU kernel
/// takes milliseconds for a ViT-B/16 (196 tokens against 1,024 entries of 768 channels). On the CPU the hand-written
/// kernel stays, because it is what calibration and the evaluation's attacker score with, bit for bit. The graph is
/// faster there too: for the tiny model's bank of 8,192 entries 0.48 against 0.72 ms (wall min, one thread, session
/// 22, after the kernel's wider tiles), 4.4 against 6.0 ms for ViT-B/16 (session 11, bank 1,024). Its products use
/// fused multiply-adds, which the kernel's separate multiply and add cannot match bit for bit. The product runs in full float32 (TF32 off), so scores agree with the CPU
/// kernel to float rounding: summation order differs, and a token within rounding of its threshold may be flagged
/// on one and not the other.
/// </summary>
public sealed class BankSearch : IDisposable
{
    private static readonly string[] InputNames = ["x"];
    private static readonly string[] OutputNames = ["score", "nearest"];
    private readonly OnnxRunner session;
    private readonly TokenBank bank;

    /// <param name="bank">The bank to search.</param>
    /// <param name="sessions">Where the session comes from (its device, its options).</param>
    public BankSearch(TokenBank bank, OnnxSessionFactory sessions)
    {
        ArgumentNullException.ThrowIfNull(bank);
        ArgumentNullException.ThrowIfNull(sessions);
        this.bank = bank;
        K = Math.Min(bank.Neighbors, bank.Count);
        session = sessions.Create(Graph(bank, K).ToByteArray(), "token bank search", exactFloat32: true);
    }

    /// <summary>The execution provider the search runs on.</summary>
    public string ExecutionProvider => session.ExecutionProvider;

    /// <summary>Neighbours averaged into a score (the bank's k, at most its size).</summary>
    public int K { get; }

    /// <summary>
    /// Scores tokens <paramref name="first"/> .. T − 1 of one image <c>[T*D]</c> into <paramref name="scores"/>, with
    /// their nearest entries (nearest first) in <paramref name="nearest"/> <c>[T*k]</c> when given; as
    /// <see cref="TokenBank.ScoreImage"/>.
    /// </summary>
    public unsafe void ScoreImage(ReadOnlySpan<float> tokens, int first, Span<double> scores, Span<int> nearest = default, CancellationToken cancellationToken = default)
    {
        int d = bank.Dim, t = tokens.Length / d, n = t - first;
        if (n <= 0) return;
        // The CPU kernel's thread-local scratch (this search replaces that kernel, so the two never hold it at once):
        // a ViT-B/16 image's contents are 600 KB, which a fresh array would put on the large-object heap every call.
        var content = TokenBank.Scratch(n * d);
        bank.Contents(tokens, first, content);
        var score = new float[n];
        var index = new long[n * K];
        fixed (float* x = content)
        fixed (long* nearestOut = index)
        {
            using var input = OnnxRunner.Pinned(x, content.Length, [n, d]);
            using var scoreOut = OnnxRunner.Output(score, [n]);
            using var indexOut = OnnxRunner.Pinned(nearestOut, index.Length, [n, K]);
            session.Run(InputNames, [input], OutputNames, [scoreOut, indexOut], cancellationToken);
        }

        for (var i = 0; i < n; i++)
        {
            scores[first + i] = score[i];
            if (nearest.IsEmpty) continue;
            for (var j = 0; j < K; j++) nearest[((first + i) * bank.Neighbors) + j] = (int)index[(i * K) + j];
        }
    }

    public void Dispose() => session.Dispose();

    /// <summary>x <c>[n, D]</c> → score <c>[n]</c> (mean distance to the k nearest entries), nearest <c>[n, k]</c> (int64).</summary>
    internal static ModelProto Graph(TokenBank bank, int k)
    {
        int d = bank.Dim, m = bank.Count;
        var transposed = new float[d * m];
        for (var j = 0; j < m; j++)
        {
            for (var c = 0; c < d; c++) transposed[(c * m) + j] = bank.Vectors[(j * d) + c];
        }

        var graph = new GraphProto { Name = "strapvit_bank_search" };
        graph.Input.Add(OnnxProto.TensorInfo("x", OnnxProto.Float, ["n", d]));
        graph.Output.Add(OnnxProto.TensorInfo("score", OnnxProto.Float, ["n"]));
        graph.Output.Add(OnnxProto.TensorInfo("nearest", OnnxProto.Int64, ["n", k]));
        graph.Initializer.Add(OnnxProto.FloatTensor("bank_t", [d, m], transposed));
        graph.Initializer.Add(OnnxProto.FloatTensor("bank_norms", [1, m], bank.SquaredNorms));
        graph.Initializer.Add(OnnxProto.FloatTensor("minus_two", [], [-2f]));
        graph.Initializer.Add(OnnxProto.FloatTensor("zero", [], [0f]));
        graph.Initializer.Add(OnnxProto.Int64Tensor("k", [1], [k]));
        graph.Node.Add(Node("MatMul", ["x", "bank_t"], ["xb"], "dot"));
        graph.Node.Add(Node("Mul", ["xb", "minus_two"], ["cross"], "cross"));
        graph.Node.Add(Node("Add", ["cross", "bank_norms"], ["partial"], "partial"));
        graph.Node.Add(Node("ReduceSumSquare", ["x"], ["xx"], "xx", OnnxProto.IntsAttr("axes", [1]), OnnxProto.IntAttr("keepdims", 1)));
        graph.Node.Add(Node("Add", ["partial", "xx"], ["d2"], "d2"));
        graph.Node.Add(Node("TopK", ["d2", "k"], ["nearest_d2", "nearest"], "topk",
            OnnxProto.IntAttr("axis", -1), OnnxProto.IntAttr("largest", 0), OnnxProto.IntAttr("sorted", 1)));
        graph.Node.Add(Node("Max", ["nearest_d2", "zero"], ["clamped"], "clamp"));
        graph.Node.Add(Node("Sqrt", ["clamped"], ["distance"], "distance"));
        graph.Node.Add(Node("ReduceMean", ["distance"], ["score"], "mean", OnnxProto.IntsAttr("axes", [1]), OnnxProto.IntAttr("keepdims", 0)));
        var model = new ModelProto { IrVersion = 8, Graph = graph, ProducerName = "strapvit" };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model;
    }
}
