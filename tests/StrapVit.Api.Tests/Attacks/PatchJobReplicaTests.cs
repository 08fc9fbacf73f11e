using System.Net;
using System.Net.Http.Json;
using StrapVit.Api.Patches;
using StrapVit.Api.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace StrapVit.Api.Tests.Attacks;

/// <summary>
/// Two service instances sharing one Redis (<c>Jobs:Redis</c>), as two replicas behind a load balancer: a job started
/// through one is polled, fetched and canceled through the other.
/// </summary>
public sealed class PatchJobReplicaTests(RedisServer redis) : IClassFixture<RedisServer>
{
    [RedisFact]
    public async Task A_job_started_on_one_replica_is_polled_fetched_and_canceled_on_the_other()
    {
        var prefix = $"test-{Guid.NewGuid():N}:";
        await using var a = new ReplicaFactory(redis.Configuration, prefix);
        await using var b = new ReplicaFactory(redis.Configuration, prefix);
        using var clientA = a.CreateClient();
        using var clientB = b.CreateClient();

        // A short job: started on A, watched to the end and fetched on B.
        using var quick = await clientA.PostAsJsonAsync("/v1/patches", new { targetClass = 1, patchSize = 3, steps = 4, batchSize = 4, seed = 5 });
        Assert.Equal(HttpStatusCode.Accepted, quick.StatusCode);
        var quickLocation = quick.Headers.Location!.ToString();
        var done = await PatchJobTests.WaitForAsync(clientB, quickLocation, j => j.GetProperty("status").GetString() is "succeeded" or "failed" or "canceled");
        Assert.Equal("succeeded", done.GetProperty("status").GetString());
        Assert.True(done.GetProperty("result").GetProperty("heldOutImages").GetInt32() > 0);
        using var image = await clientB.GetAsync($"{quickLocation}/image");
        Assert.Equal(HttpStatusCode.OK, image.StatusCode);
        using (var png = SixLabors.ImageSharp.Image.Load(await image.Content.ReadAsByteArrayAsync()))
        {
            Assert.Equal((3, 3), (png.Width, png.Height));
        }

        // A long job: started on A, seen running on B, canceled on B, and A's runner stops it.
        using var slow = await clientA.PostAsJsonAsync("/v1/patches", new { targetClass = 2, patchSize = 3, steps = 1_000_000, batchSize = 1 });
        var slowLocation = slow.Headers.Location!.ToString();
        var running = await PatchJobTests.WaitForAsync(clientB, slowLocation, j => j.GetProperty("step").GetInt32() >= 1);
        Assert.Equal("running", running.GetProperty("status").GetString());
        using var snapshot = await clientB.GetAsync($"{slowLocation}/image");
        Assert.Equal("image/png", snapshot.Content.Headers.ContentType?.MediaType);
        using var cancel = await clientB.DeleteAsync(slowLocation);
        Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        var canceled = await PatchJobTests.WaitForAsync(clientA, slowLocation, j => j.GetProperty("status").GetString() != "running");
        Assert.Equal("canceled", canceled.GetProperty("status").GetString());
        Assert.True(canceled.GetProperty("step").GetInt32() < 1_000_000);

        // Forgetting a finished job on A removes it for B too.
        Assert.Equal(HttpStatusCode.NoContent, (await clientA.DeleteAsync(quickLocation)).StatusCode);
        await (await clientB.GetAsync(quickLocation)).AssertProblemAsync(404);
    }

    [RedisFact]
    public async Task Shutdown_cancels_a_running_job_and_records_it_for_the_other_replicas()
    {
        var prefix = $"test-{Guid.NewGuid():N}:";
        await using var b = new ReplicaFactory(redis.Configuration, prefix);
        using var clientB = b.CreateClient();
        string location;
        using (var a = new ReplicaFactory(redis.Configuration, prefix))
        {
            using var clientA = a.CreateClient();
            using var slow = await clientA.PostAsJsonAsync("/v1/patches", new { targetClass = 2, patchSize = 3, steps = 1_000_000, batchSize = 1 });
            location = slow.Headers.Location!.ToString();
            await PatchJobTests.WaitForAsync(clientB, location, j => j.GetProperty("step").GetInt32() >= 1);
        }

        // A has stopped (its host waited for the job); B reports what A recorded.
        var body = await (await clientB.GetAsync(location)).JsonAsync();
        Assert.Equal("canceled", body.GetProperty("status").GetString());
        Assert.Contains("shut down", body.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    private sealed class ReplicaFactory(string redis, string prefix) : PatchJobTests.JobFactory(1, 1_000_000, 4, new Dictionary<string, string?>
    {
        ["Jobs:Redis"] = redis,
        ["Jobs:KeyPrefix"] = prefix,
    });
}

/// <summary>Graceful shutdown without Redis: the running job is canceled and recorded, not abandoned mid-run.</summary>
public sealed class PatchJobShutdownTests
{
    [Fact]
    public async Task Stopping_the_host_cancels_the_running_job_and_records_why()
    {
        IPatchJobStore store;
        string id;
        using (var factory = new PatchJobTests.JobFactory())
        {
            using var client = factory.CreateClient();
            store = factory.Services.GetRequiredService<IPatchJobStore>();
            using var slow = await client.PostAsJsonAsync("/v1/patches", new { targetClass = 2, patchSize = 3, steps = 50_000, batchSize = 8 });
            id = (await slow.JsonAsync()).GetProperty("id").GetString()!;
            await PatchJobTests.WaitForAsync(client, slow.Headers.Location!.ToString(), j => j.GetProperty("step").GetInt32() >= 1);
        }

        var state = await store.GetAsync(id, CancellationToken.None);
        Assert.NotNull(state);
        Assert.Equal(PatchJobStatus.Canceled, state.Status);
        Assert.Contains("shut down", state.Error, StringComparison.Ordinal);
        Assert.NotNull(state.Finished);
    }
}
