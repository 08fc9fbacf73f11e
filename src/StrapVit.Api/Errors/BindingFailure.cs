using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace StrapVit.Api.Errors;

/// <summary>
/// Turns ASP.NET's own refusal of a query or form value it could not convert to the declared type (an
/// <see cref="BadHttpRequestException"/> with <c>ThrowOnBadRequest</c>) into the problem every other bad parameter
/// gets: titled with the parameter's wire name, and saying what the declaration expects. The framework does the
/// parsing; this only rewords its message (<c>Failed to bind parameter "int? TopK" from "five".</c>), which names
/// the parameter and the value.
/// </summary>
internal static partial class BindingFailure
{
    [GeneratedRegex("""^Failed to bind parameter "[^"]* (?<name>[^" ]+)" from "(?<value>.*)"\.$""", RegexOptions.Singleline)]
    private static partial Regex Failed();

    /// <summary>The 400 problem for a value the framework could not bind, or null for any other bad request.</summary>
    public static ProblemException? ToProblem(BadHttpRequestException exception, Endpoint? endpoint)
    {
        var match = Failed().Match(exception.Message);
        if (!match.Success)
        {
            return null;
        }

        var name = WireName(match.Groups["name"].Value);
        return NotConvertible(name, match.Groups["value"].Value, DeclaredType(endpoint, name));
    }

    /// <summary>
    /// The 400 problem for a value that is not of the parameter's declared type (null: unknown), worded as the
    /// framework's own refusals are here; for parameters read from a JSON body too.
    /// </summary>
    public static ProblemException NotConvertible(string name, string value, Type? type) =>
        ProblemException.BadParameter(name, $"'{value}' is not {Expected(type)}.");

    /// <summary>A property's name as clients write it (the API's names are camelCase).</summary>
    public static string WireName(string name) => JsonNamingPolicy.CamelCase.ConvertName(name);

    /// <summary>The declared type of the handler parameter, or property of an [AsParameters] record, with that name.</summary>
    private static Type? DeclaredType(Endpoint? endpoint, string name)
    {
        if (endpoint?.Metadata.GetMetadata<MethodInfo>() is not { } handler)
        {
            return null;
        }

        foreach (var parameter in handler.GetParameters())
        {
            var type = parameter.ParameterType;
            if (parameter.IsDefined(typeof(AsParametersAttribute)))
            {
                if (type.GetProperty(name, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase) is { } property)
                {
                    return Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
                }
            }
            else if (string.Equals(parameter.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return Nullable.GetUnderlyingType(type) ?? type;
            }
        }

        return null;
    }

    private static string Expected(Type? type) => type switch
    {
        null => "a valid value",
        { IsEnum: true } => $"one of {string.Join(", ", Enum.GetNames(type).Select(WireName))}",
        _ when type == typeof(bool) => "true or false",
        _ when type == typeof(int) || type == typeof(long) => "an integer",
        _ when type == typeof(float) || type == typeof(double) => "a number",
        _ => $"a valid {type.Name}",
    };
}
