using System.Diagnostics.Metrics;

namespace StrapVit.Api.Observability;

/// <summary>
/// The service's own metrics, on this host's <see cref="Meter"/> (System.Diagnostics.Metrics through
/// <see cref="IMeterFactory"/>, so two hosts in one process count apart), exported at /metrics in Prometheus format.
/// Instruments carry their Prometheus names (the exporter adds no suffix): the dashboards and alerts in deploy/ query
/// them. Label values are bounded: endpoint and outcome names are fixed sets, never user input.
/// </summary>
public sealed class ServiceMetrics
{
    /// <summary>The meter every StrapVit instrument lives on (the telemetry set-up enables it for this host only).</summary>
    public const string MeterName = "StrapVit";

    private readonly Histogram<double> _inferenceDuration;
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _defenseDuration;
    private readonly Counter<long> _defenseImagesFlagged;
    private readonly Histogram<int> _defenseTokensFlagged;
    private readonly Histogram<double> _attackDuration;
    private readonly Histogram<int> _attackIterations;
    private readonly Counter<long> _attacks;
    private readonly Counter<long> _authRequests;
    private readonly Histogram<int> _batchSize;
    private readonly Histogram<double> _batchQueue;

    // Gauges are observed at scrape time from these fields.
    private volatile ModelInfo? _modelInfo;
    private int _attackSlotsInUse;

    public static readonly string[] DefenseModes = ["detect", "mitigate"];

    public static readonly string[] AttackNames = ["fgsm", "pgd", "deepfool", "patch", "universal_patch"];

    public static readonly string[] AttackOutcomes = ["success", "failure", "rejected", "canceled", "error"];

    public static readonly string[] Endpoints = ["classify", "defense", "attack", "patch_job", "explain"];

    public static readonly string[] Outcomes = ["success", "client_error", "server_error", "canceled"];

    public ServiceMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _inferenceDuration = meter.CreateHistogram(
            "strapvit_inference_duration_seconds", "s", "Time spent in ONNX Runtime runs, by graph.",
            advice: Buckets(Exponential(0.0001, 2, 16)));
        _requests = meter.CreateCounter<long>(
            "strapvit_requests_total", null, "Model requests by endpoint and outcome (success, client_error, server_error, canceled).");
        meter.CreateObservableGauge(
            "strapvit_model_info", ObserveModelInfo, null, "Always 1; labels name the loaded model and the execution provider in use.");
        meter.CreateObservableGauge(
            "strapvit_ready", () => _modelInfo is null ? 0 : 1, null, "1 when the model is loaded and warmed up, else 0.");
        meter.CreateObservableGauge(
            "strapvit_attack_slots_in_use", () => Volatile.Read(ref _attackSlotsInUse), null,
            "Attack and saliency requests running now (each holds one of Attacks:MaxConcurrentAttacks slots).");

