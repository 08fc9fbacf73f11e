using System.Net;
using System.Text.RegularExpressions;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// deploy/k8s against the app: probes reach real health routes on the container port, the Service and the
/// ServiceMonitor reach that port and /metrics, the pod is locked down and gets a GPU, and the HPA scales it.
/// </summary>
public sealed partial class KubernetesManifestTests(LiveService live) : IClassFixture<LiveService>
{
    private static readonly object? Deployment = DeployFiles.K8s("deployment.yaml");
    private static readonly object? PodSpec = YamlTree.At(Deployment, "spec", "template", "spec");
    private static readonly object? Container = YamlTree.List(PodSpec, "containers").Single();

    [Fact]
    public void The_container_port_is_the_app_port_and_named_http()
    {
        var port = Assert.Single(YamlTree.List(Container, "ports"));

        Assert.Equal("http", YamlTree.Scalar(port, "name"));
        Assert.Equal(DeployFiles.AppPort.ToString(), YamlTree.Scalar(port, "containerPort"));
        Assert.Equal(DeployFiles.AppPort.ToString(), YamlTree.Scalar(DeployFiles.K8s("configmap.yaml"), "data", "ASPNETCORE_HTTP_PORTS"));
    }

    [Theory]
    [InlineData("startupProbe", DeployFiles.LivePath)]
    [InlineData("livenessProbe", DeployFiles.LivePath)]
    [InlineData("readinessProbe", DeployFiles.ReadyPath)]
    public async Task Probes_ask_the_health_routes_on_the_container_port(string probe, string path)
    {
        var httpGet = YamlTree.Map(Container, probe, "httpGet");

        Assert.Equal(path, YamlTree.Scalar(httpGet, "path"));
        Assert.Equal(DeployFiles.AppPort.ToString(), ContainerPort(YamlTree.Scalar(httpGet, "port")!));
        using var response = await live.Client.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Every_http_probe_in_the_manifests_answers_200()
    {
        var paths = YamlTree.Descendants(Deployment).OfType<Dictionary<string, object?>>()
            .Where(m => m.ContainsKey("httpGet")).Select(m => YamlTree.Scalar(m, "httpGet", "path")!).ToList();

        Assert.Equal(3, paths.Count);
        foreach (var path in paths.Distinct())
        {
            using var response = await live.Client.GetAsync(path);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path} answered {(int)response.StatusCode}");
        }
    }

    [Fact]
    public void The_pod_is_locked_down_and_writes_only_to_its_emptydirs()
    {
        var pod = YamlTree.Map(PodSpec, "securityContext");
        var container = YamlTree.Map(Container, "securityContext");
        var mounts = YamlTree.List(Container, "volumeMounts").ToDictionary(m => YamlTree.Scalar(m, "mountPath")!, m => YamlTree.Scalar(m, "name")!);
        var emptyDirs = YamlTree.List(PodSpec, "volumes").Where(v => YamlTree.At(v, "emptyDir") is not null).Select(v => YamlTree.Scalar(v, "name")).ToHashSet();
        var cache = YamlTree.Scalar(DeployFiles.K8s("configmap.yaml"), "data", "Model__CacheDirectory")!;

        Assert.Equal("true", YamlTree.Scalar(pod, "runAsNonRoot"));
        Assert.Equal("RuntimeDefault", YamlTree.Scalar(pod, "seccompProfile", "type"));
        Assert.Equal("false", YamlTree.Scalar(container, "allowPrivilegeEscalation"));
        Assert.Equal("true", YamlTree.Scalar(container, "readOnlyRootFilesystem"));
        Assert.Equal(["ALL"], YamlTree.List(container, "capabilities", "drop").Cast<string>());
        Assert.Equal("false", YamlTree.Scalar(PodSpec, "automountServiceAccountToken"));
        Assert.Contains(mounts[cache], emptyDirs);
        Assert.Contains(mounts["/tmp"], emptyDirs);
    }

    [Fact]
    public void The_pod_asks_for_a_gpu_and_bounded_cpu_and_memory()
    {
        var resources = YamlTree.Map(Container, "resources");

        Assert.Equal("1", YamlTree.Scalar(resources, "limits", "nvidia.com/gpu"));
        foreach (var kind in new[] { "requests", "limits" })
        {
            Assert.NotNull(YamlTree.Scalar(resources, kind, "cpu"));
            Assert.NotNull(YamlTree.Scalar(resources, kind, "memory"));
        }

        Assert.Equal("gpu", YamlTree.Scalar(Deployment, "spec", "template", "metadata", "labels", "strapvit.io/accelerator"));
    }

