using Microsoft.Extensions.Options;
using StrapVit.Api.Errors;
using StrapVit.Api.Hosting;
using StrapVit.Api.Observability;
using StrapVit.Core.Attacks;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.Attacks;

/// <summary>What the gradient endpoints (attacks, saliency, patch jobs) share, injected as one parameter.</summary>
public sealed class AttackServices(
    ModelRuntime runtime,
    ImageDecoder decoder,
    IOptions<ImageLimits> imageLimits,
    IOptions<AttackOptions> options,
    AttackSlots slots,
    ServiceMetrics metrics,
    ILogger<AttackServices> logger)
{
    public ModelRuntime Runtime { get; } = runtime;

    public ImageDecoder Decoder { get; } = decoder;

    public ImageLimits ImageLimits => imageLimits.Value;

    public AttackOptions Options => options.Value;

    public AttackSlots Slots { get; } = slots;

    public ServiceMetrics Metrics { get; } = metrics;

    public ILogger Logger { get; } = logger;

    /// <summary>The served model with gradients, or the 503 problem saying why there are none.</summary>
    public IDifferentiableClassifier Model()
    {
        var classifier = Runtime.Classifier;
        if (Runtime.GradientRunner is not { } runner && Runtime.GradientsLoading)
        {
            throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "Gradients loading",
                "The model's gradient graphs are still being built or read, so attacks and saliency are not available yet; retry after the number of seconds in Retry-After.")
            {
                RetryAfterSeconds = 5,
            };
        }

        if (Runtime.GradientRunner is not { } loaded)
        {
            throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "Gradients unavailable",
                $"This model's gradient graphs could not be built, so attacks and saliency are unavailable: {Runtime.Gradients.Error ?? "unknown reason"}")
            {
                RetryAfterSeconds = 60,
            };
        }

        return new OnnxDifferentiableClassifier(loaded, classifier, Options.MaxBatchSize);
    }
}
