using System.Buffers.Binary;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using StrapVit.Api.Patches;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Attacks;

/// <summary>Universal-patch jobs: start, progress, result, image, cancel, limits. Tiny step counts on the 12x12 fixture model.</summary>
public sealed class PatchJobTests(PatchJobTests.JobFactory factory) : IClassFixture<PatchJobTests.JobFactory>
{
    private readonly HttpClient client = factory.CreateClient();

    private Task<JsonElement> WaitForAsync(string location, Func<JsonElement, bool> done) => WaitForAsync(client, location, done);

    internal static async Task<JsonElement> WaitForAsync(HttpClient client, string location, Func<JsonElement, bool> done)
    {
        // Polls the job the way a client would; the deadline only bounds a broken job.
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            var body = await client.GetFromJsonAsync<JsonElement>(location);
            if (done(body) || DateTime.UtcNow > deadline) return body;
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task A_job_runs_to_a_patch_with_a_held_out_success_rate()
    {
        using var response = await client.PostAsJsonAsync("/v1/patches", new { targetClass = 1, patchSize = 3, steps = 4, batchSize = 4, seed = 5 });
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var location = response.Headers.Location!.ToString();
        var started = await response.JsonAsync();
        Assert.Equal(location, $"/v1/patches/{started.GetProperty("id").GetString()}");
        Assert.Equal(4, started.GetProperty("totalSteps").GetInt32());

        var body = await WaitForAsync(location, b => b.GetProperty("status").GetString() is not ("queued" or "running"));
        Assert.Equal("succeeded", body.GetProperty("status").GetString());
        Assert.Equal(4, body.GetProperty("step").GetInt32());
        Assert.Equal(5, body.GetProperty("settings").GetProperty("seed").GetInt32());
        var result = body.GetProperty("result");
        Assert.InRange(result.GetProperty("heldOutSuccessRate").GetDouble(), 0, 1);
        Assert.True(result.GetProperty("heldOutImages").GetInt32() > 0);
        Assert.Equal(0, body.GetProperty("etaSeconds").GetDouble());

        using var image = await client.GetAsync($"{location}/image");
        Assert.Equal("image/png", image.Content.Headers.ContentType?.MediaType);
        using var png = SixLabors.ImageSharp.Image.Load(await image.Content.ReadAsByteArrayAsync());
        Assert.Equal((3, 3), (png.Width, png.Height));

        using var delete = await client.DeleteAsync(location);
        Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
        using var gone = await client.GetAsync(location);
        await gone.AssertProblemAsync(404);
    }

    [Fact]
    public async Task Quick_jobs_posted_back_to_back_all_end_succeeded()
    {
        // Each finishes in milliseconds, often before its POST has returned: no write may overwrite a later one.
        using var slowStore = new SlowQueuedWritesFactory();
        using var client = slowStore.CreateClient();
        var locations = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            using var response = await client.PostAsJsonAsync("/v1/patches", new { targetClass = 1, patchSize = 2, steps = 1, batchSize = 1, seed = i });
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
            locations.Add(response.Headers.Location!.ToString());
        }

        foreach (var location in locations)
        {
            var body = await WaitForAsync(client, location, b => b.GetProperty("status").GetString() is not ("queued" or "running"));
            Assert.Equal("succeeded", body.GetProperty("status").GetString());
            Assert.Equal(JsonValueKind.Null, body.GetProperty("queuePosition").ValueKind);
        }
    }

