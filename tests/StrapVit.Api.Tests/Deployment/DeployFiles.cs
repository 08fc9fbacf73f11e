using System.Text.Json;
using System.Text.RegularExpressions;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>One Dockerfile instruction, with the build stage it belongs to.</summary>
public sealed record DockerInstruction(string Stage, string Keyword, string Arguments, int Line);

/// <summary>A monitoring query and where it was found (for failure messages).</summary>
public sealed record Query(string Source, string Expr, string? Legend = null);

/// <summary>The deployment files of the repository, read for the checks.</summary>
public static partial class DeployFiles
{
    public const int AppPort = 8080;
    public const string LivePath = "/healthz/live";
    public const string ReadyPath = "/healthz/ready";
    public const string MetricsPath = "/metrics";

    public static string PathOf(params string[] parts) => Path.Combine([RepoPaths.Root, .. parts]);

    public static string Text(params string[] parts) => File.ReadAllText(PathOf(parts));

    public static object? Yaml(params string[] parts) => YamlTree.ParseFile(PathOf(parts));

    public static object? K8s(string file) => Yaml("deploy", "k8s", "base", file);

    public static object? Compose() => Yaml("docker-compose.yml");

    /// <summary>The Dockerfile's instructions, continuation lines joined, comments dropped, each tagged with its stage.</summary>
    public static IReadOnlyList<DockerInstruction> Dockerfile()
    {
        var result = new List<DockerInstruction>();
        var stage = "";
        var pending = "";
        var startLine = 0;
        var lines = Text("Dockerfile").Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            if (pending.Length == 0 && (line.TrimStart().StartsWith('#') || line.Trim().Length == 0))
            {
                continue;
            }

            if (pending.Length == 0)
            {
                startLine = i + 1;
            }
            else if (line.TrimStart().StartsWith('#'))
            {
                continue;
            }

            if (line.EndsWith('\\'))
            {
                pending += line[..^1] + " ";
                continue;
            }

            var full = (pending + line).Trim();
            pending = "";
            var space = full.IndexOf(' ', StringComparison.Ordinal);
            var keyword = (space < 0 ? full : full[..space]).ToUpperInvariant();
            var args = space < 0 ? "" : full[(space + 1)..].Trim();
            if (keyword == "FROM")
            {
                var m = FromStage().Match(args);
                stage = m.Success ? m.Groups["stage"].Value : args;
            }

            result.Add(new DockerInstruction(stage, keyword, args, startLine));
        }

        return result;
    }

    /// <summary>Every query of the Grafana dashboards: panel targets (with legends) and template-variable queries.</summary>
    public static IReadOnlyList<Query> DashboardQueries()
    {
        var queries = new List<Query>();
        foreach (var file in Directory.EnumerateFiles(PathOf("deploy", "grafana", "dashboards"), "*.json"))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            var name = Path.GetFileName(file);
            foreach (var panel in Panels(doc.RootElement))
            {
                var title = panel.TryGetProperty("title", out var t) ? t.GetString() : "?";
                if (panel.TryGetProperty("targets", out var targets))
                {
                    foreach (var target in targets.EnumerateArray())
                    {
                        var legend = target.TryGetProperty("legendFormat", out var l) ? l.GetString() : null;
                        queries.Add(new Query($"{name}: panel '{title}'", target.GetProperty("expr").GetString()!, legend));
                    }
                }
            }

            if (doc.RootElement.TryGetProperty("templating", out var templating))
            {
                foreach (var variable in templating.GetProperty("list").EnumerateArray().Where(v => v.GetProperty("type").GetString() == "query"))
                {
                    var q = variable.GetProperty("query");
                    var text = q.ValueKind == JsonValueKind.Object ? q.GetProperty("query").GetString()! : q.GetString()!;
                    var expr = PromQl.FromTemplateQuery(text);
                    if (expr is not null)
                    {
                        queries.Add(new Query($"{name}: variable '{variable.GetProperty("name").GetString()}'", expr));
                    }
                }
            }
        }

        return queries;
    }

    /// <summary>Alerting and recording rules of a rule file (groups at the root) or a PrometheusRule (groups under spec).</summary>
    public static IReadOnlyList<(string Name, string Expr, string? For)> Rules(object? doc)
    {
        var groups = YamlTree.At(doc, "groups") as List<object?> ?? YamlTree.List(doc, "spec", "groups");
        return [.. groups.SelectMany(g => YamlTree.List(g, "rules")).Select(r => (
            YamlTree.Scalar(r, "alert") ?? YamlTree.Scalar(r, "record") ?? throw new InvalidOperationException("A rule without alert or record."),
            YamlTree.Scalar(r, "expr") ?? throw new InvalidOperationException("A rule without expr."),
            YamlTree.Scalar(r, "for")))];
    }

    public static IReadOnlyList<Query> RuleQueries(string source, object? doc) =>
        [.. Rules(doc).Select(r => new Query($"{source}: {r.Name}", r.Expr))];

    private static IEnumerable<JsonElement> Panels(JsonElement container)
    {
        if (!container.TryGetProperty("panels", out var panels))
        {
            yield break;
        }

        foreach (var panel in panels.EnumerateArray())
        {
            yield return panel;
            foreach (var nested in Panels(panel))
            {
                yield return nested;
            }
        }
    }

    [GeneratedRegex(@"\s+AS\s+(?<stage>\S+)\s*$", RegexOptions.IgnoreCase)]
    private static partial Regex FromStage();
}
