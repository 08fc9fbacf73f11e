using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Serilog.Core;
using Serilog.Events;
using StrapVit.Api.Tests.Attacks;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Auth;

/// <summary>
/// API keys: configured as SHA-256 hashes, sent as X-API-Key or a Bearer token, required by
/// the attack, explain and patch-job endpoints once any key exists, and by classification only on request.
/// </summary>
public sealed class ApiKeyTests(ApiKeyTests.KeyedFactory factory) : IClassFixture<ApiKeyTests.KeyedFactory>
{
    public const string Key = "s3cret-key-for-tests-0123456789";
    public const string KeyName = "ci-runner";

    public static string Sha256(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    public static TheoryData<string, Func<HttpContent>> Protected => new()
    {
        { "/v1/attacks/fgsm", () => AttackServiceFactory.Form(AttackServiceFactory.Image()) },
        { "/v1/attacks/pgd", () => AttackServiceFactory.Form(AttackServiceFactory.Image(), ("steps", "2")) },
        { "/v1/attacks/deepfool", () => AttackServiceFactory.Form(AttackServiceFactory.Image()) },
        { "/v1/attacks/patch", () => AttackServiceFactory.Form(AttackServiceFactory.Image(), ("patchSize", "2"), ("steps", "2")) },
        { "/v1/explain/saliency", () => AttackServiceFactory.Form(AttackServiceFactory.Image()) },
        { "/v1/patches", () => JsonContent("{\"targetClass\": 1, \"steps\": 1}") },
    };

    [Theory]
    [MemberData(nameof(Protected))]
    public async Task Protected_endpoints_answer_401_without_a_key(string path, Func<HttpContent> content)
    {
        using var client = factory.CreateClient();

        using var response = await client.PostAsync(path, content());

        var problem = await response.AssertProblemAsync(401);
        Assert.Equal("API key required", problem.GetProperty("title").GetString());
        Assert.Contains("X-API-Key", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("X-API-Key", "wrong-key")]
    [InlineData("Authorization", "Bearer wrong-key")]
    [InlineData("X-API-Key", "s3cret-key-for-tests-012345678")] // one character short
    public async Task A_wrong_key_is_401(string header, string value)
    {
        using var client = factory.CreateClient();
        client.DefaultRequestHeaders.TryAddWithoutValidation(header, value);

        using var response = await client.PostAsync("/v1/attacks/fgsm", AttackServiceFactory.Form(AttackServiceFactory.Image()));

        var problem = await response.AssertProblemAsync(401);
        Assert.Equal("Invalid API key", problem.GetProperty("title").GetString());
    }

    [Theory]
    [InlineData("X-API-Key", Key)]
    [InlineData("Authorization", "Bearer " + Key)]
    public async Task The_key_opens_the_attack_endpoints_in_either_header(string header, string value)
    {
        using var client = factory.CreateClient();
        client.DefaultRequestHeaders.TryAddWithoutValidation(header, value);

        using var response = await client.PostAsync("/v1/attacks/fgsm", AttackServiceFactory.Form(AttackServiceFactory.Image()));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("fgsm", (await response.JsonAsync()).GetProperty("attack").GetString());
    }

    [Fact]
    public async Task Every_patch_job_route_needs_the_key_and_lets_it_through()
    {
        using var keyed = factory.CreateClient();
        keyed.DefaultRequestHeaders.Add("X-API-Key", Key);
        using var anonymous = factory.CreateClient();

        // Past authentication the fixture has no training images for this model (503); without the key it never gets there.
        using var start = await keyed.PostAsync("/v1/patches", JsonContent("{\"targetClass\": 1, \"steps\": 5}"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, start.StatusCode);
        await (await anonymous.GetAsync("/v1/patches/0123abcd")).AssertProblemAsync(401);
        await (await anonymous.GetAsync("/v1/patches/0123abcd/image")).AssertProblemAsync(401);
        await (await anonymous.DeleteAsync("/v1/patches/0123abcd")).AssertProblemAsync(401);
        await (await keyed.GetAsync("/v1/patches/0123abcd")).AssertProblemAsync(404);
        await (await keyed.GetAsync("/v1/patches/0123abcd/image")).AssertProblemAsync(404);
        await (await keyed.DeleteAsync("/v1/patches/0123abcd")).AssertProblemAsync(404);
    }

    [Fact]
    public async Task Classification_stays_open_without_a_key()
    {
        using var client = factory.CreateClient();

        using var response = await client.PostAsync("/v1/classify", Http.Multipart(AttackServiceFactory.Image()));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task The_key_never_reaches_logs_or_metrics_and_its_name_does()
    {
        using var client = factory.CreateClient();
        client.DefaultRequestHeaders.Add("X-API-Key", Key);
        var marker = Guid.NewGuid().ToString("N");
        (await client.PostAsync($"/v1/explain/saliency?m={marker}", AttackServiceFactory.Form(AttackServiceFactory.Image()))).EnsureSuccessStatusCode();
        // The request's log event is written after its answer: wait for it (the request log carries the path, not the
        // query, so the saliency request with a key name is the one; it is the only keyed saliency call of this class).
        bool IsRequestEvent(LogEvent e) => e.Properties.TryGetValue("QueryString", out var q) && q.ToString().Contains(marker, StringComparison.Ordinal)
            || e.Properties.TryGetValue("RequestPath", out var p) && p.ToString().Contains("saliency", StringComparison.Ordinal) && e.Properties.ContainsKey("ApiKeyName");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!factory.Sink.Events.Any(IsRequestEvent) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        var request = Assert.Single(factory.Sink.Events, IsRequestEvent);
        Assert.Equal($"\"{KeyName}\"", request.Properties["ApiKeyName"].ToString());
        var everything = string.Join("\n", factory.Sink.Events.Select(e => e.RenderMessage() + string.Join(",", e.Properties.Values)));
        Assert.DoesNotContain(Key, everything, StringComparison.Ordinal);
        var metrics = await client.GetStringAsync("/metrics");
        Assert.Contains($"strapvit_auth_requests_total{{key=\"{KeyName}\",result=\"accepted\"}}", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain(Key, metrics, StringComparison.Ordinal);
        Assert.DoesNotContain(Sha256(Key), metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Swagger_declares_the_header_scheme_on_the_protected_operations_only()
    {
        using var client = factory.CreateClient();

        var doc = await (await client.GetAsync("/swagger/v1/swagger.json")).JsonAsync();

        var scheme = doc.GetProperty("components").GetProperty("securitySchemes").GetProperty("ApiKey");
        Assert.Equal("apiKey", scheme.GetProperty("type").GetString());
        Assert.Equal("header", scheme.GetProperty("in").GetString());
        Assert.Equal("X-API-Key", scheme.GetProperty("name").GetString());
        var paths = doc.GetProperty("paths");
        Assert.True(paths.GetProperty("/v1/attacks/pgd").GetProperty("post").TryGetProperty("security", out var security));
        Assert.True(security[0].TryGetProperty("ApiKey", out _));
        Assert.True(paths.GetProperty("/v1/patches/{id}").GetProperty("get").TryGetProperty("security", out _));
        Assert.False(paths.GetProperty("/v1/classify").GetProperty("post").TryGetProperty("security", out _));
    }

    internal static StringContent JsonContent(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>The attack fixture model with one key configured and the log captured.</summary>
    public sealed class KeyedFactory() : AttackServiceFactory(new Dictionary<string, string?>
    {
        [$"Auth:ApiKeys:{KeyName}"] = Sha256(Key),
        ["Serilog:MinimumLevel:Default"] = "Information",
    })
    {
        public CapturingSink Sink { get; } = new();

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.ConfigureTestServices(services => services.AddSingleton<ILogEventSink>(Sink));
        }
    }

    public sealed class CapturingSink : ILogEventSink
    {
        private readonly ConcurrentQueue<LogEvent> events = new();

        public IEnumerable<LogEvent> Events => events;

        public void Emit(LogEvent logEvent) => events.Enqueue(logEvent);
    }
}

/// <summary>Auth:RequireForClassify, and per-key rate limits (Auth:Burst requests, then 429 with Retry-After).</summary>
public sealed class ApiKeyPolicyTests
{
    private static Dictionary<string, string?> Keys(params (string Key, string Value)[] extra)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Auth:ApiKeys:alpha"] = ApiKeyTests.Sha256("alpha-key"),
            ["Auth:ApiKeys:beta"] = ApiKeyTests.Sha256("beta-key"),
        };
        foreach (var (k, v) in extra) settings[k] = v;
        return settings;
    }

    [Fact]
    public async Task Classification_needs_a_key_with_RequireForClassify()
    {
        await using var factory = new SettingsFactory(Keys(("Auth:RequireForClassify", "true")));
        using var client = factory.CreateClient();

        using var without = await client.PostAsync("/v1/classify", Http.Multipart(AttackServiceFactory.Image()));
        await without.AssertProblemAsync(401);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "beta-key");
        using var with = await client.PostAsync("/v1/classify", Http.Multipart(AttackServiceFactory.Image()));
        Assert.Equal(HttpStatusCode.OK, with.StatusCode);
    }

    [Fact]
    public async Task Each_key_has_its_own_bucket_and_an_empty_one_is_429_with_retry_after()
    {
        await using var factory = new SettingsFactory(Keys(("Auth:Burst", "2"), ("Auth:RequestsPerMinute", "1")));
        using var alpha = factory.CreateClient();
        alpha.DefaultRequestHeaders.Add("X-API-Key", "alpha-key");
        using var beta = factory.CreateClient();
        beta.DefaultRequestHeaders.Add("X-API-Key", "beta-key");

        for (var i = 0; i < 2; i++)
        {
            using var ok = await alpha.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image()));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using var limited = await alpha.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image()));
        var problem = await limited.AssertProblemAsync(429);
        Assert.Contains("'alpha'", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain("alpha-key", problem.GetRawText(), StringComparison.Ordinal);
        var retryAfter = int.Parse(limited.Headers.GetValues("Retry-After").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(retryAfter, 1, 60);
        using var other = await beta.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image()));
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task Keys_are_read_from_secret_files_named_like_environment_variables()
    {
        var dir = Directory.CreateTempSubdirectory("strapvit-secrets-");
        try
        {
            // What a Docker or Kubernetes secret mount looks like: one file per setting, the hash with a trailing newline.
            File.WriteAllText(Path.Combine(dir.FullName, "Auth__ApiKeys__filed"), ApiKeyTests.Sha256("file-key") + "\n");
            await using var factory = new SettingsFactory(new Dictionary<string, string?> { ["Auth:SecretsDirectory"] = dir.FullName });
            using var client = factory.CreateClient();

            await (await client.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image()))).AssertProblemAsync(401);
            client.DefaultRequestHeaders.Add("X-API-Key", "file-key");
            using var response = await client.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image()));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void A_key_configured_in_clear_stops_start_up_without_echoing_it()
    {
        using var factory = new SettingsFactory(new Dictionary<string, string?> { ["Auth:ApiKeys:oops"] = "plain-text-key" });

        var ex = Assert.ThrowsAny<OptionsValidationException>(() => factory.CreateClient());

        Assert.Contains("Auth:ApiKeys:oops", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("plain-text-key", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_keys_start_up_warns_that_the_attack_endpoints_are_open()
    {
        var sink = new ApiKeyTests.CapturingSink();
        await using var factory = new SettingsFactory(new Dictionary<string, string?> { ["Serilog:MinimumLevel:Default"] = "Information" }, sink);
        using var client = factory.CreateClient();

        using var response = await client.PostAsync("/v1/explain/saliency", AttackServiceFactory.Form(AttackServiceFactory.Image()));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var warning = Assert.Single(sink.Events, e => e.MessageTemplate.Text.Contains("No API key is configured", StringComparison.Ordinal));
        Assert.Equal(LogEventLevel.Warning, warning.Level);
    }

    private sealed class SettingsFactory(Dictionary<string, string?> settings, ILogEventSink? sink = null) : AttackServiceFactory(settings)
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            if (sink is not null) builder.ConfigureTestServices(services => services.AddSingleton(sink));
        }
    }
}
