using Prometheus;

namespace StrapVit.Api.Observability;

/// <summary>
/// The service's own Prometheus metrics (HTTP metrics come from prometheus-net's middleware).
/// Label values are bounded: endpoint and outcome names are fixed sets, never user input.
/// </summary>
public sealed class ServiceMetrics
{
    private readonly Histogram _inferenceDuration = Metrics.CreateHistogram(
        "strapvit_inference_duration_seconds",
        "Time spent in ONNX Runtime runs, by graph.",
        new HistogramConfiguration
        {
            LabelNames = ["graph"],
            Buckets = Histogram.ExponentialBuckets(0.0001, 2, 16),
        });

    private readonly Counter _requests = Metrics.CreateCounter(
        "strapvit_requests_total",
        "Model requests by endpoint and outcome (success, client_error, server_error, canceled).",
        new CounterConfiguration { LabelNames = ["endpoint", "outcome"] });

    private readonly Gauge _modelInfo = Metrics.CreateGauge(
        "strapvit_model_info",
        "Always 1; labels name the loaded model and the execution provider in use.",
        new GaugeConfiguration { LabelNames = ["model", "execution_provider", "sha256"] });

    private readonly Gauge _ready = Metrics.CreateGauge(
        "strapvit_ready",
        "1 when the model is loaded and warmed up, else 0.");

    public static readonly string[] Outcomes = ["success", "client_error", "server_error", "canceled"];

    public ServiceMetrics()
    {
        // Publish the zero series up front so dashboards and alerts see them before the first request.
        foreach (var outcome in Outcomes)
        {
            _requests.WithLabels("classify", outcome);
        }

        _inferenceDuration.WithLabels("forward");
        _ready.Set(0);
    }

    public void ObserveInference(string graph, TimeSpan elapsed) => _inferenceDuration.WithLabels(graph).Observe(elapsed.TotalSeconds);

    public void CountRequest(string endpoint, string outcome) => _requests.WithLabels(endpoint, outcome).Inc();

    public void SetModelInfo(string model, string executionProvider, string sha256)
    {
        _modelInfo.WithLabels(model, executionProvider, sha256[..12]).Set(1);
        _ready.Set(1);
    }

    /// <summary>Outcome label for an HTTP status code.</summary>
    public static string OutcomeOf(int statusCode) => statusCode switch
    {
        499 => "canceled",
        >= 500 => "server_error",
        >= 400 => "client_error",
        _ => "success",
    };
}
