using System.Net;
using System.Text.Json;
using StrapVit.Api.Tests.Support;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// The environment the deployments set (ConfigMap, compose, Dockerfile ENV) names settings the app has, and the
/// ConfigMap's values start the service: a typo in a key would otherwise be silently ignored.
/// </summary>
public sealed class ConfigurationTests
{
    /// <summary>Read by the host, the runtime or the NVIDIA stack rather than by the app's configuration sections.</summary>
    private static readonly string[] PlatformPrefixes = ["ASPNETCORE_", "DOTNET_", "CUDA_", "NVIDIA_"];

    public static TheoryData<string> Sources => ["configmap", "compose:strapvit", "compose:strapvit-gpu", "dockerfile:cpu", "dockerfile:gpu"];

    [Theory]
    [MemberData(nameof(Sources))]
    public void Every_setting_names_a_configuration_key_of_the_app(string source)
    {
        var known = AppSettingKeys();
        var unknown = Environment(source).Keys
            .Where(k => !PlatformPrefixes.Any(p => k.StartsWith(p, StringComparison.Ordinal)))
            .Where(k => !known.Contains(k.Replace("__", ":", StringComparison.Ordinal)))
            .ToList();

        Assert.True(known.Count > 10, "appsettings.json should list the app's settings");
        Assert.Empty(unknown);
    }

    [Theory]
    [MemberData(nameof(Sources))]
    public void The_device_setting_is_a_device_the_app_knows(string source)
    {
        var device = Environment(source).GetValueOrDefault("Inference__Device");

        Assert.True(device is null || Enum.TryParse<InferenceDevice>(device, ignoreCase: true, out _), $"Inference__Device={device}");
    }

    [Fact]
    public async Task The_configmap_settings_start_a_ready_service()
    {
        var cache = Directory.CreateTempSubdirectory("strapvit-cache-");
        try
        {
            var settings = Environment("configmap")
                .Where(kv => !kv.Key.StartsWith("ASPNETCORE_", StringComparison.Ordinal))
                .ToDictionary(kv => kv.Key.Replace("__", ":", StringComparison.Ordinal), kv => (string?)kv.Value);
            // The container's cache mount and GPU are not here: same settings, a temp cache, the CPU provider.
            settings["Model:CacheDirectory"] = cache.FullName;
            settings["Inference:Device"] = "Cpu";
            await using var factory = new ServiceFactory(settings);
            using var client = factory.CreateClient();

            using var ready = await client.GetAsync(DeployFiles.ReadyPath);

            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        }
        finally
        {
            cache.Delete(recursive: true);
        }
    }

    /// <summary>The environment variables one deployment sets.</summary>
    private static Dictionary<string, string> Environment(string source)
    {
        var parts = source.Split(':');
        return parts[0] switch
        {
            "configmap" => YamlTree.Map(DeployFiles.K8s("configmap.yaml"), "data").ToDictionary(kv => kv.Key, kv => (string)kv.Value!),
            "compose" => YamlTree.Map(DeployFiles.Compose(), "services", parts[1], "environment").ToDictionary(kv => kv.Key, kv => (string)kv.Value!),
            "dockerfile" => DeployFiles.Dockerfile().Where(i => i.Stage == parts[1] && i.Keyword == "ENV")
                .SelectMany(i => i.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Select(pair => pair.Split('=', 2)).ToDictionary(p => p[0], p => p[1]),
            _ => throw new ArgumentException(source),
        };
    }

    /// <summary>"Section:Key" paths of the app's appsettings.json (every setting the app binds has a default there).</summary>
    private static HashSet<string> AppSettingKeys()
    {
        var keys = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        using var doc = JsonDocument.Parse(DeployFiles.Text("src", "StrapVit.Api", "appsettings.json"));
        Walk(doc.RootElement, "");
        return keys;

        void Walk(JsonElement e, string prefix)
        {
            if (e.ValueKind != JsonValueKind.Object)
            {
                keys.Add(prefix);
                return;
            }

            foreach (var p in e.EnumerateObject())
            {
                Walk(p.Value, prefix.Length == 0 ? p.Name : $"{prefix}:{p.Name}");
            }
        }
    }
}
