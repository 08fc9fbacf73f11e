using StrapVit.Api.Tests.Deployment;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Telemetry;

/// <summary>
/// Each host counts on its own meter (IMeterFactory, listened to in MeterScope.Local): two hosts in one process, as
/// the tests run them, never see each other's requests.
/// </summary>
public sealed class MetricsIsolationTests
{
    [Fact]
    public async Task Two_hosts_in_one_process_count_apart()
    {
        await using var a = new ServiceFactory();
        await using var b = new ServiceFactory();
        using var clientA = a.CreateClient();
        using var clientB = b.CreateClient();
        var png = File.ReadAllBytes(RepoPaths.Sample("bag.png"));

        for (var i = 0; i < 3; i++)
        {
            (await clientA.PostAsync("/v1/classify?defense=off", Http.Multipart(png))).EnsureSuccessStatusCode();
        }

        (await clientB.PostAsync("/v1/classify?defense=off", Http.Multipart(png))).EnsureSuccessStatusCode();
        var pageA = MetricsExposition.Parse(await clientA.GetStringAsync("/metrics"));
        var pageB = MetricsExposition.Parse(await clientB.GetStringAsync("/metrics"));

        (string, string)[] classified = [("endpoint", "classify"), ("outcome", "success")];
        Assert.Equal(3, pageA.Value("strapvit_requests_total", classified));
        Assert.Equal(1, pageB.Value("strapvit_requests_total", classified));
        Assert.Equal(3, pageA.Value("strapvit_inference_duration_seconds_count", ("graph", "forward")));
        Assert.Equal(1, pageB.Value("strapvit_inference_duration_seconds_count", ("graph", "forward")));
        Assert.Equal(3, pageA.Value("http_requests_received_total", ("code", "200"), ("method", "POST"), ("endpoint", "/v1/classify")));
        // Both are ready, each reporting its own model once.
        Assert.Single(pageA.Samples("strapvit_model_info"));
        Assert.Single(pageB.Samples("strapvit_model_info"));
    }

    [Fact]
    public async Task Counters_publish_their_zero_series_before_the_first_event()
    {
        await using var factory = new ServiceFactory();
        using var client = factory.CreateClient();

        var page = MetricsExposition.Parse(await client.GetStringAsync("/metrics"));

        foreach (var attack in new[] { "fgsm", "pgd", "deepfool", "patch", "universal_patch" })
        {
            foreach (var outcome in new[] { "success", "failure", "rejected", "canceled", "error" })
            {
                Assert.Equal(0, page.Value("strapvit_attacks_total", ("attack", attack), ("outcome", outcome)));
            }
        }

        Assert.Equal(0, page.Value("strapvit_requests_total", ("endpoint", "explain"), ("outcome", "server_error")));
        Assert.Equal(0, page.Value("strapvit_defense_images_flagged_total", ("mode", "detect")));
        Assert.Equal(0, page.Value("strapvit_attack_slots_in_use"));
    }
}
