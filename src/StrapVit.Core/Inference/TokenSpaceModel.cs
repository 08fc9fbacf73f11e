using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Core.Inference;

/// <summary>
/// The model split at its token tensor (<see cref="TokenGraphSplitter"/>): one session embeds pixels into tokens
/// <c>[N, T, D]</c>, another runs the encoder and head on (possibly rewritten) tokens. Thread-safe like the sessions.
/// </summary>
public sealed class TokenSpaceModel : IDisposable
{
    private readonly OrtSession _embed;
    private readonly OrtSession _encode;

    /// <exception cref="ModelPackageException">The package has no tokens tensor, or the split fails.</exception>
    public TokenSpaceModel(ModelPackage package, OnnxSessionFactory factory)
    {
        var tokens = package.Manifest.Tokens
            ?? throw new ModelPackageException("model.json has no 'tokens' entry, so the model cannot be split into embedding and encoder.");
        var split = TokenGraphSplitter.Split(ForwardGraph.LoadNormalized(package), tokens.Tensor);
        Manifest = package.Manifest;
        EmbeddingGraph = split.Embedding;
        _embed = factory.Create(split.Embedding.ToByteArray(), "token embedding");
        try
        {
            _encode = factory.Create(split.Encoder.ToByteArray(), "token encoder");
        }
        catch
        {
            _embed.Dispose();
            throw;
        }

        var probe = Embed(new float[Manifest.Input.Size], 1);
        GridRows = Manifest.Input.Height / Manifest.PatchSize;
        GridCols = Manifest.Input.Width / Manifest.PatchSize;
        HasClassToken = tokens.ClassToken;
        TokenCount = GridRows * GridCols + (HasClassToken ? 1 : 0);
        if (probe.Length % TokenCount != 0)
        {
            throw new ModelPackageException(
                $"tokens.tensor '{tokens.Tensor}' has {probe.Length} values per image, not a multiple of the {TokenCount} tokens that patchSize {Manifest.PatchSize} and classToken imply.");
        }

        Dim = probe.Length / TokenCount;
    }

    public ModelManifest Manifest { get; }

    /// <summary>The embedding half of the split (pixels to tokens), e.g. to derive a token's receptive field from its Conv nodes.</summary>
    public global::Onnx.ModelProto EmbeddingGraph { get; }

    /// <summary>Tokens per image, the class token included.</summary>
    public int TokenCount { get; }

    /// <summary>Channels per token.</summary>
    public int Dim { get; }

    public bool HasClassToken { get; }

    /// <summary>Index of the first patch token (1 after a class token).</summary>
    public int FirstPatchToken => HasClassToken ? 1 : 0;

    public int GridRows { get; }

    public int GridCols { get; }

    /// <summary>Tokens <c>[N, T, D]</c> of <paramref name="batch"/> images in [0, 1] pixel space.</summary>
    public float[] Embed(ReadOnlySpan<float> pixels, int batch, RunOptions? runOptions = null)
    {
        var input = Manifest.Input;
        return Run(_embed, "embed", ForwardGraph.PixelInput, pixels, [batch, input.Channels, input.Height, input.Width], TokenGraphSplitter.TokensName, runOptions);
    }

    /// <summary>Logits <c>[N, K]</c> from tokens <c>[N, T, D]</c>.</summary>
    public float[] Encode(ReadOnlySpan<float> tokens, int batch, RunOptions? runOptions = null) =>
        Encode(tokens, batch, TokenCount, runOptions);

    /// <summary>
    /// Logits <c>[N, K]</c> from a sequence of <paramref name="tokenCount"/> tokens <c>[N, T', D]</c>. An encoder
    /// that reshapes by Shape/Gather takes a shorter sequence (tokens dropped from attention); one with a fixed
    /// sequence length throws <see cref="OnnxRuntimeException"/>.
    /// </summary>
    public float[] Encode(ReadOnlySpan<float> tokens, int batch, int tokenCount, RunOptions? runOptions = null) =>
        Run(_encode, "encoder", TokenGraphSplitter.TokensName, tokens, [batch, tokenCount, Dim], ForwardGraph.LogitsOutput, runOptions);

