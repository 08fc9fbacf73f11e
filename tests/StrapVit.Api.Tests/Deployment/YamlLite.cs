using System.Text;
using System.Text.RegularExpressions;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// Reads the block-style YAML subset that the files in deploy/ and docker-compose.yml use, into plain
/// <see cref="Dictionary{TKey,TValue}"/> (maps), <see cref="List{T}"/> (sequences) and <see cref="string"/> (scalars).
/// Supported: nested maps and sequences by indentation, "- key: value" items, one-line flow sequences, quoted and plain
/// scalars, block scalars (| and &gt; with chomping indicators), comments, one document per file, and map anchors with
/// "&lt;&lt;: *anchor" merges. Not a general YAML parser: it exists so the deployment checks need no YAML package, and it
/// throws on what it does not understand rather than guessing.
/// </summary>
public static partial class YamlLite
{
    public static object? Parse(string text)
    {
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var reader = new Reader(lines);
        reader.SkipBlank();
        if (reader.AtEnd)
        {
            return null;
        }

        var node = reader.ParseNode(reader.Indent);
        reader.SkipBlank();
        if (!reader.AtEnd)
        {
            throw new FormatException($"Unexpected content at line {reader.LineNumber}: '{reader.Current.Trim()}'.");
        }

        return node;
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

    [GeneratedRegex(@"^(?<key>[^\s#'""\[\]{},&*!|>-][^:#]*?|""[^""]*""|'[^']*')\s*:(?:\s+(?<rest>.*))?$")]
    private static partial Regex KeyLine();

    private sealed class Reader(string[] lines)
    {
        private readonly Dictionary<string, object?> _anchors = [];

        // A "- key: value" item is parsed as a map that starts on the same line; the reader then treats the text after
        // "- " as if it were a line of its own, indented to where that text starts.
        private (int Indent, string Text)? _pending;
        private int _index;

        public bool AtEnd => _pending is null && _index >= lines.Length;

        public int LineNumber => _index + 1;

        public string Current => _pending?.Text ?? lines[_index];

        public int Indent => _pending?.Indent ?? IndentOf(lines[_index]);

        private string Content => _pending?.Text ?? StripComment(lines[_index]).Trim();

        public void SkipBlank()
        {
            while (_pending is null && _index < lines.Length
                && (StripComment(lines[_index]).Trim().Length == 0 || lines[_index].TrimStart().StartsWith("---", StringComparison.Ordinal)))
            {
                if (lines[_index].TrimStart().StartsWith("---", StringComparison.Ordinal) && _index > 0 && HasContentBefore(_index))
                {
                    throw new FormatException($"Line {_index + 1}: only one YAML document per file is supported.");
                }

                _index++;
            }
        }

        public object? ParseNode(int indent)
        {
            SkipBlank();
            if (AtEnd || Indent < indent)
            {
                return null;
            }

            return Content.StartsWith("- ", StringComparison.Ordinal) || Content == "-" ? ParseSequence(Indent) : ParseMap(Indent);
        }

        private List<object?> ParseSequence(int indent)
        {
            var list = new List<object?>();
            while (true)
            {
                SkipBlank();
                if (AtEnd || Indent != indent || !(Content.StartsWith("- ", StringComparison.Ordinal) || Content == "-"))
                {
                    return list;
                }

                var itemText = Content.Length > 1 ? Content[2..].TrimStart() : "";
                var itemIndent = indent + (Content.Length - itemText.Length);
                Advance();
                if (itemText.Length == 0)
                {
                    list.Add(ParseNode(indent + 1));
                }
                else if (KeyLine().IsMatch(itemText) && !IsQuoted(itemText))
                {
                    _pending = (itemIndent, itemText);
                    list.Add(ParseMap(itemIndent));
                }
                else
                {
                    list.Add(ParseScalarValue(itemText, indent));
                }
            }
        }

        private Dictionary<string, object?> ParseMap(int indent)
        {
            var map = new Dictionary<string, object?>(StringComparer.Ordinal);
            while (true)
            {
                SkipBlank();
                if (AtEnd || Indent != indent || Content.StartsWith("- ", StringComparison.Ordinal))
                {
                    return map;
                }

                var line = LineNumber;
                var match = KeyLine().Match(Content);
                if (!match.Success)
                {
                    throw new FormatException($"Line {line}: expected 'key: value', found '{Content}'.");
                }

                var key = Unquote(match.Groups["key"].Value.Trim());
                var rest = match.Groups["rest"].Success ? match.Groups["rest"].Value.Trim() : "";
                Advance();

                string? anchor = null;
                if (rest.StartsWith('&'))
                {
                    var space = rest.IndexOf(' ', StringComparison.Ordinal);
                    anchor = space < 0 ? rest[1..] : rest[1..space];
                    rest = space < 0 ? "" : rest[(space + 1)..].Trim();
                }

                object? value;
                if (rest.Length == 0)
                {
                    SkipBlank();
                    // A sequence may sit at the same indentation as its key ("key:\n- a"), a map must be deeper.
                    value = !AtEnd && (Indent > indent || (Indent == indent && Content.StartsWith("- ", StringComparison.Ordinal)))
                        ? ParseNode(Indent)
                        : null;
                }
                else if (rest.StartsWith('*'))
                {
                    value = _anchors.TryGetValue(rest[1..], out var target)
                        ? target
                        : throw new FormatException($"Line {line}: unknown anchor '{rest}'.");
                }
                else
                {
                    value = ParseScalarValue(rest, indent);
                }

                if (anchor is not null)
                {
                    _anchors[anchor] = value;
                }

                if (key == "<<")
                {
                    foreach (var (k, v) in value as Dictionary<string, object?> ?? throw new FormatException($"Line {line}: '<<' needs a map."))
                    {
                        map.TryAdd(k, v);
                    }
                }
                else if (!map.TryAdd(key, value))
                {
                    throw new FormatException($"Line {line}: duplicate key '{key}'.");
                }
            }
        }

