using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace StrapVit.Api.Patches;

/// <summary>
/// Job state in Redis (<c>Jobs:Redis</c>), shared by every replica: one hash per job (<c>state</c> as JSON, <c>png</c>,
/// <c>cancel</c>). A finished job's hash expires after the retention time; a live one's expiry is renewed by its owner
/// on every write and sweep, so the jobs of a replica that died vanish instead of staying "running" forever.
/// </summary>
public sealed class RedisPatchJobStore(IConnectionMultiplexer redis, IOptions<JobStoreOptions> options) : IPatchJobStore
{
    /// <summary>How long a live job's hash outlives its owner's last write or sweep.</summary>
    public static readonly TimeSpan LiveExpiry = TimeSpan.FromMinutes(15);

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    private IDatabase Db => redis.GetDatabase();

    private RedisKey Key(string id) => $"{options.Value.KeyPrefix}patchjob:{id}";

    public async Task SaveAsync(PatchJobState state, byte[]? patchPng, TimeSpan retention, CancellationToken ct)
    {
        var key = Key(state.Id);
        var batch = Db.CreateBatch();
        List<Task> writes =
        [
            batch.HashSetAsync(key, "state", JsonSerializer.Serialize(state, Json)),
            batch.KeyExpireAsync(key, state.IsFinished ? retention : LiveExpiry),
        ];
        if (patchPng is not null) writes.Add(batch.HashSetAsync(key, "png", patchPng));
        batch.Execute();
        await Task.WhenAll(writes).WaitAsync(ct);
    }

    public async Task<PatchJobState?> GetAsync(string id, CancellationToken ct)
    {
        var json = await Db.HashGetAsync(Key(id), "state").WaitAsync(ct);
        return json.IsNullOrEmpty ? null : JsonSerializer.Deserialize<PatchJobState>(json.ToString(), Json);
    }

    public async Task<byte[]?> GetImageAsync(string id, CancellationToken ct)
    {
        var png = await Db.HashGetAsync(Key(id), "png").WaitAsync(ct);
        return png.IsNullOrEmpty ? null : (byte[]?)png;
    }

    public Task RequestCancelAsync(string id, CancellationToken ct) => Db.HashSetAsync(Key(id), "cancel", 1).WaitAsync(ct);

    public async Task<bool> IsCancelRequestedAsync(string id, CancellationToken ct) => await Db.HashExistsAsync(Key(id), "cancel").WaitAsync(ct);

    public Task<bool> DeleteAsync(string id, CancellationToken ct) => Db.KeyDeleteAsync(Key(id)).WaitAsync(ct);

    /// <summary>Redis expires finished jobs itself; the runner renews its live ones (see <see cref="PatchJobRunner"/>).</summary>
    public Task SweepAsync(int maxJobs, CancellationToken ct) => Task.CompletedTask;
}
