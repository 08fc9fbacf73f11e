using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using StackExchange.Redis;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Errors;

/// <summary>
/// Maps the exceptions that describe a bad request to RFC 7807 responses. Anything else is left to the default
/// handler (a generic 500), so real bugs stay visible instead of being dressed up as client errors.
/// </summary>
public sealed partial class ProblemExceptionHandler(IProblemDetailsService problems, ILogger<ProblemExceptionHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is BadHttpRequestException bad
            && BindingFailure.ToProblem(bad, httpContext.Features.Get<IExceptionHandlerFeature>()?.Endpoint) is { } binding)
        {
            exception = binding;
        }

        var problem = exception switch
        {
            ProblemException p => (p.Status, p.Title, p.Message, p.RetryAfterSeconds),
            ImageRejectedException img => (StatusOf(img.Reason), TitleOf(img.Reason), img.Message, (int?)null),
            BadHttpRequestException other => (other.StatusCode, other.StatusCode == 413 ? "Request too large" : "Bad request", other.Message, (int?)null),
            // The job store (Jobs:Redis) is down or slow: the job endpoints cannot answer now, the rest of the service can.
            RedisConnectionException or RedisTimeoutException => (StatusCodes.Status503ServiceUnavailable, "Job store unavailable",
                "The universal-patch job store (Redis) cannot be reached; retry later.", (int?)5),
            _ => default((int Status, string Title, string Detail, int? RetryAfter)?),
        };

        if (problem is not { } p2)
        {
            if (exception is (OperationCanceledException or IOException) && httpContext.RequestAborted.IsCancellationRequested)
            {
                // The client went away (mid-run, or mid-upload: the connection reset surfaces from the body read as an
                // IOException); nobody reads the answer, 499 keeps it out of the server-error rate.
                httpContext.Response.StatusCode = 499;
                return true;
            }

            return false;
        }

        LogRejected(logger, httpContext.Request.Path, p2.Status, p2.Detail);
        httpContext.Response.StatusCode = p2.Status;
        if (p2.RetryAfter is { } retry)
        {
            httpContext.Response.Headers.RetryAfter = retry.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            Exception = exception,
            ProblemDetails = new ProblemDetails { Status = p2.Status, Title = p2.Title, Detail = p2.Detail },
        });
    }

    private static int StatusOf(ImageRejection reason) => reason switch
    {
        ImageRejection.TooLarge => StatusCodes.Status413PayloadTooLarge,
        ImageRejection.UnsupportedFormat => StatusCodes.Status415UnsupportedMediaType,
        _ => StatusCodes.Status400BadRequest,
    };

    private static string TitleOf(ImageRejection reason) => reason switch
    {
        ImageRejection.TooLarge => "Image too large",
        ImageRejection.UnsupportedFormat => "Unsupported image format",
        _ => "Undecodable image",
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "Request to {Path} refused with {Status}: {Detail}")]
    private static partial void LogRejected(ILogger logger, string path, int status, string detail);
}