    /// <summary>
    /// Logits <c>[N, K]</c> from tokens <c>[N, T, D]</c> with <paramref name="dropped"/>[i] removed from image i's
    /// sequence before the encoder: those tokens take no part in attention at all. Needs an encoder that takes any
    /// sequence length (<see cref="AcceptsShorterSequences"/>).
    /// </summary>
    public float[] EncodeDropping(ReadOnlySpan<float> tokens, int batch, IReadOnlyList<IReadOnlyCollection<int>> dropped, RunOptions? runOptions = null)
    {
        var all = Enumerable.Range(0, TokenCount);
        var kept = Enumerable.Range(0, batch).Select(i => all.Where(k => !dropped[i].Contains(k)).ToArray()).ToArray();
        return EncodeKept(tokens, Enumerable.Range(0, batch).ToArray(), kept, int.MaxValue, runOptions);
    }

    /// <summary>
    /// Logits <c>[R, K]</c>: row r runs the encoder on the tokens of image <paramref name="source"/>[r] of
    /// <paramref name="tokens"/> <c>[N, T, D]</c> at positions <paramref name="kept"/>[r], in that order. Rows that keep
    /// as many tokens run together, at most <paramref name="maxBatch"/> per ONNX Runtime run.
    /// </summary>
    public float[] EncodeKept(ReadOnlySpan<float> tokens, IReadOnlyList<int> source, IReadOnlyList<int[]> kept, int maxBatch, RunOptions? runOptions = null)
    {
        int t = TokenCount, d = Dim, classes = Manifest.Labels.Count;
        var logits = new float[kept.Count * classes];
        foreach (var group in Enumerable.Range(0, kept.Count).GroupBy(r => kept[r].Length))
        {
            var length = group.Key;
            foreach (var chunk in group.Chunk(maxBatch))
            {
                var compact = new float[chunk.Length * length * d];
                for (var c = 0; c < chunk.Length; c++)
                {
                    var image = source[chunk[c]] * t;
                    var positions = kept[chunk[c]];
                    for (var j = 0; j < length; j++)
                    {
                        tokens.Slice((image + positions[j]) * d, d).CopyTo(compact.AsSpan(((c * length) + j) * d, d));
                    }
                }

                var part = Encode(compact, chunk.Length, length, runOptions);
                for (var c = 0; c < chunk.Length; c++)
                {
                    part.AsSpan(c * classes, classes).CopyTo(logits.AsSpan(chunk[c] * classes, classes));
                }
            }
        }

        return logits;
    }

    /// <summary>Whether the encoder takes <c>T − 1</c> tokens and still answers <c>[1, K]</c> logits (its reshapes follow the input's shape).</summary>
    public bool AcceptsShorterSequences => _acceptsShorter ??= ProbeShorter();

    private bool? _acceptsShorter;

    private bool ProbeShorter()
    {
        try
        {
            return Encode(new float[(TokenCount - 1) * Dim], 1, TokenCount - 1).Length == Manifest.Labels.Count;
        }
        catch (OnnxRuntimeException)
        {
            return false;
        }
    }

    private static float[] Run(OrtSession session, string graph, string inputName, ReadOnlySpan<float> data, long[] shape, string outputName, RunOptions? runOptions)
    {
        var buffer = data.ToArray();
        using var tensor = OrtValue.CreateTensorValueFromMemory(buffer, shape);
        using var ro = runOptions is null ? new RunOptions() : null;
        using var activity = CoreActivities.OnnxRun(graph, (int)shape[0], session.ExecutionProvider);
        using var results = session.Session.Run(runOptions ?? ro!, [inputName], [tensor], [outputName]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public void Dispose()
    {
        _embed.Dispose();
        _encode.Dispose();
    }
}
