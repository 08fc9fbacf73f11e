using System.Diagnostics.CodeAnalysis;

namespace StrapVit.Core.Gradients.Rules;

/// <summary>The op type -> vector-Jacobian-product rule table (default ONNX domain only).</summary>
internal static class GradientRules
{
    private static readonly Dictionary<string, GradientRule> Table = Create();

    public static IReadOnlyCollection<string> SupportedOps => Table.Keys;

    public static bool TryGet(string opType, [MaybeNullWhen(false)] out GradientRule rule) => Table.TryGetValue(opType, out rule);

    private static Dictionary<string, GradientRule> Create()
    {
        var table = new Dictionary<string, GradientRule>(StringComparer.Ordinal);
        ElementwiseRules.Register(table);
        UnaryRules.Register(table);
        LinearRules.Register(table);
        NormalizationRules.Register(table);
        ShapeRules.Register(table);
        IndexingRules.Register(table);
        return table;
    }
}