        // Defense and attack metrics: names fixed here (dashboards and alerts in deploy/ use them), observed by those features.
        _defenseDuration = meter.CreateHistogram(
            "strapvit_defense_duration_seconds", "s", "Time the patch defense adds to a classification, by mode.",
            advice: Buckets(Exponential(0.0001, 2, 16)));
        _defenseImagesFlagged = meter.CreateCounter<long>(
            "strapvit_defense_images_flagged_total", null, "Images in which the defense flagged at least one token beyond its minimum K, by mode.");
        _defenseTokensFlagged = meter.CreateHistogram(
            "strapvit_defense_tokens_flagged", "{token}", "Tokens flagged (and, in mitigate mode, transformed) per image.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [0, 1, 2, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256] });
        _attackDuration = meter.CreateHistogram(
            "strapvit_attack_duration_seconds", "s", "Wall time of adversarial-example generation, by attack.",
            advice: Buckets(Exponential(0.001, 2, 18)));
        _attackIterations = meter.CreateHistogram(
            "strapvit_attack_iterations", "{iteration}", "Gradient iterations an attack used, by attack.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000] });
        _attacks = meter.CreateCounter<long>(
            "strapvit_attacks_total", null, "Finished attacks by attack and outcome (success, failure, rejected, canceled, error).");
        _authRequests = meter.CreateCounter<long>(
            "strapvit_auth_requests_total", null,
            "Requests that presented an API key, or needed one, by key name (a configured name, or none) and result (accepted, missing, invalid).");

        // Dynamic batching (Batching:*): observed only while it is on.
        _batchSize = meter.CreateHistogram(
            "strapvit_batch_size", "{image}", "Images in each batch the dynamic batcher ran (one classifier or defense run).",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] });
        _batchQueue = meter.CreateHistogram(
            "strapvit_batch_queue_seconds", "s", "Time each request waited in the dynamic batcher's queue before its batch ran.",
            advice: Buckets(Exponential(0.00001, 2, 18)));
        ProcessMetrics.Register(meter);
    }

    /// <summary>
    /// Records zero on every counter series, so dashboards and alerts see each one before its first event. Called once
    /// the host has started (<see cref="ZeroSeriesPublisher"/>): a measurement made before the exporter listens is lost.
    /// </summary>
    public void PublishZeroSeries()
    {
        foreach (var endpoint in Endpoints)
        {
            foreach (var outcome in Outcomes)
            {
                _requests.Add(0, Tag("endpoint", endpoint), Tag("outcome", outcome));
            }
        }

        foreach (var mode in DefenseModes)
        {
            _defenseImagesFlagged.Add(0, Tag("mode", mode));
        }

        foreach (var attack in AttackNames)
        {
            foreach (var outcome in AttackOutcomes)
            {
                _attacks.Add(0, Tag("attack", attack), Tag("outcome", outcome));
            }
        }
    }

    public void ObserveInference(string graph, TimeSpan elapsed) => _inferenceDuration.Record(elapsed.TotalSeconds, Tag("graph", graph));

    public void CountRequest(string endpoint, string outcome) => _requests.Add(1, Tag("endpoint", endpoint), Tag("outcome", outcome));

    public void ObserveDefense(string mode, TimeSpan elapsed, int tokensFlagged, bool imageFlagged)
    {
        _defenseDuration.Record(elapsed.TotalSeconds, Tag("mode", mode));
        _defenseTokensFlagged.Record(tokensFlagged);
        if (imageFlagged)
        {
            _defenseImagesFlagged.Add(1, Tag("mode", mode));
        }
    }

    public void ObserveAttack(string attack, string outcome, TimeSpan elapsed, int iterations)
    {
        _attacks.Add(1, Tag("attack", attack), Tag("outcome", outcome));
        if (outcome is "success" or "failure")
        {
            _attackDuration.Record(elapsed.TotalSeconds, Tag("attack", attack));
            _attackIterations.Record(iterations, Tag("attack", attack));
        }
    }

    /// <summary>Counts an API-key check: <paramref name="key"/> is a configured key's name or "none", never the key.</summary>
    public void CountAuth(string key, string result) => _authRequests.Add(1, Tag("key", key), Tag("result", result));

    /// <summary>One batch the dynamic batcher ran: its image count and how long each of its requests waited.</summary>
    public void ObserveBatch(int images, TimeSpan[] queued)
    {
        _batchSize.Record(images);
        foreach (var wait in queued)
        {
            _batchQueue.Record(wait.TotalSeconds);
        }
    }

    public void SetAttackSlotsInUse(int inUse) => Volatile.Write(ref _attackSlotsInUse, inUse);

    public void SetModelInfo(string model, string executionProvider, string sha256) =>
        _modelInfo = new ModelInfo(model, executionProvider, sha256[..12]);

    /// <summary>Outcome label for an HTTP status code.</summary>
    public static string OutcomeOf(int statusCode) => statusCode switch
    {
        499 => "canceled",
        >= 500 => "server_error",
        >= 400 => "client_error",
        _ => "success",
    };

    private IEnumerable<Measurement<int>> ObserveModelInfo() =>
        _modelInfo is { } info
            ? [new Measurement<int>(1, Tag("model", info.Model), Tag("execution_provider", info.ExecutionProvider), Tag("sha256", info.Sha256))]
            : [];

    private static KeyValuePair<string, object?> Tag(string name, string value) => new(name, value);

    private static InstrumentAdvice<double> Buckets(double[] bounds) => new() { HistogramBucketBoundaries = bounds };

    /// <summary><paramref name="count"/> bucket bounds from <paramref name="start"/>, each <paramref name="factor"/> times the last.</summary>
    private static double[] Exponential(double start, double factor, int count) =>
        [.. Enumerable.Range(0, count).Select(i => start * Math.Pow(factor, i))];

    private sealed record ModelInfo(string Model, string ExecutionProvider, string Sha256);
}
