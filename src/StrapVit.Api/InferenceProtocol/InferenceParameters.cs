using System.Globalization;
using System.Text.Json;
using StrapVit.Api.Defense;
using StrapVit.Api.Errors;

namespace StrapVit.Api.InferenceProtocol;

/// <summary>
/// An inference request's <c>parameters</c> as the query of <c>POST /v1/classify</c> would bind them: the same
/// <see cref="DefenseQuery"/> and certified patch side, converted as ASP.NET converts query values, and refused with
/// the same wording. What they mean (the default mode, the drawn seed, what the model can run) is left to
/// <see cref="DefenseSelector"/>, the one rule for both.
/// </summary>
internal static class InferenceParameters
{
    public const string Defense = "defense";
    public const string Seed = "seed";
    public const string Patch = "patch";

    private static readonly string[] Names = [Defense, Seed, Patch];

    public static (DefenseQuery Query, int? Patch) Read(IReadOnlyDictionary<string, JsonElement>? parameters)
    {
        parameters ??= new Dictionary<string, JsonElement>();
        if (parameters.Keys.FirstOrDefault(key => !Names.Contains(key, StringComparer.Ordinal)) is { } unknown)
        {
            throw ProblemException.BadParameter(unknown, $"'{unknown}' is not a parameter of this model; it takes {string.Join(", ", Names)}.");
        }

        var defense = Text(parameters, Defense) is { } mode
            // Enum.TryParse with the member's exact spelling, as ASP.NET binds the query's enum.
            ? Enum.TryParse<DefenseChoice>(mode, ignoreCase: false, out var choice) ? choice : throw BindingFailure.NotConvertible(Defense, mode, typeof(DefenseChoice))
            : (DefenseChoice?)null;
        return (new DefenseQuery(defense, Integer(parameters, Seed)), Integer(parameters, Patch));
    }

    private static int? Integer(IReadOnlyDictionary<string, JsonElement> parameters, string name) => Text(parameters, name) is { } text
        ? int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) ? value : throw BindingFailure.NotConvertible(name, text, typeof(int))
        : null;

    /// <summary>A parameter's value as a query would carry it: a string as it is, a number as written; null when absent, null or empty.</summary>
    private static string? Text(IReadOnlyDictionary<string, JsonElement> parameters, string name)
    {
        if (!parameters.TryGetValue(name, out var value))
        {
            return null;
        }

        var text = value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.Null => null,
            _ => throw ProblemException.BadParameter(name, $"'{name}' must be a string or a number; got {value.GetRawText()}."),
        };
        return string.IsNullOrEmpty(text) ? null : text;
    }
}
