namespace StrapVit.Cli.Commands;

/// <summary>
/// A verb's arguments: positionals in order, and <c>--name value</c> / <c>--name=value</c> options.
/// Deliberately tiny: the verbs take a handful of options, and each verb checks the names it knows.
/// </summary>
internal sealed class CliArguments
{
    private readonly Dictionary<string, string> options = new(StringComparer.Ordinal);
    private readonly HashSet<string> read = new(StringComparer.Ordinal);

    private CliArguments(List<string> positionals) => Positionals = positionals;

    public IReadOnlyList<string> Positionals { get; }

    public static CliArguments Parse(IReadOnlyList<string> args)
    {
        var positionals = new List<string>();
        var result = new CliArguments(positionals);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg == "--")
            {
                positionals.Add(arg);
                continue;
            }

            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            var (name, value) = eq > 0 ? (arg[2..eq], arg[(eq + 1)..]) : (arg[2..], i + 1 < args.Count ? args[++i] : throw new CliUsageException($"option --{arg[2..]} needs a value"));
            if (!result.options.TryAdd(name, value)) throw new CliUsageException($"option --{name} given twice");
        }

        return result;
    }

    public string? Option(string name)
    {
        read.Add(name);
        return options.GetValueOrDefault(name);
    }

    public string RequiredOption(string name) => Option(name) ?? throw new CliUsageException($"missing --{name}");

    /// <summary>Call after reading every option: rejects misspelt ones instead of ignoring them.</summary>
    public void RejectUnknownOptions()
    {
        var unknown = options.Keys.Where(k => !read.Contains(k)).ToList();
        if (unknown.Count > 0) throw new CliUsageException($"unknown option(s): {string.Join(", ", unknown.Select(u => "--" + u))}");
    }
}
