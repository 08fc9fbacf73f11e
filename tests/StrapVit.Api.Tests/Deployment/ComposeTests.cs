namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// docker-compose.yml and deploy/prometheus against the app and the Dockerfile: ports, targets, the GPU profile,
/// the read-only setup, what Prometheus scrapes and which files Prometheus and Grafana get.
/// </summary>
public sealed class ComposeTests
{
    private static readonly object? Compose = DeployFiles.Compose();
    private static readonly object? Prometheus = DeployFiles.Yaml("deploy", "prometheus", "prometheus.yml");

    public static TheoryData<string, string> Variants => new() { { "strapvit", "cpu" }, { "strapvit-gpu", "gpu" } };

    public static TheoryData<string> Services => ["strapvit", "strapvit-gpu"];

    [Theory]
    [MemberData(nameof(Variants))]
    public void Each_variant_builds_its_dockerfile_target_and_publishes_the_app_port(string service, string target)
    {
        var svc = YamlLite.Map(Compose, "services", service);
        var stages = DeployFiles.Dockerfile().Where(i => i.Keyword == "FROM").Select(i => i.Stage);

        Assert.Equal(target, YamlLite.Scalar(svc, "build", "target"));
        Assert.Contains(target, stages);
        var port = Assert.Single(YamlLite.List(svc, "ports")) as string;
        Assert.EndsWith($":{DeployFiles.AppPort}", port, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Services))]
    public void Each_variant_runs_read_only_with_a_tmpfs_and_a_cache_volume(string service)
    {
        var svc = YamlLite.Map(Compose, "services", service);
        var cache = YamlLite.Scalar(svc, "environment", "Model__CacheDirectory");

        Assert.Equal("true", YamlLite.Scalar(svc, "read_only"));
        Assert.Equal(["ALL"], YamlLite.List(svc, "cap_drop").Cast<string>());
        Assert.Contains("/tmp", YamlLite.List(svc, "tmpfs").Cast<string>());
        Assert.Contains(YamlLite.List(svc, "volumes").Cast<string>(), v => v.EndsWith(":" + cache, StringComparison.Ordinal));
    }

    [Fact]
    public void The_gpu_variant_is_a_profile_that_reserves_an_nvidia_gpu()
    {
        var gpu = YamlLite.Map(Compose, "services", "strapvit-gpu");
        var device = YamlLite.At(gpu, "deploy", "resources", "reservations", "devices", 0);

        Assert.Equal(["gpu"], YamlLite.List(gpu, "profiles").Cast<string>());
        Assert.Null(YamlLite.At(Compose, "services", "strapvit", "profiles"));
        Assert.Equal("nvidia", YamlLite.Scalar(device, "driver"));
        Assert.Contains("gpu", YamlLite.List(device, "capabilities").Cast<string>());
    }

    [Fact]
    public void Prometheus_scrapes_metrics_on_the_app_port_of_both_variants_and_labels_the_accelerator()
    {
        var job = YamlLite.List(Prometheus, "scrape_configs").Single(j => YamlLite.Scalar(j, "job_name") == "strapvit");
        var sd = YamlLite.At(job, "dns_sd_configs", 0);
        var relabel = YamlLite.List(job, "relabel_configs");

        Assert.Equal(DeployFiles.MetricsPath, YamlLite.Scalar(job, "metrics_path"));
        Assert.Equal(DeployFiles.AppPort.ToString(), YamlLite.Scalar(sd, "port"));
        Assert.Equal(["strapvit", "strapvit-gpu"], YamlLite.List(sd, "names").Cast<string>());
        Assert.All(YamlLite.List(sd, "names").Cast<string>(), name => Assert.NotNull(YamlLite.At(Compose, "services", name)));
        Assert.Contains(relabel, r => YamlLite.Scalar(r, "regex") == "strapvit-gpu"
            && YamlLite.Scalar(r, "target_label") == "accelerator" && YamlLite.Scalar(r, "replacement") == "gpu");
    }

    [Fact]
    public void Prometheus_and_grafana_get_the_files_they_are_configured_with()
    {
        var prometheus = YamlLite.Map(Compose, "services", "prometheus");
        var grafana = YamlLite.Map(Compose, "services", "grafana");
        var prometheusMounts = Mounts(prometheus);
        var grafanaMounts = Mounts(grafana);

        Assert.Equal("./deploy/prometheus/prometheus.yml", prometheusMounts["/etc/prometheus/prometheus.yml"]);
        Assert.Contains("--config.file=/etc/prometheus/prometheus.yml", YamlLite.List(prometheus, "command").Cast<string>());
        foreach (var ruleFile in YamlLite.List(Prometheus, "rule_files").Cast<string>())
        {
            Assert.True(prometheusMounts.ContainsKey(ruleFile), $"{ruleFile} is not mounted into Prometheus");
            Assert.True(File.Exists(DeployFiles.PathOf(prometheusMounts[ruleFile].Split('/')[1..])), $"{prometheusMounts[ruleFile]} is missing");
        }

        var datasources = DeployFiles.Yaml("deploy", "grafana", "provisioning", "datasources", "prometheus.yml");
        var providers = DeployFiles.Yaml("deploy", "grafana", "provisioning", "dashboards", "strapvit.yml");
        var dashboardDir = YamlLite.Scalar(providers, "providers", 0, "options", "path")!;
        var home = YamlLite.Scalar(grafana, "environment", "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")!;

        Assert.Equal("./deploy/grafana/provisioning", grafanaMounts["/etc/grafana/provisioning"]);
        Assert.Equal("./deploy/grafana/dashboards", grafanaMounts[dashboardDir]);
        Assert.StartsWith(dashboardDir + "/", home, StringComparison.Ordinal);
        Assert.True(File.Exists(DeployFiles.PathOf("deploy", "grafana", "dashboards", Path.GetFileName(home))));
        Assert.Equal("http://prometheus:9090", YamlLite.Scalar(datasources, "datasources", 0, "url"));
        // The dashboard's default data source is the provisioned one.
        Assert.Contains($"\"value\": \"{YamlLite.Scalar(datasources, "datasources", 0, "uid")}\"",
            DeployFiles.Text("deploy", "grafana", "dashboards", "strapvit.json"), StringComparison.Ordinal);
    }

    /// <summary>Bind and volume mounts of a service: container path to source.</summary>
    private static Dictionary<string, string> Mounts(Dictionary<string, object?> service) =>
        YamlLite.List(service, "volumes").Cast<string>().Select(v => v.Split(':'))
            .ToDictionary(p => p[1], p => p[0], StringComparer.Ordinal);
}
