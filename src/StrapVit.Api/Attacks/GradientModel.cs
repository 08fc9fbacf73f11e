using Microsoft.Extensions.Options;
using StrapVit.Api.Errors;
using StrapVit.Api.Serving;
using StrapVit.Core.Attacks;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Attacks;

/// <summary>The served model with its gradients, as the attacks, saliency and patch jobs use it.</summary>
public sealed class GradientModel(ModelRuntime runtime, IOptions<AttackOptions> options)
{
    /// <summary>The model with gradients, or the 503 problem saying why there are none (or that they are still loading).</summary>
    public IDifferentiableClassifier Require()
    {
        // First, so that while classification loads the answer is the model's own 503 (Retry-After 2).
        var classifier = runtime.Classifier;
        if (runtime.GradientRunner is null && runtime.GradientsLoading)
        {
            throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "Gradients loading",
                "The model's gradient graphs are still being built or read, so attacks and saliency are not available yet; retry after the number of seconds in Retry-After.")
            {
                RetryAfterSeconds = 5,
            };
        }

        if (runtime.GradientRunner is not { } runner)
        {
            throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "Gradients unavailable",
                $"This model's gradient graphs could not be built, so attacks and saliency are unavailable: {runtime.Gradients.Error ?? "unknown reason"}")
            {
                RetryAfterSeconds = 60,
            };
        }

        return new OnnxDifferentiableClassifier(runner, classifier, options.Value.MaxBatchSize);
    }

    /// <summary>The most probable class of one row of logits.</summary>
    public Prediction Top(ReadOnlySpan<float> logits) => runtime.Classifier.Rank(logits, 1)[0];

    /// <summary>The label of a class.</summary>
    public string Label(int index) => runtime.Classifier.Manifest.Labels[index];
}
