using System.Text.RegularExpressions;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>What a Prometheus text-format page exports: sample names, family types and label names.</summary>
public sealed partial class MetricsExposition
{
    private static readonly string[] SeriesSuffixes = ["_bucket", "_sum", "_count", "_created"];

    private readonly Dictionary<string, string> _types = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<string>> _labels = new(StringComparer.Ordinal);
    private readonly List<(string Name, Dictionary<string, string> Labels, double Value)> _samples = [];

    public static MetricsExposition Parse(string text)
    {
        var page = new MetricsExposition();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            var type = TypeLine().Match(line);
            if (type.Success)
            {
                page._types[type.Groups["name"].Value] = type.Groups["type"].Value;
                continue;
            }

            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            var sample = SampleLine().Match(line);
            if (!sample.Success)
            {
                throw new FormatException($"Not a sample line: {line}");
            }

            var labels = page._labels.TryGetValue(sample.Groups["name"].Value, out var set)
                ? set
                : page._labels[sample.Groups["name"].Value] = new HashSet<string>(StringComparer.Ordinal);
            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (Match label in LabelPair().Matches(sample.Groups["labels"].Value))
            {
                labels.Add(label.Groups["label"].Value);
                values[label.Groups["label"].Value] = Regex.Unescape(label.Groups["value"].Value);
            }

            page._samples.Add((sample.Groups["name"].Value, values,
                double.Parse(sample.Groups["value"].Value.Replace("Inf", "Infinity", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture)));
        }

        return page;
    }

    public IReadOnlyCollection<string> SampleNames => _labels.Keys;

    /// <summary>
    /// The value of the sample <paramref name="name"/> whose labels are exactly <paramref name="labels"/> (in any
    /// order), or null when the page has no such series.
    /// </summary>
    public double? Value(string name, params (string Label, string Value)[] labels) =>
        _samples.Where(s => s.Name == name && s.Labels.Count == labels.Length
                && labels.All(l => s.Labels.TryGetValue(l.Label, out var v) && v == l.Value))
            .Select(s => (double?)s.Value).SingleOrDefault();

    /// <summary>Every sample of <paramref name="name"/>: its labels and value.</summary>
    public IEnumerable<(IReadOnlyDictionary<string, string> Labels, double Value)> Samples(string name) =>
        _samples.Where(s => s.Name == name).Select(s => ((IReadOnlyDictionary<string, string>)s.Labels, s.Value));

    /// <summary>
    /// Whether <paramref name="name"/> is exported: as a sample name, as a declared counter or gauge, or as a series
    /// (<c>_bucket</c>, <c>_sum</c>, <c>_count</c>) of a declared histogram or summary. A histogram's bare family name
    /// is not a series, so it does not count.
    /// </summary>
    public bool Exports(string name) =>
        _labels.ContainsKey(name)
        || (_types.TryGetValue(name, out var type) && type is not ("histogram" or "summary"))
        || FamilyOfSeries(name) is not null;

    /// <summary>Label names seen on the samples of <paramref name="name"/> (a sample name or a family name).</summary>
    public IReadOnlySet<string> LabelsOf(string name)
    {
        var result = new HashSet<string>(StringComparer.Ordinal);
        var family = FamilyOfSeries(name) ?? name;
        foreach (var (sampleName, labels) in _labels)
        {
            if (sampleName == name || sampleName == family || SeriesSuffixes.Any(s => sampleName == family + s))
            {
                result.UnionWith(labels);
            }
        }

        return result;
    }

    private string? FamilyOfSeries(string name)
    {
        foreach (var suffix in SeriesSuffixes)
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal)
                && _types.TryGetValue(name[..^suffix.Length], out var type) && type is "histogram" or "summary")
            {
                return name[..^suffix.Length];
            }
        }

        return null;
    }

    [GeneratedRegex(@"^#\s*TYPE\s+(?<name>\S+)\s+(?<type>\S+)")]
    private static partial Regex TypeLine();

    [GeneratedRegex(@"^(?<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?<labels>.*)\})?\s+(?<value>\S+)")]
    private static partial Regex SampleLine();

    [GeneratedRegex(@"(?<label>[A-Za-z_][A-Za-z0-9_]*)=""(?<value>(?:[^""\\]|\\.)*)""")]
    private static partial Regex LabelPair();
}
