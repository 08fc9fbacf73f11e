using System.Diagnostics.Metrics;

namespace StrapVit.Api.Observability;

/// <summary>
/// Per-request HTTP metrics under the names and labels the dashboards and alerts read: http_requests_received_total
/// (code, method, endpoint), http_request_duration_seconds (same labels) and http_requests_in_progress (method,
/// endpoint). <c>endpoint</c> is the matched route pattern (<c>/v1/classify</c>, <c>/v1/patches/{id}</c>; empty when no
/// route matched), so its values are bounded by the routes the service maps.
/// </summary>
public sealed class HttpRequestMetrics
{
    private static readonly HashSet<string> KnownMethods = new(
        ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"], StringComparer.OrdinalIgnoreCase);

    private readonly Counter<long> _received;
    private readonly Histogram<double> _duration;
    private readonly UpDownCounter<long> _inProgress;

    public HttpRequestMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(ServiceMetrics.MeterName);
        _received = meter.CreateCounter<long>("http_requests_received_total", null,
            "Provides the count of HTTP requests that have been processed by the ASP.NET Core pipeline.");
        _duration = meter.CreateHistogram("http_request_duration_seconds", "s",
            "The duration of HTTP requests processed by an ASP.NET Core application.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] });
        _inProgress = meter.CreateUpDownCounter<long>("http_requests_in_progress", null,
            "The number of requests currently in progress in the ASP.NET Core pipeline.");
    }

    /// <summary>The method label: a standard method in upper case, anything else as _OTHER (bounded).</summary>
    public static string MethodOf(string method) => KnownMethods.Contains(method) ? method.ToUpperInvariant() : "_OTHER";

    public void Started(string method, string endpoint) =>
        _inProgress.Add(1, Tag("method", method), Tag("endpoint", endpoint));

    public void Finished(string method, string endpoint, int statusCode, TimeSpan elapsed)
    {
        _inProgress.Add(-1, Tag("method", method), Tag("endpoint", endpoint));
        var code = Tag("code", statusCode.ToString(System.Globalization.CultureInfo.InvariantCulture));
        _received.Add(1, code, Tag("method", method), Tag("endpoint", endpoint));
        _duration.Record(elapsed.TotalSeconds, code, Tag("method", method), Tag("endpoint", endpoint));
    }

    private static KeyValuePair<string, object?> Tag(string name, string value) => new(name, value);
}