        /// <summary>The scalar (or flow sequence, or block scalar) that starts with <paramref name="text"/>.</summary>
        private object? ParseScalarValue(string text, int parentIndent)
        {
            if (text.StartsWith('[') && text.EndsWith(']'))
            {
                var inner = text[1..^1].Trim();
                return inner.Length == 0
                    ? new List<object?>()
                    : SplitFlow(inner).Select(s => (object?)Unquote(s.Trim())).ToList();
            }

            if (text[0] is '|' or '>')
            {
                return BlockScalar(text, parentIndent);
            }

            if (text.StartsWith('{'))
            {
                throw new FormatException($"Line {LineNumber - 1}: flow maps are not supported.");
            }

            if (IsQuoted(text))
            {
                return Unquote(text);
            }

            // A plain scalar may continue on deeper-indented lines; they fold into one line.
            var sb = new StringBuilder(text);
            while (_pending is null && _index < lines.Length && StripComment(lines[_index]).Trim().Length > 0
                && IndentOf(lines[_index]) > parentIndent && !KeyLine().IsMatch(StripComment(lines[_index]).Trim())
                && !lines[_index].TrimStart().StartsWith("- ", StringComparison.Ordinal))
            {
                sb.Append(' ').Append(StripComment(lines[_index]).Trim());
                _index++;
            }

            var plain = sb.ToString();
            return plain is "null" or "~" ? null : plain;
        }

        private string BlockScalar(string header, int parentIndent)
        {
            var literal = header[0] == '|';
            var chomp = header.Length > 1 ? header[1] : ' ';
            var body = new List<string>();
            var blockIndent = -1;
            while (_pending is null && _index < lines.Length)
            {
                var raw = lines[_index];
                if (raw.Trim().Length == 0)
                {
                    body.Add("");
                    _index++;
                    continue;
                }

                var ind = IndentOf(raw);
                if (ind <= parentIndent)
                {
                    break;
                }

                blockIndent = blockIndent < 0 ? ind : blockIndent;
                body.Add(raw.Length >= blockIndent ? raw[blockIndent..] : raw.TrimStart());
                _index++;
            }

            while (body.Count > 0 && body[^1].Length == 0)
            {
                body.RemoveAt(body.Count - 1);
            }

            var joined = literal ? string.Join('\n', body) : string.Join(' ', body.Where(l => l.Length > 0));
            return chomp == '-' ? joined : joined + "\n";
        }

        private void Advance()
        {
            if (_pending is not null)
            {
                _pending = null;
            }
            else
            {
                _index++;
            }
        }

        private bool HasContentBefore(int index) =>
            lines.Take(index).Any(l => StripComment(l).Trim().Length > 0 && !l.TrimStart().StartsWith("---", StringComparison.Ordinal));
    }

    private static int IndentOf(string line) => line.Length - line.TrimStart(' ').Length;

    private static bool IsQuoted(string s) =>
        s.Length >= 2 && ((s[0] == '"' && s[^1] == '"') || (s[0] == '\'' && s[^1] == '\''));

    private static string Unquote(string s)
    {
        if (s.Length >= 2 && s[0] == '"' && s[^1] == '"')
        {
            return s[1..^1].Replace("\\\"", "\"", StringComparison.Ordinal).Replace("\\\\", "\\", StringComparison.Ordinal);
        }

        return s.Length >= 2 && s[0] == '\'' && s[^1] == '\'' ? s[1..^1].Replace("''", "'", StringComparison.Ordinal) : s;
    }

    /// <summary>The line without a trailing comment: a '#' at the start or after whitespace, outside quotes.</summary>
    private static string StripComment(string line)
    {
        var quote = '\0';
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (quote != '\0')
            {
                quote = c == quote ? '\0' : quote;
            }
            else if (c is '"' or '\'' && (i == 0 || line[i - 1] is ' ' or '[' or ',' or ':' or '-'))
            {
                quote = c;
            }
            else if (c == '#' && (i == 0 || char.IsWhiteSpace(line[i - 1])))
            {
                return line[..i];
            }
        }

        return line;
    }

    private static IEnumerable<string> SplitFlow(string inner)
    {
        var quote = '\0';
        var start = 0;
        for (var i = 0; i < inner.Length; i++)
        {
            var c = inner[i];
            if (quote != '\0')
            {
                quote = c == quote ? '\0' : quote;
            }
            else if (c is '"' or '\'')
            {
                quote = c;
            }
            else if (c == ',')
            {
                yield return inner[start..i];
                start = i + 1;
            }
            else if (c is '[' or '{')
            {
                throw new FormatException($"Nested flow collections are not supported: [{inner}].");
            }
        }

        yield return inner[start..];
    }
}
