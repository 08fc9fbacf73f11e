namespace StrapVit.Api.Uploads;

/// <summary>
/// The problem answers every image-upload endpoint declares in OpenAPI: 400 (bad parameter or undecodable image), 413
/// (too large), 415 (not an image), 429 (inference or attack slots full) and 503 (model or gradients still loading).
/// </summary>
public static class UploadProblems
{
    public static RouteHandlerBuilder ProducesUploadProblems(this RouteHandlerBuilder builder) =>
        builder.ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

    public static RouteGroupBuilder ProducesUploadProblems(this RouteGroupBuilder builder) =>
        builder.ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
}
