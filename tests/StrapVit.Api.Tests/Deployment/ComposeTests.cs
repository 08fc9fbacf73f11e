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
        var svc = YamlTree.Map(Compose, "services", service);
        var stages = DeployFiles.Dockerfile().Where(i => i.Keyword == "FROM").Select(i => i.Stage);

        Assert.Equal(target, YamlTree.Scalar(svc, "build", "target"));
        Assert.Contains(target, stages);
        var port = Assert.Single(YamlTree.List(svc, "ports")) as string;
        Assert.EndsWith($":{DeployFiles.AppPort}", port, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Services))]
    public void Each_variant_runs_read_only_with_a_tmpfs_and_a_cache_volume(string service)
    {
        var svc = YamlTree.Map(Compose, "services", service);
        var cache = YamlTree.Scalar(svc, "environment", "Model__CacheDirectory");

        Assert.Equal("true", YamlTree.Scalar(svc, "read_only"));
        Assert.Equal(["ALL"], YamlTree.List(svc, "cap_drop").Cast<string>());
        Assert.Contains("/tmp", YamlTree.List(svc, "tmpfs").Cast<string>());
        Assert.Contains(YamlTree.List(svc, "volumes").Cast<string>(), v => v.EndsWith(":" + cache, StringComparison.Ordinal));
    }

    [Fact]
    public void The_gpu_variant_is_a_profile_that_reserves_an_nvidia_gpu()
    {
        var gpu = YamlTree.Map(Compose, "services", "strapvit-gpu");
        var device = YamlTree.At(gpu, "deploy", "resources", "reservations", "devices", 0);

        Assert.Equal(["gpu"], YamlTree.List(gpu, "profiles").Cast<string>());
        Assert.Null(YamlTree.At(Compose, "services", "strapvit", "profiles"));
        Assert.Equal("nvidia", YamlTree.Scalar(device, "driver"));
        Assert.Contains("gpu", YamlTree.List(device, "capabilities").Cast<string>());
    }

    [Fact]
    public void Prometheus_scrapes_metrics_on_the_app_port_of_both_variants_and_labels_the_accelerator()
    {
        var job = YamlTree.List(Prometheus, "scrape_configs").Single(j => YamlTree.Scalar(j, "job_name") == "strapvit");
        var sd = YamlTree.At(job, "dns_sd_configs", 0);
        var relabel = YamlTree.List(job, "relabel_configs");

        Assert.Equal(DeployFiles.MetricsPath, YamlTree.Scalar(job, "metrics_path"));
        Assert.Equal(DeployFiles.AppPort.ToString(), YamlTree.Scalar(sd, "port"));
        Assert.Equal(["strapvit", "strapvit-gpu"], YamlTree.List(sd, "names").Cast<string>());
        Assert.All(YamlTree.List(sd, "names").Cast<string>(), name => Assert.NotNull(YamlTree.At(Compose, "services", name)));
        Assert.Contains(relabel, r => YamlTree.Scalar(r, "regex") == "strapvit-gpu"
            && YamlTree.Scalar(r, "target_label") == "accelerator" && YamlTree.Scalar(r, "replacement") == "gpu");
    }

    [Fact]
    public void Prometheus_and_grafana_get_the_files_they_are_configured_with()
    {
        var prometheus = YamlTree.Map(Compose, "services", "prometheus");
        var grafana = YamlTree.Map(Compose, "services", "grafana");
        var prometheusMounts = Mounts(prometheus);
        var grafanaMounts = Mounts(grafana);

        Assert.Equal("./deploy/prometheus/prometheus.yml", prometheusMounts["/etc/prometheus/prometheus.yml"]);
        Assert.Contains("--config.file=/etc/prometheus/prometheus.yml", YamlTree.List(prometheus, "command").Cast<string>());
        foreach (var ruleFile in YamlTree.List(Prometheus, "rule_files").Cast<string>())
        {
            Assert.True(prometheusMounts.ContainsKey(ruleFile), $"{ruleFile} is not mounted into Prometheus");
            Assert.True(File.Exists(DeployFiles.PathOf(prometheusMounts[ruleFile].Split('/')[1..])), $"{prometheusMounts[ruleFile]} is missing");
        }

        var datasources = DeployFiles.Yaml("deploy", "grafana", "provisioning", "datasources", "prometheus.yml");
        var providers = DeployFiles.Yaml("deploy", "grafana", "provisioning", "dashboards", "strapvit.yml");
        var dashboardDir = YamlTree.Scalar(providers, "providers", 0, "options", "path")!;
        var home = YamlTree.Scalar(grafana, "environment", "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")!;

        Assert.Equal("./deploy/grafana/provisioning", grafanaMounts["/etc/grafana/provisioning"]);
        Assert.Equal("./deploy/grafana/dashboards", grafanaMounts[dashboardDir]);
        Assert.StartsWith(dashboardDir + "/", home, StringComparison.Ordinal);
        Assert.True(File.Exists(DeployFiles.PathOf("deploy", "grafana", "dashboards", Path.GetFileName(home))));
        Assert.Equal("http://prometheus:9090", YamlTree.Scalar(datasources, "datasources", 0, "url"));
        // The dashboard's default data source is the provisioned one.
        Assert.Contains($"\"value\": \"{YamlTree.Scalar(datasources, "datasources", 0, "uid")}\"",
            DeployFiles.Text("deploy", "grafana", "dashboards", "strapvit.json"), StringComparison.Ordinal);
    }

    /// <summary>Bind and volume mounts of a service: container path to source.</summary>
    private static Dictionary<string, string> Mounts(Dictionary<string, object?> service) =>
        YamlTree.List(service, "volumes").Cast<string>().Select(v => v.Split(':'))
            .ToDictionary(p => p[1], p => p[0], StringComparer.Ordinal);
}