    [Fact]
    public async Task A_running_job_reports_progress_and_can_be_canceled()
    {
        // The most steps the factory allows, on 8 images a step: still running at the first polls on a fast machine.
        using var response = await client.PostAsJsonAsync("/v1/patches", new { targetClass = 2, patchSize = 3, steps = 50_000, batchSize = 8 });
        var location = response.Headers.Location!.ToString();
        var running = await WaitForAsync(location, b => b.GetProperty("step").GetInt32() >= 1);
        Assert.Equal("running", running.GetProperty("status").GetString());
        Assert.InRange(running.GetProperty("successRate").GetDouble(), 0, 1);

        using var cancel = await client.DeleteAsync(location);
        Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        var body = await WaitForAsync(location, b => b.GetProperty("status").GetString() != "running");
        Assert.Equal("canceled", body.GetProperty("status").GetString());
        Assert.True(body.GetProperty("step").GetInt32() < 50_000);
        Assert.Equal(JsonValueKind.Null, body.GetProperty("result").ValueKind);
    }

    [Theory]
    [InlineData("{}", "targetClass")]
    [InlineData("{\"targetClass\": 9}", "targetClass")]
    [InlineData("{\"targetClass\": 1, \"patchSize\": 13}", "patchSize")]
    [InlineData("{\"targetClass\": 1, \"steps\": 100000}", "steps")]
    [InlineData("{\"targetClass\": 1, \"batchSize\": 0}", "batchSize")]
    [InlineData("{\"targetClass\": 1, \"maxScale\": 1.5}", "maxScale")]
    [InlineData("{\"targetClass\": 1, \"stepSize\": -1}", "stepSize")]
    public async Task Bad_job_parameters_are_400_problems_naming_them(string json, string named)
    {
        using var response = await client.PostAsync("/v1/patches", Http.Raw(System.Text.Encoding.UTF8.GetBytes(json), "application/json"));
        var problem = await response.AssertProblemAsync(400);
        Assert.Contains($"'{named}'", problem.GetProperty("title").GetString());
    }

    [Fact]
    public async Task An_unknown_job_is_404()
    {
        using var response = await client.GetAsync("/v1/patches/nope");
        await response.AssertProblemAsync(404);
    }

    /// <summary>A job store whose writes of queued jobs take 200 ms, as a slow Redis might: a worker then finishes a
    /// one-step job while the POST's own write is still on its way, and that write must not land last.</summary>
    private sealed class SlowQueuedWritesFactory : JobFactory
    {
        protected override void ConfigureWebHost(Microsoft.AspNetCore.Hosting.IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.ConfigureServices(services => services.AddSingleton<IPatchJobStore>(sp => new SlowQueuedWrites(new InMemoryPatchJobStore(TimeProvider.System))));
        }
    }

    private sealed class SlowQueuedWrites(IPatchJobStore inner) : IPatchJobStore
    {
        public async Task SaveAsync(PatchJobState state, byte[]? patchPng, TimeSpan retention, CancellationToken ct)
        {
            if (state.Status == PatchJobStatus.Queued) await Task.Delay(200, ct);
            await inner.SaveAsync(state, patchPng, retention, ct);
        }

        public Task<PatchJobState?> GetAsync(string id, CancellationToken ct) => inner.GetAsync(id, ct);

        public Task<byte[]?> GetImageAsync(string id, CancellationToken ct) => inner.GetImageAsync(id, ct);

        public Task RequestCancelAsync(string id, CancellationToken ct) => inner.RequestCancelAsync(id, ct);

        public Task<bool> IsCancelRequestedAsync(string id, CancellationToken ct) => inner.IsCancelRequestedAsync(id, ct);

        public Task<bool> DeleteAsync(string id, CancellationToken ct) => inner.DeleteAsync(id, ct);

        public Task SweepAsync(int maxJobs, CancellationToken ct) => inner.SweepAsync(maxJobs, ct);
    }

    /// <summary>The attack fixture model with a tiny IDX image set for training and held-out evaluation.</summary>
    public class JobFactory : AttackServiceFactory
    {
        public JobFactory() : base(Paths(4, 50_000, 8, null)) { }

        protected JobFactory(int maxRunningJobs, int maxSteps, int maxQueuedJobs = 8, IReadOnlyDictionary<string, string?>? extra = null)
            : base(Paths(maxRunningJobs, maxSteps, maxQueuedJobs, extra)) { }

