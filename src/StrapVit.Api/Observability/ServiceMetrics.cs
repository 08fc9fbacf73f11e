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

    private readonly Gauge _attackSlotsInUse = Metrics.CreateGauge(
        "strapvit_attack_slots_in_use",
        "Attack and saliency requests running now (each holds one of Attacks:MaxConcurrentAttacks slots).");

    // Defense and attack metrics: names fixed here (dashboards and alerts in deploy/ use them), observed by those features.
    private readonly Histogram _defenseDuration = Metrics.CreateHistogram(
        "strapvit_defense_duration_seconds",
        "Time the patch defense adds to a classification, by mode.",
        new HistogramConfiguration { LabelNames = ["mode"], Buckets = Histogram.ExponentialBuckets(0.0001, 2, 16) });

    private readonly Counter _defenseImagesFlagged = Metrics.CreateCounter(
        "strapvit_defense_images_flagged_total",
        "Images in which the defense flagged at least one token beyond its minimum K, by mode.",
        new CounterConfiguration { LabelNames = ["mode"] });

    private readonly Histogram _defenseTokensFlagged = Metrics.CreateHistogram(
        "strapvit_defense_tokens_flagged",
        "Tokens flagged (and, in mitigate mode, transformed) per image.",
        new HistogramConfiguration { Buckets = [0, 1, 2, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256] });

    private readonly Histogram _attackDuration = Metrics.CreateHistogram(
        "strapvit_attack_duration_seconds",
        "Wall time of adversarial-example generation, by attack.",
        new HistogramConfiguration { LabelNames = ["attack"], Buckets = Histogram.ExponentialBuckets(0.001, 2, 18) });

    private readonly Histogram _attackIterations = Metrics.CreateHistogram(
        "strapvit_attack_iterations",
        "Gradient iterations an attack used, by attack.",
        new HistogramConfiguration { LabelNames = ["attack"], Buckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000] });

    private readonly Counter _attacks = Metrics.CreateCounter(
        "strapvit_attacks_total",
        "Finished attacks by attack and outcome (success, failure, rejected, canceled, error).",
        new CounterConfiguration { LabelNames = ["attack", "outcome"] });

    // Dynamic batching (Batching:*): observed only while it is on.
    private readonly Histogram _batchSize = Metrics.CreateHistogram(
        "strapvit_batch_size",
        "Images in each batch the dynamic batcher ran (one classifier or defense run).",
        new HistogramConfiguration { Buckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] });

    private readonly Histogram _batchQueue = Metrics.CreateHistogram(
        "strapvit_batch_queue_seconds",
        "Time each request waited in the dynamic batcher's queue before its batch ran.",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.00001, 2, 18) });

    public static readonly string[] DefenseModes = ["detect", "mitigate"];

    public static readonly string[] AttackNames = ["fgsm", "pgd", "deepfool", "patch", "universal_patch"];

    public static readonly string[] AttackOutcomes = ["success", "failure", "rejected", "canceled", "error"];

    public static readonly string[] Endpoints = ["classify", "defense", "attack", "patch_job", "explain"];

    public static readonly string[] Outcomes = ["success", "client_error", "server_error", "canceled"];

    public ServiceMetrics()
    {
        // Publish the zero series up front so dashboards and alerts see them before the first request.
        foreach (var endpoint in Endpoints)
        {
            foreach (var outcome in Outcomes)
            {
                _requests.WithLabels(endpoint, outcome);
            }
        }

        _inferenceDuration.WithLabels("forward");
        foreach (var mode in DefenseModes)
        {
            _defenseDuration.WithLabels(mode);
            _defenseImagesFlagged.WithLabels(mode);
        }

        foreach (var attack in AttackNames)
        {
            _attackDuration.WithLabels(attack);
            _attackIterations.WithLabels(attack);
            foreach (var outcome in AttackOutcomes)
            {
                _attacks.WithLabels(attack, outcome);
            }
        }

        _ready.Set(0);
    }

    public void ObserveInference(string graph, TimeSpan elapsed) => _inferenceDuration.WithLabels(graph).Observe(elapsed.TotalSeconds);

    public void CountRequest(string endpoint, string outcome) => _requests.WithLabels(endpoint, outcome).Inc();

    public void ObserveDefense(string mode, TimeSpan elapsed, int tokensFlagged, bool imageFlagged)
    {
        _defenseDuration.WithLabels(mode).Observe(elapsed.TotalSeconds);
        _defenseTokensFlagged.Observe(tokensFlagged);
        if (imageFlagged)
        {
            _defenseImagesFlagged.WithLabels(mode).Inc();
        }
    }

    public void ObserveAttack(string attack, string outcome, TimeSpan elapsed, int iterations)
    {
        _attacks.WithLabels(attack, outcome).Inc();
        if (outcome is "success" or "failure")
        {
            _attackDuration.WithLabels(attack).Observe(elapsed.TotalSeconds);
            _attackIterations.WithLabels(attack).Observe(iterations);
        }
    }

    public void ObserveBatch(int images, TimeSpan[] queued)
    {
        _batchSize.Observe(images);
        foreach (var wait in queued)
        {
            _batchQueue.Observe(wait.TotalSeconds);
        }
    }

    public void SetAttackSlotsInUse(int inUse) => _attackSlotsInUse.Set(inUse);

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
