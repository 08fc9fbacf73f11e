namespace StrapVit.Core.Attacks;

/// <summary>An attack parameter that does not fit the model or image it is used on (e.g. a patch larger than the image).</summary>
public sealed class AttackParameterException(string parameter, string message) : Exception(message)
{
    /// <summary>The parameter's name as the API spells it.</summary>
    public string Parameter { get; } = parameter;
}
