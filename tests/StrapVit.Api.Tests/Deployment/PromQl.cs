using System.Text.RegularExpressions;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>A metric selector in an expression: the metric name and the label names its matchers use.</summary>
public sealed record Selector(string Metric, IReadOnlyList<string> Labels);

/// <summary>
/// Pulls metric names, selectors and grouping labels out of PromQL (alert rules, Grafana panel queries) without a
/// full parser: strings, label matchers, ranges and grouping clauses are blanked out, and what remains that is an
/// identifier but neither a function call nor a keyword is a metric name.
/// </summary>
public static partial class PromQl
{
    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal)
    {
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "atan2",
        "inf", "nan", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
        "count_values", "group", "limitk", "limit_ratio",
    };

    public static IReadOnlySet<string> MetricNames(string expr)
    {
        var s = GrafanaVariable().Replace(BlankStructure(expr), " ");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match m in Identifier().Matches(s))
        {
            var name = m.Groups["name"].Value;
            if (!m.Groups["call"].Success && !Keywords.Contains(name))
            {
                names.Add(name);
            }
        }

        return names;
    }

    /// <summary>Selectors with label matchers, e.g. <c>foo{a="x", b=~"y"}</c> gives (foo, [a, b]).</summary>
    public static IReadOnlyList<Selector> Selectors(string expr) =>
        [.. SelectorPattern().Matches(BlankStrings(expr, keepQuotes: true))
            .Where(m => !Keywords.Contains(m.Groups["name"].Value))
            .Select(m => new Selector(
                m.Groups["name"].Value,
                [.. MatcherLabel().Matches(m.Groups["matchers"].Value).Select(l => l.Groups["label"].Value)]))];

    /// <summary>Label names in <c>by (...)</c>, <c>without (...)</c>, <c>on (...)</c>, <c>ignoring (...)</c>, <c>group_left (...)</c>.</summary>
    public static IReadOnlySet<string> GroupingLabels(string expr) =>
        GroupingClause().Matches(BlankStrings(expr, keepQuotes: false))
            .SelectMany(m => m.Groups["labels"].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// The PromQL inside a Grafana template-variable query: <c>label_values(expr, label)</c> gives <c>expr</c>,
    /// <c>query_result(expr)</c> gives <c>expr</c>, the one-argument <c>label_values(label)</c> and others give null.
    /// </summary>
    public static string? FromTemplateQuery(string query)
    {
        var m = TemplateQuery().Match(query);
        return m.Success ? m.Groups["expr"].Value : null;
    }

    private static string BlankStructure(string expr)
    {
        var s = BlankStrings(expr, keepQuotes: false);
        s = Braces().Replace(s, " ");
        s = Brackets().Replace(s, " ");
        s = GroupingClause().Replace(s, " ");
        return Offset().Replace(s, " ");
    }

    private static string BlankStrings(string expr, bool keepQuotes) =>
        StringLiteral().Replace(expr, m => keepQuotes ? "\"\"" : " ");

    [GeneratedRegex(@"""(?:[^""\\]|\\.)*""|'(?:[^'\\]|\\.)*'|`[^`]*`")]
    private static partial Regex StringLiteral();

    [GeneratedRegex(@"\{[^{}]*\}")]
    private static partial Regex Braces();

    [GeneratedRegex(@"\[[^\[\]]*\]")]
    private static partial Regex Brackets();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?<labels>[^()]*)\)")]
    private static partial Regex GroupingClause();

    [GeneratedRegex(@"\boffset\s+-?\w+")]
    private static partial Regex Offset();

    [GeneratedRegex(@"\$\{?\w+\}?")]
    private static partial Regex GrafanaVariable();

    [GeneratedRegex(@"(?<![\w.:$])(?<name>[A-Za-z_:][A-Za-z0-9_:]*)(?<call>\s*\()?")]
    private static partial Regex Identifier();

    [GeneratedRegex(@"(?<![\w.:$])(?<name>[A-Za-z_:][A-Za-z0-9_:]*)\s*\{(?<matchers>[^{}]*)\}")]
    private static partial Regex SelectorPattern();

    [GeneratedRegex(@"(?<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")]
    private static partial Regex MatcherLabel();

    [GeneratedRegex(@"^\s*label_values\s*\((?<expr>.+),\s*\w+\s*\)\s*$|^\s*query_result\s*\((?<expr>.+)\)\s*$")]
    private static partial Regex TemplateQuery();
}
