using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// A YAML file as plain <see cref="Dictionary{TKey,TValue}"/> (maps), <see cref="List{T}"/> (sequences) and
/// <see cref="string"/> (scalars), parsed by YamlDotNet with "&lt;&lt;: *anchor" merge keys resolved, so the
/// deployment checks can walk docker-compose.yml, deploy/k8s and deploy/prometheus by path.
/// </summary>
public static class YamlTree
{
    /// <summary>The single document of <paramref name="text"/>; several documents are refused.</summary>
    public static object? Parse(string text)
    {
        var stream = new YamlStream();
        stream.Load(new MergingParser(new Parser(new StringReader(text))));
        return stream.Documents.Count switch
        {
            0 => null,
            1 => Convert(stream.Documents[0].RootNode),
            var n => throw new FormatException($"Expected one YAML document, found {n}."),
        };
    }

    public static object? ParseFile(string path) => Parse(File.ReadAllText(path));

    /// <summary>Follows a path of map keys and sequence indexes, e.g. <c>At(doc, "spec", "ports", 0, "port")</c>.</summary>
    public static object? At(object? node, params object[] path)
    {
        foreach (var step in path)
        {
            node = (node, step) switch
            {
                (Dictionary<string, object?> map, string key) => map.GetValueOrDefault(key),
                (List<object?> list, int index) => index < list.Count ? list[index] : null,
                _ => null,
            };
        }

        return node;
    }

    public static Dictionary<string, object?> Map(object? node, params object[] path) =>
        At(node, path) as Dictionary<string, object?>
        ?? throw new InvalidOperationException($"No map at {string.Join('.', path)}.");

    public static List<object?> List(object? node, params object[] path) =>
        At(node, path) as List<object?> ?? throw new InvalidOperationException($"No sequence at {string.Join('.', path)}.");

    public static string? Scalar(object? node, params object[] path) => At(node, path) as string;

    /// <summary>Every node of the tree, depth first (for "find every httpGet probe" style searches).</summary>
    public static IEnumerable<object?> Descendants(object? node)
    {
        yield return node;
        var children = node switch
        {
            Dictionary<string, object?> map => map.Values.ToList(),
            List<object?> list => list,
            _ => [],
        };
        foreach (var child in children)
        {
            foreach (var d in Descendants(child))
            {
                yield return d;
            }
        }
    }

    private static object? Convert(YamlNode node) => node switch
    {
        YamlMappingNode map => map.Children.ToDictionary(
            kv => ((YamlScalarNode)kv.Key).Value ?? "",
            kv => Convert(kv.Value),
            StringComparer.Ordinal),
        YamlSequenceNode seq => seq.Children.Select(Convert).ToList(),
        // A plain empty or '~' / 'null' value is YAML's null; quoted scalars keep their text.
        YamlScalarNode { Style: ScalarStyle.Plain, Value: null or "" or "~" or "null" } => null,
        YamlScalarNode scalar => scalar.Value,
        _ => throw new FormatException($"Unsupported YAML node {node.NodeType} at {node.Start}."),
    };
}
