using Onnx;
using StrapVit.Core.Gradients;

namespace StrapVit.Core.Onnx;

/// <summary>
/// Who produces and who reads each tensor of a graph, and the constants it holds: what the graph rewrites
/// (<see cref="AttentionFusion"/>, <see cref="ClassTokenReadout"/>) match their patterns against. A snapshot: rebuild it
/// after editing the graph.
/// </summary>
internal sealed class GraphIndex
{
    private readonly Dictionary<string, NodeProto> _producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<NodeProto>> _readers = new(StringComparer.Ordinal);

    public GraphIndex(GraphProto graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        foreach (var n in graph.Node)
        {
            foreach (var o in n.Output) _producers[o] = n;
            foreach (var i in n.Input)
            {
                if (!_readers.TryGetValue(i, out var list)) _readers[i] = list = [];
                list.Add(n);
            }
        }

        Initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        Outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
    }

    public Dictionary<string, TensorProto> Initializers { get; }

    /// <summary>Names of the graph's outputs.</summary>
    public HashSet<string> Outputs { get; }

    /// <summary>The node that writes <paramref name="tensor"/>, or null for a graph input or initializer.</summary>
    public NodeProto? Producer(string tensor) => _producers.GetValueOrDefault(tensor);

    /// <summary>The producer when it is a default-domain <paramref name="op"/>, else null.</summary>
    public NodeProto? Producer(string tensor, string op) =>
        _producers.TryGetValue(tensor, out var n) && n.OpType == op && OnnxProto.IsDefaultDomain(n.Domain) ? n : null;

    /// <summary>The nodes that read <paramref name="tensor"/>.</summary>
    public IReadOnlyList<NodeProto> Readers(string tensor) => _readers.TryGetValue(tensor, out var l) ? l : [];

    /// <summary>The single reader when it is a default-domain <paramref name="op"/> and the tensor is no graph output, else null.</summary>
    public NodeProto? OnlyReader(string tensor, string op) =>
        !Outputs.Contains(tensor) && Readers(tensor) is [var u] && u.OpType == op && OnnxProto.IsDefaultDomain(u.Domain) ? u : null;

    /// <summary>
    /// The tensor behind a chain of Identity nodes (the exporter passes a parameter that several nodes share through
    /// them), or <paramref name="tensor"/> itself.
    /// </summary>
    public string Source(string tensor)
    {
        while (Producer(tensor, "Identity") is { } p) tensor = p.Input[0];
        return tensor;
    }

    /// <summary>Whether <paramref name="tensor"/> is absent (an empty name), an initializer or a Constant node's output, Identity chains looked through.</summary>
    public bool IsConstant(string tensor) =>
        tensor.Length == 0 || Initializers.ContainsKey(Source(tensor)) || Producer(Source(tensor), "Constant") is not null;

    /// <summary>The value of an initializer or Constant node (Identity chains looked through), or null.</summary>
    public TensorProto? Constant(string tensor)
    {
        var source = Source(tensor);
        return Initializers.TryGetValue(source, out var t) ? t : Producer(source, "Constant") is { } c ? OnnxProto.ConstantValue(c) : null;
    }

    public long[]? Ints(string tensor) => Constant(tensor) is { } t ? OnnxProto.ReadInts(t) : null;

    public float[]? Floats(string tensor) => Constant(tensor) is { } t ? OnnxProto.ReadFloats(t) : null;
}
