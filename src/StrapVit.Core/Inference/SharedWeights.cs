using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;

namespace StrapVit.Core.Inference;

/// <summary>
/// One copy of a model's weights in native memory, given to every session of the model (forward, token split,
/// gradient graphs) through <see cref="SessionOptions.AddInitializer"/>, so the weights are held once however many
/// graphs use them. The graphs keep each weight as an initializer whose data is external: ONNX Runtime needs that
/// external file to exist and its graph optimizers read it while a session is created, so the same bytes are also
/// written once to <c>{sha256}.weights.v{Version}.bin</c> in the cache folder. Sessions then never copy them.
/// </summary>
/// <remarks>
/// Sessions over shared weights run with prepacking off: ONNX Runtime prepacks a shared initializer into a private
/// copy per session and cannot free the shared one, which would hold the weights twice or more.
/// </remarks>
public sealed unsafe partial class SharedWeights : IDisposable
{
    /// <summary>Bumped when the file layout changes.</summary>
    public const int Version = 1;

    /// <summary>Weights at least this large are shared; smaller ones stay in the graphs.</summary>
    public const int MinBytes = 1024;

    /// <summary>Ops whose weight operand (index 1) is shared; the matrix products and convolutions hold nearly all parameters.</summary>
    private static readonly HashSet<string> WeightConsumers = new(StringComparer.Ordinal) { "MatMul", "Gemm", "Conv" };

    /// <summary>Contrib ops whose weight operand (index 1) is shared: the fused attention's packed q/k/v projection.</summary>
    private static readonly HashSet<string> ContribWeightConsumers = new(StringComparer.Ordinal) { "Attention" };

    private const int Alignment = 64;

    private readonly Dictionary<string, Entry> entries;
    private byte* block;

    private SharedWeights(Dictionary<string, Entry> entries, byte* block, long bytes, string filePath)
    {
        this.entries = entries;
        this.block = block;
        Bytes = bytes;
        FilePath = filePath;
    }

    /// <summary>Bytes of weights held (once).</summary>
    public long Bytes { get; }

    /// <summary>Number of shared initializers.</summary>
    public int Count => entries.Count;

    /// <summary>The external-data file the graphs point to.</summary>
    public string FilePath { get; }

