namespace StrapVit.Core.Gradients;

/// <summary>
/// The forward graph cannot be differentiated: an op on the differentiable path has no rule, or a rule's
/// preconditions (constant exponent, constant indices, float32 path, static shapes) do not hold.
/// The message names the op type and the node, so a user can find it in Netron.
/// </summary>
public sealed class GradientGraphException : Exception
{
    public GradientGraphException()
    {
    }

    public GradientGraphException(string message)
        : base(message)
    {
    }

    public GradientGraphException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Op type of the offending node, when one is to blame.</summary>
    public string? OpType { get; init; }

    /// <summary>Name of the offending node (or its first output when the node is unnamed).</summary>
    public string? NodeName { get; init; }
}
