using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;

namespace StrapVit.Api.Serving;

/// <summary>
/// The concurrency limit shared by the endpoints that run the classifier (classify, inspect): a rate-limiter policy,
/// <c>Limits:MaxConcurrentInferences</c> at once and <c>Limits:InferenceQueueLength</c> waiting, then 429.
/// </summary>
public static class InferenceConcurrency
{
    public const string PolicyName = "inference";

    public static RateLimiterOptions AddInferencePolicy(this RateLimiterOptions options) =>
        options.AddPolicy(PolicyName, context =>
        {
            var limits = context.RequestServices.GetRequiredService<IOptions<InferenceLimitOptions>>().Value;
            return RateLimitPartition.GetConcurrencyLimiter(PolicyName, _ => new ConcurrencyLimiterOptions
            {
                PermitLimit = limits.MaxConcurrentInferences,
                QueueLimit = limits.InferenceQueueLength,
                QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
            });
        });

    /// <summary>Puts the endpoint behind the inference concurrency limit.</summary>
    public static TBuilder RequireInferenceSlot<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.RequireRateLimiting(PolicyName);
}
