using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace StrapVit.Cli.Commands;

/// <summary>
/// The option kinds of every verb, on System.CommandLine: numbers parsed with the invariant culture and checked
/// against a range, comma-separated lists (<c>--sizes 4,6,8</c>), fixed word choices and plain text.
/// Bad values are parse errors, so they exit with <see cref="ExitCodes.Usage"/> before a verb runs.
/// </summary>
internal static class CliOptions
{
    /// <summary>A number in [<paramref name="min"/>, <paramref name="max"/>], <paramref name="fallback"/> when not given.</summary>
    public static Option<T> Number<T>(string name, T fallback, T min, T max, string description)
        where T : struct, INumber<T>
    {
        var option = Number(name, min, max, description);
        option.DefaultValueFactory = _ => fallback;
        return option;
    }

    /// <summary>A number in [<paramref name="min"/>, <paramref name="max"/>] that may be left out; read it with <see cref="GetOptional{T}"/>.</summary>
    public static Option<T> OptionalNumber<T>(string name, T min, T max, string description)
        where T : struct, INumber<T> => Number(name, min, max, description);

    /// <summary>The value of an <see cref="OptionalNumber{T}"/>, or null when it was not given.</summary>
    public static T? GetOptional<T>(this ParseResult parseResult, Option<T> option)
        where T : struct => parseResult.GetResult(option) is null ? null : parseResult.GetValue(option);

    /// <summary>A required number in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<T> RequiredNumber<T>(string name, T min, T max, string description)
        where T : struct, INumber<T>
    {
        var option = Number(name, min, max, description);
        option.Required = true;
        return option;
    }

    /// <summary>A comma-separated list, e.g. <c>--sizes 4,6,8</c>; each item parsed by <paramref name="parse"/>.</summary>
    public static ListOption<T> List<T>(string name, T[] fallback, TryParse<T> parse, string description, string itemsAre) =>
        new(name, fallback)
        {
            // The default goes in the description: the help's own default column would join the items with '|'.
            Description = $"{description} (default {string.Join(',', fallback.Select(Show))})",
            HelpName = "a,b,...",
            Arity = ArgumentArity.ExactlyOne,
            CustomParser = result => ParseList(result, parse, itemsAre),
        };

    /// <summary>The list of <paramref name="option"/>, or its default when it was not given.</summary>
    public static T[] GetList<T>(this ParseResult parseResult, ListOption<T> option) =>
        parseResult.GetResult(option) is null ? option.Fallback : parseResult.GetRequiredValue(option);

    /// <summary>A comma-separated list of numbers in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static ListOption<T> NumberList<T>(string name, T[] fallback, T min, T max, string description)
        where T : struct, INumber<T> =>
        List(name, fallback, (string text, out T value) => TryNumber(text, min, max, out value), description, $"{NumberKind<T>()}s in [{min}, {max}]");

    /// <summary>A comma-separated list of enum names (case-insensitive).</summary>
    public static ListOption<T> EnumList<T>(string name, T[] fallback, string description)
        where T : struct, Enum =>
        List(name, fallback, TryEnum, description, $"names among {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}");

    /// <summary>A comma-separated list of <c>off</c> (false) and/or <c>on</c> (true), e.g. <c>--strong-occlusion off,on</c>.</summary>
    public static ListOption<bool> OnOffList(string name, bool[] fallback, string description) =>
        List(name, fallback, (string text, out bool value) => (value = text == "on") || text == "off", description, "off or on");

    /// <summary>One of fixed words, <paramref name="fallback"/> when not given.</summary>
    public static Option<string> Choice(string name, string fallback, string description, params string[] words)
    {
        var option = new Option<string>(name) { Description = description, DefaultValueFactory = _ => fallback };
        option.AcceptOnlyFromAmong(words);
        return option;
    }

    /// <summary>Free text (a path), required or optional.</summary>
    public static Option<string> Text(string name, string description, bool required = false, string? helpName = null) =>
        new(name) { Description = description, Required = required, HelpName = helpName };

    /// <summary>The <c>&lt;model-dir&gt;</c> positional every verb takes.</summary>
    public static Argument<string> ModelDir(string description = "model package folder (model.onnx + model.json)") =>
        new("model-dir") { Description = description };

    /// <summary>The one number parser of the CLI: invariant culture, range-checked.</summary>
    public static bool TryNumber<T>(string text, T min, T max, out T value)
        where T : struct, INumber<T>
    {
        var style = typeof(T) == typeof(float) || typeof(T) == typeof(double) || typeof(T) == typeof(decimal) ? NumberStyles.Float : NumberStyles.Integer;
        return T.TryParse(text.Trim(), style, CultureInfo.InvariantCulture, out value) && value >= min && value <= max;
    }

    /// <summary>An enum by name, case-insensitive; numbers are not names.</summary>
    public static bool TryEnum<T>(string text, out T value)
        where T : struct, Enum =>
        Enum.TryParse(text.Trim(), ignoreCase: true, out value) && !char.IsAsciiDigit(text.Trim().FirstOrDefault()) && Enum.IsDefined(value);

    private static Option<T> Number<T>(string name, T min, T max, string description)
        where T : struct, INumber<T>
    {
        var option = new Option<T>(name) { Description = description };
        option.CustomParser = result =>
        {
            var text = result.Tokens.Single().Value;
            if (TryNumber(text, min, max, out var value)) return value;
            result.AddError($"{name} must be {Article<T>()} {NumberKind<T>()} in [{Format(min)}, {Format(max)}], not '{text}'");
            return default;
        };
        return option;
    }

    private static T[] ParseList<T>(ArgumentResult result, TryParse<T> parse, string itemsAre)
    {
        var text = result.Tokens.Single().Value;
        var items = text.Split(',', StringSplitOptions.TrimEntries);
        var values = new T[items.Length];
        for (var i = 0; i < items.Length; i++)
        {
            if (!parse(items[i], out values[i]))
            {
                var name = result.Parent is OptionResult o ? o.Option.Name : result.Argument.Name;
                result.AddError($"{name} must be a comma-separated list of {itemsAre}, not '{text}'");
                return [];
            }
        }

        return values;
    }

    private static string? Show<T>(T value) => value switch
    {
        Enum => value.ToString()!.ToLowerInvariant(),
        bool on => on ? "on" : "off",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture),
    };

    private static string NumberKind<T>() => typeof(T) == typeof(float) || typeof(T) == typeof(double) || typeof(T) == typeof(decimal) ? "number" : "integer";

    private static string Article<T>() => NumberKind<T>() == "integer" ? "an" : "a";

    private static string Format<T>(T value)
        where T : INumber<T> => value.ToString(null, CultureInfo.InvariantCulture);

    /// <summary>Parses one list item.</summary>
    public delegate bool TryParse<T>(string text, out T value);
}

/// <summary>A comma-separated list option and the values it stands for when it is not given.</summary>
internal sealed class ListOption<T>(string name, T[] fallback) : Option<T[]>(name)
{
    public T[] Fallback { get; } = fallback;
}
