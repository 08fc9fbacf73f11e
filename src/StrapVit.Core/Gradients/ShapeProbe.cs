using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;

namespace StrapVit.Core.Gradients;

/// <summary>
/// A tensor's dims as observed at the two probe batch sizes. A dim that differs between the two scales with the
/// batch N; every other dim is static for this model (H and W are fixed by the package).
/// </summary>
internal sealed record Dims(long[] AtA, long[] AtB)
{
    public int Rank => AtA.Length;

    public bool IsBatch(int axis) => AtA[axis] != AtB[axis];

    public int BatchDimCount => Enumerable.Range(0, Rank).Count(IsBatch);

    public bool HasBatchDim => BatchDimCount > 0;

    /// <summary>Same dims for a tensor that does not depend on N (initializers, constants).</summary>
    public static Dims Static(long[] dims) => new(dims, dims);

    /// <summary>The dims with one entry per axis set to its size at batch size 1 (-1 for a batch dim, for Reshape).</summary>
    public long[] ReshapeTarget() =>
        Enumerable.Range(0, Rank).Select(i => IsBatch(i) ? -1L : AtA[i]).ToArray();

    /// <summary>Number of elements over <paramref name="axes"/>; null when one of them scales with N.</summary>
    public long? StaticCount(IEnumerable<int> axes)
    {
        long n = 1;
        foreach (var a in axes)
        {
            if (IsBatch(a)) return null;
            n *= AtA[a];
        }

        return n;
    }

    public Dims Select(Func<long[], long[]> f) => new(f(AtA), f(AtB));

    public override string ToString() => "[" + string.Join(", ", Enumerable.Range(0, Rank).Select(i => IsBatch(i) ? $"{AtA[i]}|{AtB[i]}" : AtA[i].ToString())) + "]";
}

/// <summary>What the probe learned about one tensor: element type, dims, and small integer/float contents.</summary>
internal sealed record ProbedTensor(int ElemType, Dims Dims, long[]? Ints, float[]? Floats, bool ValuesDependOnBatch);

/// <summary>
/// Learns the element type and dims of every intermediate tensor by running the forward graph on a CPU session
/// with every node output exposed as a graph output, at two batch sizes.
/// Why not shape inference: exported ViTs carry almost no value_info, their shapes flow through Shape/Gather/Concat
/// arithmetic that static inference only resolves with data propagation, and OnnxSharp has no inference of its own.
/// ONNX Runtime already evaluates all of that exactly; two batch sizes tell which dims scale with N, so the
/// gradient graph can keep N symbolic. The integer tensors the rules need as values (Slice starts, Gather indices,
/// Reshape targets) come out of the same runs, whether they are initializers, Constants or computed.
/// </summary>
internal static class ShapeProbe
{
    public const int BatchA = 2;
    public const int BatchB = 3;

    private const int MaxIntValues = 1 << 16;
    private const int MaxFloatValues = 64;

    /// <param name="model">Forward model; not modified.</param>
    /// <param name="input">Name of the single float input, whose dim 0 is the batch.</param>
    /// <param name="sampleDims">Non-batch dims of the input, e.g. [C, H, W].</param>
    public static Dictionary<string, ProbedTensor> Run(ModelProto model, string input, long[] sampleDims)
    {
        var probe = model.Clone();
        var graph = probe.Graph;
        var exposed = new HashSet<string>(graph.Output.Select(o => o.Name), StringComparer.Ordinal);
        foreach (var name in graph.Node.SelectMany(n => n.Output))
        {
            // A bare name is enough for ONNX Runtime: it infers the type of an added graph output.
            if (name.Length > 0 && exposed.Add(name)) graph.Output.Add(new ValueInfoProto { Name = name });
        }

        var names = graph.Output.Select(o => o.Name).ToArray();
        var result = new Dictionary<string, ProbedTensor>(StringComparer.Ordinal);
        try
        {
            using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC };
            using var session = new InferenceSession(probe.ToByteArray(), options);
            var a = RunAt(session, input, sampleDims, BatchA, names);
            var b = RunAt(session, input, sampleDims, BatchB, names);
            foreach (var name in names)
            {
                if (!a.TryGetValue(name, out var ta) || !b.TryGetValue(name, out var tb)) continue;
                if (ta.Dims.Length != tb.Dims.Length)
                {
                    throw new GradientGraphException(
                        $"Tensor '{name}' has rank {ta.Dims.Length} at batch {BatchA} but {tb.Dims.Length} at batch {BatchB}; the graph must keep its ranks for every batch size.");
                }

                var varies = ta.Ints is not null && tb.Ints is not null && !ta.Ints.SequenceEqual(tb.Ints);
                result[name] = new ProbedTensor(ta.ElemType, new Dims(ta.Dims, tb.Dims), tb.Ints, tb.Floats, varies);
            }

            var inputDims = new Dims([BatchA, .. sampleDims], [BatchB, .. sampleDims]);
            result[input] = new ProbedTensor(OnnxProto.Float, inputDims, null, null, false);
        }
        catch (OnnxRuntimeException ex)
        {
            throw new GradientGraphException($"The forward graph could not be run to learn its shapes: {ex.Message.Split('\n')[0]}", ex);
        }

        foreach (var init in graph.Initializer)
        {
            result[init.Name] = new ProbedTensor(init.DataType, Dims.Static(init.Dims.ToArray()), OnnxProto.ReadInts(init), SmallFloats(init), false);
        }

        return result;
    }

    private static float[]? SmallFloats(TensorProto t)
    {
        var count = t.Dims.Aggregate(1L, (acc, d) => acc * d);
        return count <= MaxFloatValues ? OnnxProto.ReadFloats(t) : null;
    }

    private sealed record Observed(int ElemType, long[] Dims, long[]? Ints, float[]? Floats);

    private static Dictionary<string, Observed> RunAt(InferenceSession session, string input, long[] sampleDims, int batch, string[] names)
    {
        long[] shape = [batch, .. sampleDims];
        var count = (int)shape.Aggregate(1L, (acc, d) => acc * d);
        var data = new float[count];
        var rng = new Random(1234 + batch);
        for (var i = 0; i < count; i++)
        {
            data[i] = (float)rng.NextDouble();
        }

        using var value = OrtValue.CreateTensorValueFromMemory(data, shape);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, [input], [value], names);
        var observed = new Dictionary<string, Observed>(StringComparer.Ordinal);
        for (var i = 0; i < names.Length; i++)
        {
            var v = outputs[i];
            if (v.OnnxType != OnnxValueType.ONNX_TYPE_TENSOR) continue;
            var info = v.GetTensorTypeAndShape();
            long[]? ints = null;
            float[]? floats = null;
            if (info.ElementCount <= MaxIntValues)
            {
                ints = info.ElementDataType switch
                {
                    TensorElementType.Int64 => v.GetTensorDataAsSpan<long>().ToArray(),
                    TensorElementType.Int32 => v.GetTensorDataAsSpan<int>().ToArray().Select(x => (long)x).ToArray(),
                    _ => null,
                };
            }

            if (info.ElementCount <= MaxFloatValues && info.ElementDataType == TensorElementType.Float)
            {
                floats = v.GetTensorDataAsSpan<float>().ToArray();
            }

            observed[names[i]] = new Observed((int)info.ElementDataType, info.Shape, ints, floats);
        }

        return observed;
    }
}
