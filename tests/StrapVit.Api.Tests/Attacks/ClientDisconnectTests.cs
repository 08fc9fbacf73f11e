using System.Globalization;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using StrapVit.Api.Attacks;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Attacks;

/// <summary>The attack-parity fixture model with step limits high enough for an attack to run for minutes.</summary>
public sealed class LongAttackServiceFactory() : AttackServiceFactory(new Dictionary<string, string?>
{
    ["Attacks:MaxSteps"] = "1000000",
    ["Attacks:MaxConcurrentAttacks"] = "1",
});

/// <summary>
/// A client that hangs up stops the work it asked for: the attack loop sees the request's cancellation, the attack
/// is counted as canceled, its concurrency slot is released and the service keeps serving.
/// </summary>
public sealed class ClientDisconnectTests(LongAttackServiceFactory factory) : IClassFixture<LongAttackServiceFactory>
{
    [Fact]
    public async Task A_disconnected_client_cancels_its_attack_and_frees_the_slot()
    {
        using var client = factory.CreateClient();
        var canceledBefore = await CounterAsync(client, "strapvit_attacks_total{attack=\"pgd\",outcome=\"canceled\"}");
        var requestsBefore = await CounterAsync(client, "strapvit_requests_total{endpoint=\"attack\",outcome=\"canceled\"}");

        // 1,000,000 PGD steps at an epsilon too small to ever succeed: minutes of work unless it is cancelled.
        using var hangUp = new CancellationTokenSource();
        var attack = client.PostAsync(
            "/v1/attacks/pgd",
            AttackServiceFactory.Form(AttackServiceFactory.Image(), ("epsilon", "0.000001"), ("steps", "1000000"), ("seed", "1")),
            hangUp.Token);

        // Wait until the attack holds the only slot (it is past the upload and into the attack loop), then hang up.
        var slots = factory.Services.GetRequiredService<AttackSlots>();
        await WaitForAsync(() => Task.FromResult(slots.InUse == 1 || attack.IsCompleted));
        Assert.False(attack.IsCompleted, "the attack ended before the client hung up");
        await hangUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => attack);

        // The attack stops (it is counted as canceled only once its loop has thrown) and the request is counted too.
        await WaitForAsync(async () =>
            await CounterAsync(client, "strapvit_attacks_total{attack=\"pgd\",outcome=\"canceled\"}") >= canceledBefore + 1);
        await WaitForAsync(async () =>
            await CounterAsync(client, "strapvit_requests_total{endpoint=\"attack\",outcome=\"canceled\"}") >= requestsBefore + 1);

        // The slot is free again and the service is still ready.
        await WaitForAsync(() => Task.FromResult(slots.InUse == 0));
        using var after = await client.PostAsync("/v1/attacks/fgsm", AttackServiceFactory.Form(AttackServiceFactory.Image(), ("seed", "1")));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        var body = await after.JsonAsync();
        Assert.Equal("fgsm", body.GetProperty("attack").GetString());
        using var ready = await client.GetAsync("/healthz/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
    }

    private static async Task<double> CounterAsync(HttpClient client, string series)
    {
        var text = await client.GetStringAsync("/metrics");
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(series.Length + 1)..], CultureInfo.InvariantCulture);
    }

    /// <summary>Polls until the condition holds; fails after a generous minute (this is not a timing assertion).</summary>
    private static async Task WaitForAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached within a minute");
            await Task.Delay(50);
        }
    }
}
