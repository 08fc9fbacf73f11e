using System.Globalization;
using System.Runtime.CompilerServices;

namespace StrapVit.Api.Errors;

/// <summary>
/// Range checks of bound request values whose limits are known only at run time (the model's class count, the
/// configured maxima). The parameter is named from the expression passed (<c>Epsilon</c>, <c>form.Seed</c>), so a
/// record's property is the one place its name is written.
/// </summary>
internal static class Parameter
{
    /// <summary>The value when in [min, max] (or (min, max] with <paramref name="minExclusive"/>); a 400 problem naming the parameter otherwise.</summary>
    public static float InRange(float value, float min, float max, bool minExclusive = false, [CallerArgumentExpression(nameof(value))] string expression = "")
    {
        if (!float.IsFinite(value))
        {
            throw ProblemException.BadParameter(Name(expression), $"{Text(value)} is not a finite number.");
        }

        if (value < min || value > max || (minExclusive && value <= min))
        {
            throw ProblemException.BadParameter(Name(expression), $"{Text(value)} is outside {(minExclusive ? "(" : "[")}{Text(min)}, {Text(max)}].");
        }

        return value;
    }

    /// <summary>The value when in [min, max]; a 400 problem naming the parameter otherwise.</summary>
    public static int InRange(int value, int min, int max, [CallerArgumentExpression(nameof(value))] string expression = "") =>
        value < min || value > max
            ? throw ProblemException.BadParameter(Name(expression), $"{value} is outside [{min}, {max}].")
            : value;

    /// <summary>Null, or the value when in [min, max].</summary>
    public static int? InRange(int? value, int min, int max, [CallerArgumentExpression(nameof(value))] string expression = "") =>
        value is { } v ? InRange(v, min, max, expression) : null;

    /// <summary>The wire name of the property an expression reads: <c>form.TargetClass</c> is <c>targetClass</c>.</summary>
    private static string Name(string expression) => BindingFailure.WireName(expression[(expression.LastIndexOf('.') + 1)..]);

    private static string Text(float value) => value.ToString(CultureInfo.InvariantCulture);
}
