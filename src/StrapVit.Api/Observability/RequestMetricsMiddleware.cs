using System.Diagnostics;
using Microsoft.AspNetCore.Http.Metadata;

namespace StrapVit.Api.Observability;

/// <summary>
/// Records every request's HTTP metrics and, for endpoints marked with <see cref="CountedRequest"/>, the model request's
/// outcome in strapvit_requests_total. It sits outside the exception handler so it sees the final status of handled
/// errors too. The endpoint is read before the rest of the pipeline runs (routing has already matched it: the web
/// application routes first), because the exception handler clears the matched endpoint when it handles an error.
/// Endpoints with <c>DisableHttpMetrics()</c> (the scrape endpoint) are not measured.
/// </summary>
public sealed class RequestMetricsMiddleware(RequestDelegate next, HttpRequestMetrics http, ServiceMetrics metrics)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var endpoint = context.GetEndpoint();
        if (endpoint?.Metadata.GetMetadata<IDisableHttpMetricsMetadata>() is not null)
        {
            await next(context);
            return;
        }

        var route = (endpoint as RouteEndpoint)?.RoutePattern.RawText ?? "";
        var counted = endpoint?.Metadata.GetMetadata<CountedRequest>();
        var method = HttpRequestMetrics.MethodOf(context.Request.Method);
        var started = Stopwatch.GetTimestamp();
        http.Started(method, route);
        try
        {
            await next(context);
        }
        finally
        {
            http.Finished(method, route, context.Response.StatusCode, Stopwatch.GetElapsedTime(started));
            if (counted is not null)
            {
                var status = context.RequestAborted.IsCancellationRequested ? 499 : context.Response.StatusCode;
                metrics.CountRequest(counted.Endpoint, ServiceMetrics.OutcomeOf(status));
            }
        }
    }
}

/// <summary>
/// Endpoint metadata: requests to the endpoint are model requests, counted in strapvit_requests_total under
/// <see cref="Endpoint"/> (one of <see cref="ServiceMetrics.Endpoints"/>).
/// </summary>
public sealed record CountedRequest
{
    public CountedRequest(string endpoint)
    {
        if (!ServiceMetrics.Endpoints.Contains(endpoint))
        {
            throw new ArgumentException($"'{endpoint}' is not one of the endpoint labels {string.Join(", ", ServiceMetrics.Endpoints)}.", nameof(endpoint));
        }

        Endpoint = endpoint;
    }

    public string Endpoint { get; }
}

public static class CountedRequestExtensions
{
    /// <summary>Counts the endpoint's requests in strapvit_requests_total as <paramref name="endpoint"/>.</summary>
    public static TBuilder CountedAs<TBuilder>(this TBuilder builder, string endpoint)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(new CountedRequest(endpoint));
}
