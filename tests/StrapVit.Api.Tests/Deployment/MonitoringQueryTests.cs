using System.Text.RegularExpressions;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// The Grafana dashboard and the alert rules (compose and Prometheus Operator) query only metrics and labels that the
/// service really exports: a renamed metric or label must fail here, not leave an empty panel or a silent alert.
/// </summary>
public sealed partial class MonitoringQueryTests(LiveService live) : IClassFixture<LiveService>
{
    /// <summary>Series Prometheus makes per target itself.</summary>
    private static readonly HashSet<string> PrometheusSeries = ["up"];

    /// <summary>
    /// Labels that scraping adds, not the service: job and instance by Prometheus; service and accelerator by the
    /// relabelling in deploy/prometheus/prometheus.yml and the ServiceMonitor; namespace, pod, container by the operator.
    /// </summary>
    private static readonly HashSet<string> TargetLabels = ["job", "instance", "service", "accelerator", "namespace", "pod", "container"];

    private static readonly string[] RuleFilePaths = ["deploy/prometheus/alerts.yml", "deploy/k8s/base/prometheusrule.yaml"];

    public static TheoryData<string> RuleFiles => [.. RuleFilePaths];

    [Fact]
    public void Every_metric_the_dashboard_uses_is_exported()
    {
        var queries = DeployFiles.DashboardQueries();

        Assert.True(queries.Count >= 20, $"Only {queries.Count} dashboard queries found: is the dashboard parsed?");
        AssertNone(Unexported(queries));
    }

    [Theory]
    [MemberData(nameof(RuleFiles))]
    public void Every_metric_the_alert_rules_use_is_exported(string file)
    {
        var queries = DeployFiles.RuleQueries(file, DeployFiles.Yaml(file.Split('/')));

        Assert.True(queries.Count >= 5, $"Only {queries.Count} rules found in {file}.");
        AssertNone(Unexported(queries));
    }

    [Fact]
    public void Label_matchers_groupings_and_legends_name_labels_the_metrics_carry()
    {
        var queries = DeployFiles.DashboardQueries()
            .Concat(RuleFilePaths.SelectMany(f => DeployFiles.RuleQueries(f, DeployFiles.Yaml(f.Split('/')))));
        var problems = new List<string>();
        foreach (var q in queries)
        {
            foreach (var selector in PromQl.Selectors(q.Expr).Where(s => !PrometheusSeries.Contains(s.Metric)))
            {
                var known = live.Metrics.LabelsOf(selector.Metric);
                problems.AddRange(selector.Labels.Where(l => !known.Contains(l) && !TargetLabels.Contains(l))
                    .Select(l => $"{q.Source}: {selector.Metric} has no label '{l}'"));
            }

            // Grouping and legend labels must come from some metric of the same expression (or from scraping).
            var available = PromQl.MetricNames(q.Expr).SelectMany(live.Metrics.LabelsOf).Append("le").ToHashSet(StringComparer.Ordinal);
            var used = PromQl.GroupingLabels(q.Expr).Concat(LegendLabel().Matches(q.Legend ?? "").Select(m => m.Groups["label"].Value));
            problems.AddRange(used.Where(l => !available.Contains(l) && !TargetLabels.Contains(l))
                .Select(l => $"{q.Source}: no metric in '{q.Expr.Trim()}' has label '{l}'"));
        }

        AssertNone(problems);
    }

    [Fact]
    public void The_dashboard_shows_requests_latency_inference_provider_defense_attacks_errors_and_readiness()
    {
        var used = DeployFiles.DashboardQueries().SelectMany(q => PromQl.MetricNames(q.Expr)).ToHashSet(StringComparer.Ordinal);

        Assert.Subset(used, new HashSet<string>(StringComparer.Ordinal)
        {
            "http_requests_received_total", // request rate by endpoint
            "http_request_duration_seconds_bucket", // latency by endpoint
            "strapvit_inference_duration_seconds_bucket", // inference latency
            "strapvit_model_info", // execution provider
            "strapvit_defense_images_flagged_total", // defense detections
            "strapvit_attack_duration_seconds_bucket", // attack durations
            "strapvit_attacks_total", // attack outcomes
            "strapvit_requests_total", // errors
            "strapvit_ready", // readiness
        });
    }

