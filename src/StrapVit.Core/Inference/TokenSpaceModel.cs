using System.Buffers;
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
    private static readonly string[] PixelNames = [ForwardGraph.PixelInput];
    private static readonly string[] TokenNames = [TokenGraphSplitter.TokensName];
    private static readonly string[] LogitNames = [ForwardGraph.LogitsOutput];

    private readonly OnnxRunner _embed;
    private readonly OnnxRunner _encode;
    private readonly Lazy<OnnxRunner>? _encodeSingleThreaded;
    private readonly Lazy<OnnxRunner?>? _encodeKeyMasked;

    /// <exception cref="ModelPackageException">The package has no tokens tensor, or the split fails.</exception>
    public TokenSpaceModel(ModelPackage package, OnnxSessionFactory factory)
        : this(package, ForwardGraph.LoadNormalized(package), factory)
    {
    }

    /// <summary>The split of an already loaded normalized forward graph (which is not modified).</summary>
    /// <exception cref="ModelPackageException">The package has no tokens tensor, or the split fails.</exception>
    public TokenSpaceModel(ModelPackage package, global::Onnx.ModelProto forward, OnnxSessionFactory factory)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentNullException.ThrowIfNull(factory);
        var tokens = package.Manifest.Tokens
            ?? throw new ModelPackageException("model.json has no 'tokens' entry, so the model cannot be split into embedding and encoder.");
        var split = TokenGraphSplitter.Split(forward, tokens.Tensor);
        Manifest = package.Manifest;
        _embed = factory.Create(split.Embedding, "token embedding");
        // Over shared weights the graph now refers to them instead of holding them; the structure is all it is read for.
        EmbeddingGraph = split.Embedding;
        try
        {
            FusedAttentionBlocks = factory.Options.FuseAttention ? AttentionFusion.Optimize(split.Encoder) : 0;
            _encode = factory.Create(split.Encoder, "token encoder");
        }
        catch
        {
            _embed.Dispose();
            throw;
        }

        var probe = EmbedProbe();
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
        ViewParallelism = ChooseViewParallelism(factory.Options.ViewParallelism, _encode.ExecutionProvider, Dim);
        if (ViewParallelism > 1)
        {
            // Opened on first use (only certified mode and the masking check run views in parallel), from the graph as
            // the first session left it: over shared weights it holds references, not weights.
            var encoder = split.Encoder;
            _encodeSingleThreaded = new Lazy<OnnxRunner>(() => factory.Create(encoder, "token encoder, one thread per run", intraOpThreads: 1));
        }

        if (factory.Options.ViewMasking == ViewMasking.KeyMask && KeyMask.CanApply(split.Encoder))
        {
            // Opened on first use, like the single-threaded encoder, and only kept if it gives the dropped sequences' logits.
            var encoder = split.Encoder;
            _encodeKeyMasked = new Lazy<OnnxRunner?>(() => OpenKeyMasked(factory, encoder));
        }
    }

    /// <summary>
    /// Whether masked views run as whole sequences with a key mask (<see cref="ViewMasking.KeyMask"/>, all views in one
    /// batch) rather than with their hidden tokens dropped. The first call opens the key-masked encoder and checks it
    /// on a probe (a session and a few runs); false when it is not configured, does not apply or fails the probe.
    /// </summary>
    public bool MasksKeys => _encodeKeyMasked?.Value is not null;

    /// <summary>Token widths from which the automatic choice leaves masked views to the intra-op pool.</summary>
    internal const int ParallelViewsBelowDim = 256;

    /// <summary>
    /// <see cref="InferenceOptions.ViewParallelism"/> resolved: as configured when positive; automatic (0) is one run
    /// per processor for a narrow encoder on CPU, whose small ops parallelise poorly inside a run (fashion-vit-tiny,
    /// 64 channels: 0.5-0.7x the wall time), and 1 for a wide one, whose ops fill the intra-op pool (ViT-B/16, 768:
    /// no gain, docs/BENCHMARKS.md). Always 1 on CUDA.
    /// </summary>
    internal static int ChooseViewParallelism(int configured, string executionProvider, int dim) =>
        executionProvider != OnnxSessionFactory.Cpu ? 1
        : configured > 0 ? configured
        : dim < ParallelViewsBelowDim ? Environment.ProcessorCount : 1;

    public ModelManifest Manifest { get; }

    /// <summary>The embedding half of the split (pixels to tokens), e.g. to derive a token's receptive field from its Conv nodes.</summary>
    public global::Onnx.ModelProto EmbeddingGraph { get; }

    /// <summary>Tokens per image, the class token included.</summary>
    public int TokenCount { get; }

    /// <summary>Channels per token.</summary>
    public int Dim { get; }

    /// <summary>The execution provider the encoder runs on.</summary>
    public string ExecutionProvider => _encode.ExecutionProvider;

    public bool HasClassToken { get; }

    /// <summary>Index of the first patch token (1 after a class token).</summary>
    public int FirstPatchToken => HasClassToken ? 1 : 0;

    public int GridRows { get; }

    /// <summary>Self-attention blocks of the encoder that run as one fused operator (<see cref="AttentionFusion"/>).</summary>
    public int FusedAttentionBlocks { get; }

    /// <summary>Concurrent single-threaded runs that masked views are split over (<see cref="InferenceOptions.ViewParallelism"/>); 1 on CUDA.</summary>
    public int ViewParallelism { get; }

    public int GridCols { get; }

    /// <summary>Tokens <c>[N, T, D]</c> of <paramref name="batch"/> images in [0, 1] pixel space.</summary>
    public float[] Embed(ReadOnlySpan<float> pixels, int batch, CancellationToken cancellationToken = default)
    {
        var input = Manifest.Input;
        var result = new float[batch * TokenCount * Dim];
        Run(_embed, "embed", PixelNames, pixels, [batch, input.Channels, input.Height, input.Width], TokenNames, result, [batch, TokenCount, Dim], cancellationToken);
        return result;
    }

    /// <summary>Logits <c>[N, K]</c> from tokens <c>[N, T, D]</c>.</summary>
    public float[] Encode(ReadOnlySpan<float> tokens, int batch, CancellationToken cancellationToken = default) =>
        Encode(tokens, batch, TokenCount, cancellationToken);

    /// <summary>
    /// Logits <c>[N, K]</c> from a sequence of <paramref name="tokenCount"/> tokens <c>[N, T', D]</c>. An encoder
    /// that reshapes by Shape/Gather takes a shorter sequence (tokens dropped from attention); one with a fixed
    /// sequence length throws <see cref="OnnxRuntimeException"/>.
    /// </summary>
    public float[] Encode(ReadOnlySpan<float> tokens, int batch, int tokenCount, CancellationToken cancellationToken = default)
    {
        var result = new float[batch * Manifest.Labels.Count];
        Encode(tokens, batch, tokenCount, result, cancellationToken);
        return result;
    }

    private void Encode(ReadOnlySpan<float> tokens, int batch, int tokenCount, Memory<float> logits, CancellationToken cancellationToken) =>
        Run(_encode, "encoder", TokenNames, tokens, [batch, tokenCount, Dim], LogitNames, logits, [batch, Manifest.Labels.Count], cancellationToken);

    /// <summary>
    /// Logits <c>[N, K]</c> from tokens <c>[N, T, D]</c> with <paramref name="dropped"/>[i] removed from image i's
    /// sequence before the encoder: those tokens take no part in attention at all. Needs an encoder that takes any
    /// sequence length (<see cref="AcceptsShorterSequences"/>).
    /// </summary>
    public float[] EncodeDropping(ReadOnlySpan<float> tokens, int batch, IReadOnlyList<IReadOnlyCollection<int>> dropped, CancellationToken cancellationToken = default)
    {
        var all = Enumerable.Range(0, TokenCount);
        var kept = Enumerable.Range(0, batch).Select(i => all.Where(k => !dropped[i].Contains(k)).ToArray()).ToArray();
        return EncodeKept(tokens, Enumerable.Range(0, batch).ToArray(), kept, int.MaxValue, cancellationToken);
    }

    /// <summary>
    /// Logits <c>[V, K]</c> of views of the images in <paramref name="tokens"/> <c>[N, T, D]</c>: view v is image
    /// <paramref name="sources"/>[v] with the token positions <paramref name="hidden"/>[v] hidden. Hidden tokens are
    /// dropped from the sequence when <paramref name="replacement"/> is null (needs <see cref="AcceptsShorterSequences"/>),
    /// else each is replaced by <c>replacement[position]</c>. At most <paramref name="maxBatch"/> views per run.
    /// Certified mode's masks and the defense's masking check both hide tokens this way.
    /// </summary>
    public float[] EncodeHiding(ReadOnlySpan<float> tokens, IReadOnlyList<int> sources, IReadOnlyList<IReadOnlyCollection<int>> hidden,
        IReadOnlyList<float[]>? replacement, int maxBatch, CancellationToken cancellationToken = default)
    {
        int t = TokenCount, d = Dim, classes = Manifest.Labels.Count;
        if (replacement is null)
        {
            var kept = hidden.Select(h => Enumerable.Range(0, t).Where(k => !h.Contains(k)).ToArray()).ToArray();
            return EncodeKept(tokens, sources, kept, maxBatch, cancellationToken);
        }

        var logits = new float[hidden.Count * classes];
        for (var start = 0; start < hidden.Count; start += maxBatch)
        {
            var n = Math.Min(maxBatch, hidden.Count - start);
            var batch = new float[n * t * d];
            for (var v = 0; v < n; v++)
            {
                var view = batch.AsSpan(v * t * d, t * d);
                tokens.Slice(sources[start + v] * t * d, t * d).CopyTo(view);
                foreach (var k in hidden[start + v]) replacement[k].CopyTo(view.Slice(k * d, d));
            }

            Encode(batch, n, cancellationToken).CopyTo(logits, start * classes);
        }

        return logits;
    }

    /// <summary>
    /// Logits <c>[R, K]</c>: row r runs the encoder on the tokens of image <paramref name="source"/>[r] of
    /// <paramref name="tokens"/> <c>[N, T, D]</c> at positions <paramref name="kept"/>[r], in that order. Rows that keep
    /// as many tokens run together, at most <paramref name="maxBatch"/> per ONNX Runtime run.
    /// </summary>
    public float[] EncodeKept(ReadOnlySpan<float> tokens, IReadOnlyList<int> source, IReadOnlyList<int[]> kept, int maxBatch, CancellationToken cancellationToken = default)
    {
        // Rows of one length already share a run; rows of several lengths share one with a key mask, where it applies.
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBatch);
        if (_encodeKeyMasked is not null && kept.Count > 1 && kept.Any(k => k.Length != kept[0].Length) && KeepsInOrder(kept) && _encodeKeyMasked.Value is { } masked)
        {
            return EncodeKeyMasked(masked, tokens, source, kept, maxBatch, cancellationToken);
        }

        return EncodeKeptDropping(tokens, source, kept, maxBatch, cancellationToken);
    }

    private float[] EncodeKeptDropping(ReadOnlySpan<float> tokens, IReadOnlyList<int> source, IReadOnlyList<int[]> kept, int maxBatch, CancellationToken cancellationToken)
    {
        int t = TokenCount, d = Dim, classes = Manifest.Labels.Count;
        var logits = new float[kept.Count * classes];
        foreach (var group in Enumerable.Range(0, kept.Count).GroupBy(r => kept[r].Length))
        {
            var length = group.Key;
            foreach (var chunk in group.Chunk(maxBatch))
            {
                // The kept tokens are gathered into one pooled buffer; logits land in a pooled buffer and are scattered
                // to their rows (contiguous groups are written in place).
                var compact = ArrayPool<float>.Shared.Rent(chunk.Length * length * d);
                var contiguous = chunk.Select((r, c) => r - c).Distinct().Count() == 1;
                var part = contiguous ? null : ArrayPool<float>.Shared.Rent(chunk.Length * classes);
                try
                {
                    for (var c = 0; c < chunk.Length; c++)
                    {
                        var image = source[chunk[c]] * t;
                        var positions = kept[chunk[c]];
                        for (var j = 0; j < length; j++)
                        {
                            tokens.Slice((image + positions[j]) * d, d).CopyTo(compact.AsSpan(((c * length) + j) * d, d));
                        }
                    }

                    var output = part is null ? logits.AsMemory(chunk[0] * classes, chunk.Length * classes) : part.AsMemory(0, chunk.Length * classes);
                    EncodeViews(compact.AsMemory(0, chunk.Length * length * d), chunk.Length, length, output, cancellationToken);
                    for (var c = 0; part is not null && c < chunk.Length; c++)
                    {
                        part.AsSpan(c * classes, classes).CopyTo(logits.AsSpan(chunk[c] * classes, classes));
                    }
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(compact);
                    if (part is not null) ArrayPool<float>.Shared.Return(part);
                }
            }
        }

        return logits;
    }

    /// <summary>
    /// Whether each row keeps distinct positions in increasing order, and the class token: then its key mask is the same
    /// sequence (attention does not depend on the tokens' order once their positions are embedded).
    /// </summary>
    private bool KeepsInOrder(IReadOnlyList<int[]> kept)
    {
        foreach (var row in kept)
        {
            if (row.Length == 0 || row[0] < 0 || (HasClassToken && row[0] != 0) || row[^1] >= TokenCount) return false;
            for (var j = 1; j < row.Length; j++)
            {
                if (row[j] <= row[j - 1]) return false;
            }
        }

        return true;
    }

    /// <summary>Logits of the rows as whole sequences with a key mask, at most <paramref name="maxBatch"/> rows per run; hidden tokens are zeroed.</summary>
    private unsafe float[] EncodeKeyMasked(OnnxRunner session, ReadOnlySpan<float> tokens, IReadOnlyList<int> source, IReadOnlyList<int[]> kept, int maxBatch, CancellationToken cancellationToken)
    {
        int t = TokenCount, d = Dim, classes = Manifest.Labels.Count;
        var logits = new float[kept.Count * classes];
        for (var start = 0; start < kept.Count; start += maxBatch)
        {
            var n = Math.Min(maxBatch, kept.Count - start);
            var batch = ArrayPool<float>.Shared.Rent(n * t * d);
            var mask = ArrayPool<int>.Shared.Rent(n * t);
            try
            {
                Array.Clear(batch, 0, n * t * d);
                Array.Clear(mask, 0, n * t);
                for (var v = 0; v < n; v++)
                {
                    var image = source[start + v] * t;
                    foreach (var k in kept[start + v])
                    {
                        mask[(v * t) + k] = 1;
                        tokens.Slice((image + k) * d, d).CopyTo(batch.AsSpan(((v * t) + k) * d, d));
                    }
                }

                fixed (float* tokenPointer = batch)
                fixed (int* maskPointer = mask)
                {
                    using var tokenValue = OnnxRunner.Pinned(tokenPointer, n * t * d, [n, t, d]);
                    using var maskValue = OnnxRunner.Pinned(maskPointer, n * t, [n, t]);
                    using var result = OnnxRunner.Output(logits.AsMemory(start * classes, n * classes), [n, classes]);
                    using var activity = CoreActivities.OnnxRun("encoder", n, session.ExecutionProvider);
                    session.Run(KeyMaskedNames, [tokenValue, maskValue], LogitNames, [result], cancellationToken);
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(batch);
                ArrayPool<int>.Shared.Return(mask);
            }
        }

        return logits;
    }

    private static readonly string[] KeyMaskedNames = [TokenGraphSplitter.TokensName, KeyMask.InputName];

    /// <summary>
    /// The encoder with a key mask, kept only if it gives the dropped sequences' logits on a probe (seeded random tokens,
    /// views hiding one to three tokens): the equivalence <see cref="KeyMask"/> relies on, checked on this very model.
    /// </summary>
    private OnnxRunner? OpenKeyMasked(OnnxSessionFactory factory, global::Onnx.ModelProto encoder)
    {
        OnnxRunner? runner = null;
        try
        {
            var graph = encoder.Clone();
            if (!KeyMask.Apply(graph)) return null;
            runner = factory.Create(graph, "token encoder, key mask");
            var random = new Random(20261201);
            var tokens = Enumerable.Range(0, 2 * TokenCount * Dim).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
            var first = FirstPatchToken;
            int[][] kept =
            [
                .. Enumerable.Range(1, 3).Select(h => Enumerable.Range(0, TokenCount).Where(k => k < first || k >= first + h).ToArray()),
                Enumerable.Range(0, TokenCount).ToArray(),
            ];
            int[] sources = [0, 1, 0, 1];
            var dropped = EncodeKeptDropping(tokens, sources, kept, int.MaxValue, CancellationToken.None);
            var masked = EncodeKeyMasked(runner, tokens, sources, kept, int.MaxValue, CancellationToken.None);
            var scale = 1 + dropped.Max(Math.Abs);
            if (dropped.Zip(masked).All(p => Math.Abs(p.First - p.Second) <= 1e-3 * scale)) return runner;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A provider that rejects the mask inputs, or a session that cannot open: views keep dropping their tokens
            // (the Lazy must not keep an exception, which it would rethrow to every later request).
        }

        runner?.Dispose();
        return null;
    }

    /// <summary>Fewest views worth a run of their own on the single-threaded encoder.</summary>
    private const int MinViewsPerRun = 8;

    /// <summary>
    /// Most views per single-threaded run. A small encoder runs fastest per view at a few dozen views a run (its
    /// activations stay in cache): fashion-vit-tiny costs about 340 µs a view at 32-64 and 420 at 128 or more.
    /// </summary>
    private const int MaxViewsPerRun = 32;

    /// <summary>
    /// Encodes <paramref name="views"/> sequences of <paramref name="length"/> tokens. On CPU they are cut into runs of
    /// at most <see cref="MaxViewsPerRun"/> views that <see cref="ViewParallelism"/> workers take in turn on the
    /// single-threaded encoder; too few views for two runs go to the intra-op pool as one run. Same logits either way.
    /// </summary>
    private void EncodeViews(Memory<float> tokens, int views, int length, Memory<float> logits, CancellationToken cancellationToken)
    {
        var perRun = Math.Clamp((views + ViewParallelism - 1) / ViewParallelism, MinViewsPerRun, MaxViewsPerRun);
        var runs = (views + perRun - 1) / perRun;
        if (_encodeSingleThreaded is null || runs <= 1)
        {
            Encode(tokens.Span, views, length, logits, cancellationToken);
            return;
        }

        int d = Dim, classes = Manifest.Labels.Count;
        var session = _encodeSingleThreaded.Value;
        try
        {
            Parallel.For(0, runs, new ParallelOptions { MaxDegreeOfParallelism = ViewParallelism, CancellationToken = cancellationToken }, r =>
            {
                int start = r * perRun, count = Math.Min(perRun, views - start);
                Run(session, "encoder", TokenNames, tokens.Span.Slice(start * length * d, count * length * d), [count, length, d],
                    LogitNames, logits.Slice(start * classes, count * classes), [count, classes], cancellationToken);
            });
        }
        catch (AggregateException ex) when (ex.InnerExceptions.Count > 0)
        {
            // Callers handle what one run throws (cancellation, a disposed runner, an ONNX Runtime error), not a bundle.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerExceptions[0]).Throw();
            throw;
        }
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

    private static unsafe void Run(OnnxRunner session, string graph, string[] inputNames, ReadOnlySpan<float> data, long[] shape, string[] outputNames, Memory<float> output, long[] outputShape, CancellationToken cancellationToken)
    {
        fixed (float* pointer = data)
        {
            using var tensor = OnnxRunner.Pinned(pointer, data.Length, shape);
            using var result = OnnxRunner.Output(output, outputShape);
            using var activity = CoreActivities.OnnxRun(graph, (int)shape[0], session.ExecutionProvider);
            session.Run(inputNames, [tensor], outputNames, [result], cancellationToken);
        }
    }

    /// <summary>One embedding of a blank image with ONNX Runtime's own output, to learn T·D before any buffer is sized by them.</summary>
    private unsafe float[] EmbedProbe()
    {
        var input = Manifest.Input;
        var pixels = new float[input.Size];
        fixed (float* pointer = pixels)
        {
            using var tensor = OnnxRunner.Pinned(pointer, pixels.Length, [1, input.Channels, input.Height, input.Width]);
            using var results = _embed.RunAllocated(PixelNames, [tensor], TokenNames);
            return results[0].GetTensorDataAsSpan<float>().ToArray();
        }
    }

    public void Dispose()
    {
        _embed.Dispose();
        _encode.Dispose();
        if (_encodeSingleThreaded is { IsValueCreated: true }) _encodeSingleThreaded.Value.Dispose();
        if (_encodeKeyMasked is { IsValueCreated: true }) _encodeKeyMasked.Value?.Dispose();
    }
}
