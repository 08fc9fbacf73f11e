namespace StrapVit.Api.Tests.Deployment;

/// <summary>The small readers the deployment checks rely on: a check is only as good as what it reads.</summary>
public sealed class ParserTests
{
    [Theory]
    [InlineData("up{job=\"strapvit\"} == 0", "up")]
    [InlineData("strapvit_ready == 0", "strapvit_ready")]
    [InlineData("sum by (job) (rate(strapvit_requests_total{outcome=\"server_error\"}[5m])) / sum by (job) (rate(strapvit_requests_total[5m])) > 0.05", "strapvit_requests_total")]
    [InlineData("histogram_quantile(0.95, sum by (le, endpoint) (rate(http_request_duration_seconds_bucket{job=~\"$job\", endpoint=~\"/v1/.*\"}[$__rate_interval])))", "http_request_duration_seconds_bucket")]
    [InlineData("sum(rate(a_total[5m] offset 1h)) / ignoring(x) group_left(y) b_info * on (k) c", "a_total,b_info,c")]
    [InlineData("count by (execution_provider) (strapvit_model_info{job=~\"$job\"}) or vector(0)", "strapvit_model_info")]
    [InlineData("rate(foo_total{path=\"/a{b}\"}[1m]) * 1e3 + inf", "foo_total")]
    [InlineData("sum without (instance) (max_over_time(x_seconds[10m:1m]))", "x_seconds")]
    public void PromQL_metric_names_skip_functions_keywords_labels_strings_and_durations(string expr, string expected)
    {
        var names = PromQl.MetricNames(expr).Order(StringComparer.Ordinal);

        Assert.Equal(expected.Split(',', StringSplitOptions.RemoveEmptyEntries), names);
    }

    [Fact]
    public void PromQL_selectors_grouping_and_template_queries()
    {
        var selectors = PromQl.Selectors("sum by (le, mode) (rate(x_bucket{job=~\"$job\", mode!=\"a,b\"}[5m])) / y{z=\"}\"}");

        Assert.Equal(["job", "mode"], selectors.Single(s => s.Metric == "x_bucket").Labels);
        Assert.Equal(["z"], selectors.Single(s => s.Metric == "y").Labels);
        Assert.Equal(["le", "mode"], PromQl.GroupingLabels("sum by (le, mode) (x) / on(mode) y").Order(StringComparer.Ordinal));
        Assert.Equal("strapvit_ready{job=~\"$job\"}", PromQl.FromTemplateQuery("label_values(strapvit_ready{job=~\"$job\"}, instance)"));
        Assert.Null(PromQl.FromTemplateQuery("label_values(job)"));
    }

    [Fact]
    public void Yaml_reads_nested_maps_sequences_block_scalars_flow_collections_comments_and_merges()
    {
        const string text = """
            # comment
            base: &base
              read_only: true
              tmpfs:
                - /tmp
            services:
              api:
                <<: *base
                image: "x:1"   # trailing comment
                ports: ["8080:8080", '9090:9090']
                command:
                - --flag=a#b
              other:
                env:
                  URL: http://host:9090/path
                labels: {tier: "web", empty: ""}
            rules:
              - alert: A
                expr: |
                  sum(rate(x[5m]))
                    > 1
                annotations:
                  description: >-
                    folded
                    text # not a comment
              - alert: B
                expr: up == 0
            """;

        var doc = YamlTree.Parse(text);

        Assert.Equal("true", YamlTree.Scalar(doc, "services", "api", "read_only"));
        Assert.Equal("/tmp", YamlTree.Scalar(doc, "services", "api", "tmpfs", 0));
        Assert.Equal("x:1", YamlTree.Scalar(doc, "services", "api", "image"));
        Assert.Equal(["8080:8080", "9090:9090"], YamlTree.List(doc, "services", "api", "ports").Cast<string>());
        Assert.Equal("--flag=a#b", YamlTree.Scalar(doc, "services", "api", "command", 0));
        Assert.Equal("http://host:9090/path", YamlTree.Scalar(doc, "services", "other", "env", "URL"));
        Assert.Equal("web", YamlTree.Scalar(doc, "services", "other", "labels", "tier"));
        Assert.Equal("", YamlTree.Scalar(doc, "services", "other", "labels", "empty"));
        Assert.Equal("sum(rate(x[5m]))\n  > 1\n", YamlTree.Scalar(doc, "rules", 0, "expr"));
        Assert.Equal("folded text # not a comment", YamlTree.Scalar(doc, "rules", 0, "annotations", "description"));
        Assert.Equal("up == 0", YamlTree.Scalar(doc, "rules", 1, "expr"));
    }

    [Theory]
    [InlineData("a: 1\na: 2", typeof(YamlDotNet.Core.YamlException))]
    [InlineData("a: 1\n---\nb: 2", typeof(FormatException))]
    [InlineData("a:\n  - x\n  y", typeof(YamlDotNet.Core.YamlException))]
    public void Yaml_refuses_duplicate_keys_several_documents_and_broken_structure(string text, Type error)
    {
        var ex = Record.Exception(() => YamlTree.Parse(text));

        Assert.IsType(error, ex, exactMatch: false);
    }

    [Fact]
    public void Metrics_exposition_knows_histogram_series_and_labels()
    {
        const string page = """
            # HELP h_seconds x
            # TYPE h_seconds histogram
            h_seconds_bucket{graph="forward",le="0.1"} 1
            h_seconds_sum{graph="forward"} 0.05
            h_seconds_count{graph="forward"} 1
            # TYPE c_total counter
            c_total{endpoint="classify",outcome="success"} 3
            # TYPE g gauge
            g 1
            """;

        var m = MetricsExposition.Parse(page);

        Assert.True(m.Exports("h_seconds_bucket") && m.Exports("h_seconds_count") && m.Exports("c_total") && m.Exports("g"));
        Assert.False(m.Exports("h_seconds"));
        Assert.False(m.Exports("c_total_bucket"));
        Assert.Equal(["graph", "le"], m.LabelsOf("h_seconds_bucket").Order(StringComparer.Ordinal));
        Assert.Equal(["endpoint", "outcome"], m.LabelsOf("c_total").Order(StringComparer.Ordinal));
    }
}
