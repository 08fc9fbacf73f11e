using Microsoft.Extensions.Options;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;

namespace StrapVit.Api.Attacks;

/// <summary>
/// The concurrency limit shared by attack and saliency requests. Gradient work is CPU-heavy and long, so past the
/// limit a request is refused at once (429 with Retry-After) instead of queueing behind minutes of work.
/// </summary>
public sealed class AttackSlots(IOptions<AttackOptions> options, ServiceMetrics metrics) : IDisposable
{
    private readonly SemaphoreSlim slots = new(options.Value.MaxConcurrentAttacks, options.Value.MaxConcurrentAttacks);

    /// <summary>Attack and saliency requests holding a slot now.</summary>
    public int InUse => options.Value.MaxConcurrentAttacks - slots.CurrentCount;

    /// <summary>Takes a slot or throws the 429 problem; dispose the result to give it back.</summary>
    /// <param name="attack">The attack's metric name, or null for work that is not an attack (saliency).</param>
    public IDisposable Enter(string? attack)
    {
        if (!slots.Wait(0))
        {
            if (attack is not null) metrics.ObserveAttack(attack, "rejected", TimeSpan.Zero, 0);
            throw new ProblemException(StatusCodes.Status429TooManyRequests, "Too many attacks",
                $"{options.Value.MaxConcurrentAttacks} attack or saliency requests are already running; retry after the number of seconds in Retry-After.")
            {
                RetryAfterSeconds = options.Value.RetryAfterSeconds,
            };
        }

        metrics.SetAttackSlotsInUse(InUse);
        return new Release(this);
    }

    public void Dispose() => slots.Dispose();

    private void Exit()
    {
        slots.Release();
        metrics.SetAttackSlotsInUse(InUse);
    }

    private sealed class Release(AttackSlots owner) : IDisposable
    {
        private int released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref released, 1) == 0) owner.Exit();
        }
    }
}
