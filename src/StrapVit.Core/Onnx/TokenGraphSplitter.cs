using Onnx;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;

namespace StrapVit.Core.Onnx;

/// <summary>
/// The forward graph cut in two at the token tensor named in <c>model.json</c> (<c>tokens.tensor</c>): an embedding
/// graph <c>pixel_values [N,C,H,W] -> tokens [N,T,D]</c> and an encoder graph <c>tokens -> logits [N,K]</c>, so a defense
/// can inspect and rewrite tokens between the two.
/// </summary>
public sealed record SplitGraphs(ModelProto Embedding, ModelProto Encoder);

/// <summary>ONNX surgery that splits a normalized forward graph at its token tensor.</summary>
public static class TokenGraphSplitter
{
    public const string TokensName = "tokens";

    /// <exception cref="ModelPackageException">The tensor is absent, or the encoder would still need the pixels.</exception>
    public static SplitGraphs Split(ModelProto forward, string tokensTensor)
    {
        var graph = forward.Graph;
        var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            foreach (var output in node.Output)
            {
                producers[output] = node;
            }
        }

        if (!producers.ContainsKey(tokensTensor))
        {
            throw new ModelPackageException($"model.json tokens.tensor '{tokensTensor}' is not produced by any node of model.onnx.");
        }

        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var embedNodes = Upstream(graph, producers, [tokensTensor], stopAt: null);
        var encoderNodes = Upstream(graph, producers, [graph.Output[0].Name], stopAt: tokensTensor);

        var encoderInputs = encoderNodes.SelectMany(n => n.Input).Where(i => i.Length > 0).ToHashSet(StringComparer.Ordinal);
        var produced = encoderNodes.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
        var missing = encoderInputs.Where(i => !produced.Contains(i) && !initializers.ContainsKey(i) && i != tokensTensor).ToList();
        if (missing.Count > 0)
        {
            throw new ModelPackageException(
                $"The graph after tokens.tensor '{tokensTensor}' still depends on [{string.Join(", ", missing)}], not only on the tokens; choose the tensor right after the position embedding.");
        }

        var embedding = Subgraph(forward, embedNodes, initializers, "embedding");
        embedding.Graph.Input.Add(graph.Input[0].Clone());
        embedding.Graph.Node.Add(ForwardGraph.Node("Identity", [tokensTensor], [TokensName], "strapvit_tokens_out"));
        embedding.Graph.Output.Add(TokensValueInfo());

        var encoder = Subgraph(forward, encoderNodes, initializers, "encoder");
        foreach (var node in encoder.Graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == tokensTensor)
                {
                    node.Input[i] = TokensName;
                }
            }
        }

        encoder.Graph.Input.Add(TokensValueInfo());
        encoder.Graph.Output.Add(graph.Output[0].Clone());
        return new SplitGraphs(embedding, encoder);
    }

    private static List<NodeProto> Upstream(GraphProto graph, Dictionary<string, NodeProto> producers, string[] roots, string? stopAt)
    {
        var needed = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<string>(roots);
        while (stack.Count > 0)
        {
            var tensor = stack.Pop();
            if (tensor == stopAt || !producers.TryGetValue(tensor, out var node) || !needed.Add(node))
            {
                continue;
            }

            foreach (var input in node.Input)
            {
                stack.Push(input);
            }
        }

        // Keep the original (topological) order.
        return graph.Node.Where(needed.Contains).ToList();
    }

    private static ModelProto Subgraph(ModelProto source, List<NodeProto> nodes, Dictionary<string, TensorProto> initializers, string suffix)
    {
        var model = source.Clone();
        model.Graph = new GraphProto { Name = $"{source.Graph.Name}_{suffix}" };
        model.Graph.Node.AddRange(nodes.Select(n => n.Clone()));
        var used = nodes.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        model.Graph.Initializer.AddRange(initializers.Values.Where(i => used.Contains(i.Name)).Select(i => i.Clone()));
        return model;
    }

    private static ValueInfoProto TokensValueInfo() => OnnxProto.TensorInfo(TokensName, OnnxProto.Float, ["N", "T", "D"]);
}
