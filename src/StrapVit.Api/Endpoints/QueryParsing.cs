using StrapVit.Api.Errors;
using StrapVit.Core.Defense;

namespace StrapVit.Api.Endpoints;

internal static class QueryParsing
{
    public static DefenseMode ParseDefense(string? value, DefenseMode fallback) => value?.ToLowerInvariant() switch
    {
        null or "" => fallback,
        "off" => DefenseMode.Off,
        "detect" => DefenseMode.Detect,
        "mitigate" => DefenseMode.Mitigate,
        "certify" => DefenseMode.Certify,
        _ => throw ProblemException.BadParameter("defense", $"'{value}' is not one of off, detect, mitigate, certify."),
    };

    public static int ParseInt(string? value, string name, int fallback, int min, int max) =>
        ParseNullableInt(value, name, min, max) ?? fallback;

    /// <summary>An integer in [min, max], or null when the value is missing or empty; a 400 problem naming the parameter otherwise.</summary>
    public static int? ParseNullableInt(string? value, string name, int min, int max)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        if (!int.TryParse(value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var v))
        {
            throw ProblemException.BadParameter(name, $"'{value}' is not an integer.");
        }

        return v < min || v > max
            ? throw ProblemException.BadParameter(name, $"{v} is outside [{min}, {max}].")
            : v;
    }
}