        private static Dictionary<string, string?> Paths(int maxRunningJobs, int maxSteps, int maxQueuedJobs, IReadOnlyDictionary<string, string?>? extra)
        {
            var dir = Path.Combine(Path.GetTempPath(), "strapvit-attack-tests", "idx-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            var random = new Random(1);
            const int n = 24;
            var pixels = new byte[n * 144];
            random.NextBytes(pixels);
            var labels = Enumerable.Range(0, n).Select(i => (byte)(i % 5)).ToArray();
            Write(Path.Combine(dir, "images.gz"), 0x803, [n, 12, 12], pixels);
            Write(Path.Combine(dir, "labels.gz"), 0x801, [n], labels);
            return new Dictionary<string, string?>
            {
                ["Attacks:Universal:TrainImages"] = Path.Combine(dir, "images.gz"),
                ["Attacks:Universal:TrainLabels"] = Path.Combine(dir, "labels.gz"),
                ["Attacks:Universal:HoldOutImages"] = Path.Combine(dir, "images.gz"),
                ["Attacks:Universal:HoldOutLabels"] = Path.Combine(dir, "labels.gz"),
                ["Attacks:Universal:MaxRunningJobs"] = maxRunningJobs.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["Attacks:Universal:MaxSteps"] = maxSteps.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["Attacks:Universal:MaxQueuedJobs"] = maxQueuedJobs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            }.Concat(extra ?? new Dictionary<string, string?>()).ToDictionary();
        }

        private static void Write(string path, int magic, int[] dims, byte[] data)
        {
            using var file = File.Create(path);
            using var gz = new GZipStream(file, CompressionLevel.Fastest);
            Span<byte> word = stackalloc byte[4];
            foreach (var v in new[] { magic }.Concat(dims))
            {
                BinaryPrimitives.WriteInt32BigEndian(word, v);
                gz.Write(word);
            }

            gz.Write(data);
        }
    }
}

/// <summary>Past <c>MaxRunningJobs</c> a job waits in the queue and reports its position; past <c>MaxQueuedJobs</c> it is 429.</summary>
public sealed class PatchJobLimitTests(PatchJobLimitTests.OneJobFactory factory) : IClassFixture<PatchJobLimitTests.OneJobFactory>
{
    private readonly HttpClient client = factory.CreateClient();

    [Fact]
    public async Task A_second_job_queues_with_its_position_and_a_third_is_429()
    {
        // Millions of steps: the first job is still running when the others arrive, however fast the machine.
        using var first = await client.PostAsJsonAsync("/v1/patches", new { targetClass = 1, patchSize = 3, steps = 10_000_000, batchSize = 1 });
        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        await PatchJobTests.WaitForAsync(client, first.Headers.Location!.ToString(), b => b.GetProperty("status").GetString() == "running");
        using var second = await client.PostAsJsonAsync("/v1/patches", new { targetClass = 1, patchSize = 3, steps = 2, batchSize = 1 });
        Assert.Equal(HttpStatusCode.Accepted, second.StatusCode);
        var queued = await second.JsonAsync();
        Assert.Equal("queued", queued.GetProperty("status").GetString());
        Assert.Equal(1, queued.GetProperty("queuePosition").GetInt32());
        using var third = await client.PostAsJsonAsync("/v1/patches", new { targetClass = 1, patchSize = 3, steps = 2, batchSize = 1 });
        await third.AssertProblemAsync(429);
        Assert.NotNull(third.Headers.RetryAfter);

        using var cancel = await client.DeleteAsync(first.Headers.Location);
        Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        var done = await PatchJobTests.WaitForAsync(client, second.Headers.Location!.ToString(), b => b.GetProperty("status").GetString() is "succeeded" or "failed");
        Assert.Equal("succeeded", done.GetProperty("status").GetString());
    }

    public sealed class OneJobFactory() : PatchJobTests.JobFactory(1, 10_000_000, maxQueuedJobs: 1);
}