    /// <summary>
    /// Copies the large float initializers of <paramref name="forward"/> into native memory and makes sure their file
    /// exists in the first of <paramref name="folders"/> that can hold it. Null, with the reason logged, when no folder
    /// is writable: the sessions then embed their weights as before.
    /// </summary>
    public static SharedWeights? TryCreate(ModelProto forward, string modelSha256, IEnumerable<string> folders, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(forward);
        var weights = WeightOperands(forward.Graph);
        var layout = new List<(TensorProto Tensor, long Offset, int Length)>();
        long total = 0;
        foreach (var init in forward.Graph.Initializer)
        {
            var length = FloatBytes(init);
            if (length < MinBytes || !weights.Contains(init.Name)) continue;
            total = Align(total);
            layout.Add((init, total, length));
            total += length;
        }

        if (layout.Count == 0) return null;
        var fileName = $"{modelSha256}.weights.v{Version}.bin";
        string? path = null;
        foreach (var folder in folders)
        {
            if (TryEnsureFile(Path.Combine(folder, fileName), layout, total, logger)) { path = Path.Combine(Path.GetFullPath(folder), fileName); break; }
        }

        if (path is null)
        {
            LogNoFolder(logger, fileName);
            return null;
        }

        var block = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(total, 1), Alignment);
        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        try
        {
            foreach (var (tensor, offset, length) in layout)
            {
                var target = new Span<byte>(block + offset, length);
                Data(tensor).CopyTo(target);
                var value = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, tensor.Dims.ToArray(), (IntPtr)(block + offset), length);
                entries[tensor.Name] = new Entry(value, tensor.Dims.ToArray(), offset, length);
            }
        }
        catch
        {
            foreach (var e in entries.Values) e.Value.Dispose();
            NativeMemory.AlignedFree(block);
            throw;
        }

        return new SharedWeights(entries, block, total, path);
    }

    /// <summary>
    /// Points every shared weight that <paramref name="model"/> holds (same name, shape and bytes) at the weights file
    /// instead of carrying its data, in place, and returns the names its session must be given. Initializers already
    /// pointing at the file (a graph read back from the cache) are checked and counted; anything else stays embedded.
    /// </summary>
    public IReadOnlyList<string> Detach(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        ObjectDisposedException.ThrowIf(block is null, this);
        var names = new List<string>();
        var file = Path.GetFileName(FilePath);
        foreach (var init in model.Graph.Initializer)
        {
            if (!entries.TryGetValue(init.Name, out var e) || !init.Dims.SequenceEqual(e.Dims) || init.DataType != (int)TensorProto.Types.DataType.Float) continue;
            if (init.DataLocation == TensorProto.Types.DataLocation.External)
            {
                if (!PointsAt(init, file, e))
                {
                    throw new InvalidDataException($"Initializer '{init.Name}' points at external data other than {file}.");
                }

                names.Add(init.Name);
                continue;
            }

            if (FloatBytes(init) != e.Length || !Data(init).SequenceEqual(new ReadOnlySpan<byte>(block + e.Offset, e.Length))) continue;
            init.RawData = ByteString.Empty;
            init.FloatData.Clear();
            init.DataLocation = TensorProto.Types.DataLocation.External;
            init.ExternalData.Clear();
            init.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = file });
            init.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = e.Offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            init.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = e.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            names.Add(init.Name);
        }

        return names;
    }

    /// <summary>Whether every external initializer of <paramref name="model"/> is one of these weights (a cached graph that fits them).</summary>
    public bool Covers(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var file = Path.GetFileName(FilePath);
        return model.Graph.Initializer
            .Where(i => i.DataLocation == TensorProto.Types.DataLocation.External)
            .All(i => entries.TryGetValue(i.Name, out var e) && i.Dims.SequenceEqual(e.Dims) && PointsAt(i, file, e));
    }

    /// <summary>Gives <paramref name="options"/> the named weights and tells it where their file lives.</summary>
    public void AddTo(SessionOptions options, IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(block is null, this);
        options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(FilePath)!);
        foreach (var name in names)
        {
            options.AddInitializer(name, entries[name].Value);
        }
    }

    /// <summary>Frees the weights; only once every session using them is disposed.</summary>
    public void Dispose()
    {
        if (block is null) return;
        foreach (var e in entries.Values) e.Value.Dispose();
        NativeMemory.AlignedFree(block);
        block = null;
    }

    /// <summary>
    /// Initializers used only as the weight operand of MatMul, Gemm or Conv. ONNX Runtime's graph optimizers rewrite
    /// some initializers in place (a norm scale or bias unsqueezed and transposed to push a Transpose through an
    /// elementwise op); a rewritten shared initializer would no longer match the value the session is given, so
    /// vectors, embeddings and anything else stay inside the graphs (about 1% of a ViT's parameters).
    /// </summary>
    private static HashSet<string> WeightOperands(GraphProto graph)
    {
        var consumers = new Dictionary<string, List<(NodeProto Node, int Index)>>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (!consumers.TryGetValue(node.Input[i], out var list)) consumers[node.Input[i]] = list = [];
                list.Add((node, i));
            }
        }

        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        return consumers.Where(c => !outputs.Contains(c.Key) && c.Value.All(u => u.Index == 1 && (string.IsNullOrEmpty(u.Node.Domain)
                ? WeightConsumers.Contains(u.Node.OpType)
                : u.Node.Domain == StrapVit.Core.Onnx.AttentionFusion.MicrosoftDomain && ContribWeightConsumers.Contains(u.Node.OpType))))
            .Select(c => c.Key).ToHashSet(StringComparer.Ordinal);
    }

    private static bool PointsAt(TensorProto init, string file, Entry e)
    {
        string? Get(string key) => init.ExternalData.FirstOrDefault(d => d.Key == key)?.Value;
        return Get("location") == file
            && long.TryParse(Get("offset"), System.Globalization.CultureInfo.InvariantCulture, out var offset) && offset == e.Offset
            && long.TryParse(Get("length"), System.Globalization.CultureInfo.InvariantCulture, out var length) && length == e.Length;
    }

    private static long Align(long offset) => (offset + Alignment - 1) / Alignment * Alignment;

    /// <summary>Byte length of an embedded float initializer's data, or 0 for anything else.</summary>
    private static int FloatBytes(TensorProto t)
    {
        if (t.DataType != (int)TensorProto.Types.DataType.Float || t.DataLocation == TensorProto.Types.DataLocation.External) return 0;
        var expected = t.Dims.Aggregate(1L, (a, d) => a * d) * sizeof(float);
        var actual = t.RawData.IsEmpty ? t.FloatData.Count * sizeof(float) : t.RawData.Length;
        return actual == expected && expected <= int.MaxValue ? (int)expected : 0;
    }

    private static ReadOnlySpan<byte> Data(TensorProto t) =>
        t.RawData.IsEmpty ? MemoryMarshal.AsBytes(t.FloatData.ToArray().AsSpan()) : t.RawData.Span;

    private static bool TryEnsureFile(string path, List<(TensorProto Tensor, long Offset, int Length)> layout, long total, ILogger logger)
    {
        try
        {
            if (File.Exists(path) && new FileInfo(path).Length == total) return true;
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            // A unique temp file renamed into place, so a concurrent reader never sees half a file.
            var temp = $"{path}.{Guid.NewGuid():N}.tmp";
            try
            {
                using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
                {
                    stream.SetLength(total);
                    foreach (var (tensor, offset, _) in layout)
                    {
                        stream.Position = offset;
                        stream.Write(Data(tensor));
                    }
                }

                File.Move(temp, path, overwrite: true);
            }
            finally
            {
                if (File.Exists(temp)) File.Delete(temp);
            }

            LogWritten(logger, path, total);
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogUnwritable(logger, path, ex.Message);
            return false;
        }
    }

    private sealed record Entry(OrtValue Value, long[] Dims, long Offset, int Length);

    [LoggerMessage(Level = LogLevel.Information, Message = "Shared weights written to {Path} ({Bytes} bytes)")]
    private static partial void LogWritten(ILogger logger, string path, long bytes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot write shared weights to {Path}: {Reason}")]
    private static partial void LogUnwritable(ILogger logger, string path, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "No writable folder for {File}: every session keeps its own copy of the weights")]
    private static partial void LogNoFolder(ILogger logger, string file);
}
