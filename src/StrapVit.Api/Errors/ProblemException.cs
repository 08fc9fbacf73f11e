namespace StrapVit.Api.Errors;

/// <summary>A request the API refuses, with the RFC 7807 fields to send back.</summary>
public sealed class ProblemException(int status, string title, string detail) : Exception(detail)
{
    public int Status { get; } = status;

    public string Title { get; } = title;

    /// <summary>Seconds the client should wait before retrying (429/503), if any.</summary>
    public int? RetryAfterSeconds { get; init; }

    public static ProblemException BadParameter(string name, string detail) =>
        new(StatusCodes.Status400BadRequest, $"Invalid parameter '{name}'", detail);
}
