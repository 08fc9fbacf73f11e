using System.Reflection;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Primitives;
using StrapVit.Api.Errors;

namespace StrapVit.Api.Uploads;

/// <summary>
/// The form fields a handler binds beside its upload: the <c>[FromForm]</c> constructor parameters of its
/// <c>[AsParameters]</c> records (and any <c>[FromForm]</c> parameter of its own), under their camelCase names.
/// </summary>
internal static class FormFields
{
    public static IReadOnlyList<ParameterInfo> Of(MethodBase handler) =>
    [
        .. handler.GetParameters().SelectMany(p => p.IsDefined(typeof(AsParametersAttribute))
            ? p.ParameterType.GetConstructors().SelectMany(c => c.GetParameters())
            : [p])
            .Where(p => p.IsDefined(typeof(FromFormAttribute))),
    ];

    public static string Name(ParameterInfo field) => BindingFailure.WireName(field.Name!);

    /// <summary>
    /// The form to bind the fields from: a field the handler does not bind, or one sent more than once, is a 400
    /// problem naming it; an empty field is left out, so it takes its default like an absent one.
    /// </summary>
    public static IFormCollection Checked(IFormCollection form, IReadOnlyList<ParameterInfo> fields)
    {
        var names = fields.Select(Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var kept = new Dictionary<string, StringValues>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, values) in form)
        {
            if (!names.Contains(key))
            {
                throw ProblemException.BadParameter(key, $"'{key}' is not a parameter of this endpoint; it takes: {string.Join(", ", names.Order(StringComparer.Ordinal))}.");
            }

            if (values.Count > 1)
            {
                throw ProblemException.BadParameter(key, $"'{key}' was sent {values.Count} times.");
            }

            if (!string.IsNullOrWhiteSpace(values))
            {
                kept[key] = values;
            }
        }

        return new FormCollection(kept, form.Files);
    }
}