    [Theory]
    [MemberData(nameof(RuleFiles))]
    public void The_alerts_cover_error_ratio_latency_readiness_and_cuda_fallback(string file)
    {
        var rules = DeployFiles.Rules(DeployFiles.Yaml(file.Split('/'))).ToDictionary(r => r.Name, r => r.Expr);

        Assert.Contains("strapvit_requests_total{outcome=\"server_error\"}", rules["StrapVitHighErrorRatio"], StringComparison.Ordinal);
        Assert.Contains("histogram_quantile(0.95", rules["StrapVitHighClassifyLatency"], StringComparison.Ordinal);
        Assert.Contains("strapvit_ready == 0", rules["StrapVitNotReady"], StringComparison.Ordinal);
        // The fallback alert compares against the provider name the service reports in strapvit_model_info.
        Assert.Contains($"execution_provider!=\"{OnnxSessionFactory.Cuda}\"", rules["StrapVitCudaFallback"], StringComparison.Ordinal);
        Assert.Contains("accelerator=\"gpu\"", rules["StrapVitCudaFallback"], StringComparison.Ordinal);
    }

    [Fact]
    public void The_operator_rules_are_the_compose_rules()
    {
        var compose = DeployFiles.Rules(DeployFiles.Yaml("deploy", "prometheus", "alerts.yml"));
        var operatorRules = DeployFiles.Rules(DeployFiles.K8s("prometheusrule.yaml"));

        Assert.Equal(compose, operatorRules);
    }

    [Fact]
    public void Model_info_reports_the_execution_provider_label_the_dashboard_and_alert_read()
    {
        Assert.Contains("execution_provider", live.Metrics.LabelsOf("strapvit_model_info"));
        Assert.True(live.Metrics.Exports("strapvit_inference_duration_seconds_bucket"));
        Assert.False(live.Metrics.Exports("strapvit_inference_duration_seconds"), "A histogram's bare name is no series.");
        Assert.False(live.Metrics.Exports("strapvit_no_such_metric_total"));
    }

    [PromtoolFact]
    public async Task The_metrics_page_passes_promtool_check_metrics()
    {
        var page = await live.Client.GetStringAsync(DeployFiles.MetricsPath);

        var (_, output) = await Promtool.RunAsync(page, DeployFiles.PathOf(), "check", "metrics");

        // Every family on the page is the service's own (strapvit_*, http_*, process_*, dotnet_*): all must lint clean.
        var findings = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        Assert.True(findings.Count == 0, $"promtool check metrics found problems:\n{string.Join('\n', findings)}");
        Assert.DoesNotContain("error while linting", output, StringComparison.Ordinal);
    }

    [PromtoolFact]
    public async Task The_alert_unit_tests_pass_on_series_the_service_exports()
    {
        // deploy/prometheus/alerts.test.yml feeds each alert the series that should fire it; those series must be
        // ones the service really exports, with labels it (or scraping) really sets, or the unit tests prove nothing.
        var tests = DeployFiles.Yaml("deploy", "prometheus", "alerts.test.yml");
        var series = YamlTree.List(tests, "tests").SelectMany(t => YamlTree.List(t, "input_series"))
            .Select(s => YamlTree.Scalar(s, "series")!).ToList();
        var problems = new List<string>();
        foreach (var selector in series.SelectMany(PromQl.Selectors).Where(s => !PrometheusSeries.Contains(s.Metric)))
        {
            if (!live.Metrics.Exports(selector.Metric))
            {
                problems.Add($"alerts.test.yml: {selector.Metric} is not exported");
            }

            var known = live.Metrics.LabelsOf(selector.Metric);
            problems.AddRange(selector.Labels.Where(l => !known.Contains(l) && !TargetLabels.Contains(l))
                .Select(l => $"alerts.test.yml: {selector.Metric} has no label '{l}'"));
        }

        Assert.True(series.Count >= 10, $"Only {series.Count} input series found.");
        AssertNone(problems);

        var (exitCode, output) = await Promtool.RunAsync("", DeployFiles.PathOf("deploy", "prometheus"), "test", "rules", "alerts.test.yml");

        Assert.True(exitCode == 0, $"promtool test rules failed:\n{output}");
    }

    private List<string> Unexported(IEnumerable<Query> queries) =>
        [.. queries.SelectMany(q => PromQl.MetricNames(q.Expr)
            .Where(n => !PrometheusSeries.Contains(n) && !live.Metrics.Exports(n))
            .Select(n => $"{q.Source}: {n}"))];

    private static void AssertNone(List<string> problems) =>
        Assert.True(problems.Count == 0, "\n" + string.Join("\n", problems));

    [GeneratedRegex(@"\{\{\s*(?<label>[A-Za-z_][A-Za-z0-9_]*)\s*\}\}")]
    private static partial Regex LegendLabel();
}