    [Fact]
    public void The_service_targets_the_container_port_and_selects_the_pods()
    {
        var service = DeployFiles.K8s("service.yaml");
        var port = Assert.Single(YamlTree.List(service, "spec", "ports"));
        var podLabels = YamlTree.Map(Deployment, "spec", "template", "metadata", "labels");

        Assert.Equal("http", YamlTree.Scalar(port, "name"));
        Assert.Equal(DeployFiles.AppPort.ToString(), ContainerPort(YamlTree.Scalar(port, "targetPort")!));
        Assert.All(YamlTree.Map(service, "spec", "selector"), kv => Assert.Equal(kv.Value, podLabels.GetValueOrDefault(kv.Key)));
        Assert.Equal(YamlTree.Map(Deployment, "spec", "selector", "matchLabels"), YamlTree.Map(service, "spec", "selector"));
    }

    [Fact]
    public void The_servicemonitor_scrapes_metrics_on_the_service_port_without_clobbering_the_endpoint_label()
    {
        var monitor = DeployFiles.K8s("servicemonitor.yaml");
        var service = DeployFiles.K8s("service.yaml");
        var endpoint = Assert.Single(YamlTree.List(monitor, "spec", "endpoints"));
        var relabelings = YamlTree.List(endpoint, "relabelings");

        Assert.Equal("monitoring.coreos.com/v1", YamlTree.Scalar(monitor, "apiVersion"));
        Assert.Equal(YamlTree.Scalar(service, "spec", "ports", 0, "name"), YamlTree.Scalar(endpoint, "port"));
        Assert.Equal(DeployFiles.MetricsPath, YamlTree.Scalar(endpoint, "path"));
        Assert.All(YamlTree.Map(monitor, "spec", "selector", "matchLabels"),
            kv => Assert.Equal(kv.Value, YamlTree.Map(service, "metadata", "labels").GetValueOrDefault(kv.Key)));
        // The service labels its own series with "endpoint"; the operator's target label of that name must go.
        Assert.Contains(relabelings, r => YamlTree.Scalar(r, "action") == "labeldrop" && YamlTree.Scalar(r, "regex") == "endpoint");
        Assert.Contains("endpoint", live.Metrics.LabelsOf("strapvit_requests_total"));
        // accelerator comes from the pod label, as Prometheus spells it (non-alphanumerics as underscores).
        var accelerator = Assert.Single(relabelings, r => YamlTree.Scalar(r, "targetLabel") == "accelerator");
        Assert.Equal("__meta_kubernetes_pod_label_" + NonAlphanumeric().Replace("strapvit.io/accelerator", "_"),
            YamlTree.Scalar(accelerator, "sourceLabels", 0));
    }

    [Fact]
    public void The_autoscaler_scales_the_deployment_on_cpu()
    {
        var hpa = DeployFiles.K8s("hpa.yaml");

        Assert.Equal("autoscaling/v2", YamlTree.Scalar(hpa, "apiVersion"));
        Assert.Equal("Deployment", YamlTree.Scalar(hpa, "spec", "scaleTargetRef", "kind"));
        Assert.Equal(YamlTree.Scalar(Deployment, "metadata", "name"), YamlTree.Scalar(hpa, "spec", "scaleTargetRef", "name"));
        Assert.Equal("cpu", YamlTree.Scalar(hpa, "spec", "metrics", 0, "resource", "name"));
        Assert.True(int.Parse(YamlTree.Scalar(hpa, "spec", "maxReplicas")!) > int.Parse(YamlTree.Scalar(hpa, "spec", "minReplicas")!));
    }

    [Fact]
    public void The_kustomization_lists_every_manifest_and_the_cpu_overlay_builds_on_it()
    {
        var dir = DeployFiles.PathOf("deploy", "k8s", "base");
        var listed = YamlTree.List(DeployFiles.K8s("kustomization.yaml"), "resources").Cast<string>().Order().ToList();
        var files = Directory.EnumerateFiles(dir, "*.yaml").Select(f => Path.GetFileName(f)).Where(f => f != "kustomization.yaml").Order().ToList();
        var cpu = DeployFiles.Yaml("deploy", "k8s", "cpu", "kustomization.yaml");

        Assert.Equal(files, listed);
        Assert.Equal(["../base"], YamlTree.List(cpu, "resources").Cast<string>());
        Assert.Equal(["base"], YamlTree.List(DeployFiles.Yaml("deploy", "k8s", "kustomization.yaml"), "resources").Cast<string>());
        var patches = string.Join('\n', YamlTree.List(cpu, "patches").Select(p => YamlTree.Scalar(p, "patch")));
        Assert.Contains("nvidia.com~1gpu", patches, StringComparison.Ordinal);
        Assert.Contains("value: Cpu", patches, StringComparison.Ordinal);
        Assert.Contains("value: cpu", patches, StringComparison.Ordinal);
    }

    /// <summary>The container port a Service targetPort or probe port names (by name or number).</summary>
    private static string ContainerPort(string port) =>
        int.TryParse(port, out _)
            ? port
            : YamlTree.Scalar(YamlTree.List(Container, "ports").Single(p => YamlTree.Scalar(p, "name") == port), "containerPort")!;

    [GeneratedRegex("[^a-zA-Z0-9_]")]
    private static partial Regex NonAlphanumeric();
}
