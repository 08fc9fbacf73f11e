namespace StrapVit.Api.Uploads;

/// <summary>
/// The problem answers every image-upload endpoint declares in OpenAPI: 400 (bad parameter or undecodable image), 413
/// (too large), 415 (not an image), 429 (inference or attack slots full) and 503 (model or gradients still loading).
/// </summary>
public static class UploadProblems
{
    private static readonly int[] Statuses =
    [
        StatusCodes.Status400BadRequest,
        StatusCodes.Status413PayloadTooLarge,
        StatusCodes.Status415UnsupportedMediaType,
        StatusCodes.Status429TooManyRequests,
        StatusCodes.Status503ServiceUnavailable,
    ];

    public static RouteHandlerBuilder ProducesUploadProblems(this RouteHandlerBuilder builder)
    {
        foreach (var status in Statuses) builder.ProducesProblem(status);
        return builder;
    }

    public static RouteGroupBuilder ProducesUploadProblems(this RouteGroupBuilder builder)
    {
        foreach (var status in Statuses) builder.ProducesProblem(status);
        return builder;
    }
}
