using System.Globalization;
using Microsoft.Extensions.Primitives;
using StrapVit.Api.Endpoints;
using StrapVit.Api.Errors;

namespace StrapVit.Api.Attacks;

/// <summary>
/// Typed reading of an attack request's form fields. Every problem is a 400 naming the field; a field the attack
/// does not know is refused too, so a typo (<c>eps</c> for <c>epsilon</c>) never silently runs with the default.
/// </summary>
internal sealed class AttackForm
{
    private readonly IFormCollection? form;

    public AttackForm(IFormCollection? form, IReadOnlyCollection<string> allowed)
    {
        this.form = form;
        if (form is null) return;
        foreach (var key in form.Keys)
        {
            if (!allowed.Contains(key))
            {
                throw ProblemException.BadParameter(key, $"'{key}' is not a parameter of this endpoint; it takes: {string.Join(", ", allowed.Order(StringComparer.Ordinal))}.");
            }
        }
    }

    private string? Raw(string name)
    {
        if (form is null || !form.TryGetValue(name, out StringValues values) || StringValues.IsNullOrEmpty(values)) return null;
        if (values.Count > 1) throw ProblemException.BadParameter(name, $"'{name}' was sent {values.Count} times.");
        var text = values[0]!.Trim();
        return text.Length == 0 ? null : text;
    }

    public bool Has(string name) => Raw(name) is not null;

    public float Float(string name, float fallback, float min, float max, bool minExclusive = false)
    {
        var text = Raw(name);
        if (text is null) return fallback;
        if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !float.IsFinite(v))
        {
            throw ProblemException.BadParameter(name, $"'{text}' is not a finite number.");
        }

        if (v < min || v > max || (minExclusive && v <= min))
        {
            throw ProblemException.BadParameter(name, $"{text} is outside {(minExclusive ? "(" : "[")}{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}].");
        }

        return v;
    }

    public int Int(string name, int fallback, int min, int max) => NullableInt(name, min, max) ?? fallback;

    public int? NullableInt(string name, int min, int max) => QueryParsing.ParseNullableInt(Raw(name), name, min, max);

    public bool Bool(string name, bool fallback)
    {
        var text = Raw(name);
        return text?.ToLowerInvariant() switch
        {
            null => fallback,
            "true" or "1" or "yes" or "on" => true,
            "false" or "0" or "no" or "off" => false,
            _ => throw ProblemException.BadParameter(name, $"'{text}' is not true or false."),
        };
    }

    public string? String(string name) => Raw(name);
}
