namespace StrapVit.Api.Observability;

/// <summary>
/// Counts model requests by outcome from the final status code. It sits outside the exception handler so it sees
/// the status of handled errors too; the endpoint is named from the path because the exception handler clears the
/// matched endpoint.
/// </summary>
public sealed class RequestOutcomeMiddleware(RequestDelegate next, ServiceMetrics metrics)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var endpoint = EndpointOf(context.Request.Path);
        try
        {
            await next(context);
        }
        finally
        {
            if (endpoint is not null)
            {
                var status = context.RequestAborted.IsCancellationRequested ? 499 : context.Response.StatusCode;
                metrics.CountRequest(endpoint, ServiceMetrics.OutcomeOf(status));
            }
        }
    }

    private static string? EndpointOf(PathString path) =>
        path.StartsWithSegments("/v1/classify", StringComparison.OrdinalIgnoreCase) ? "classify"
        : path.StartsWithSegments("/v1/defense", StringComparison.OrdinalIgnoreCase) ? "defense"
        : path.StartsWithSegments("/v1/attacks", StringComparison.OrdinalIgnoreCase) ? "attack"
        : path.StartsWithSegments("/v1/patches", StringComparison.OrdinalIgnoreCase) ? "patch_job"
        : path.StartsWithSegments("/v1/explain", StringComparison.OrdinalIgnoreCase) ? "explain"
        : null;
}
