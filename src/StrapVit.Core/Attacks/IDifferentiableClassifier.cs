using StrapVit.Core.Gradients;

namespace StrapVit.Core.Attacks;

/// <summary>
/// What a gradient attack needs from a model, in [0, 1] pixel space (README, 'Using the API'): logits, the
/// cross-entropy gradient and vector-Jacobian products, all on batches laid out back to back as row-major
/// <c>[N, C, H, W]</c>. Implementations are thread-safe; <see cref="OnnxDifferentiableClassifier"/> is the production
/// one, tests use analytic fakes.
/// </summary>
public interface IDifferentiableClassifier
{
    int Channels { get; }

    int Height { get; }

    int Width { get; }

    /// <summary>Number of classes K.</summary>
    int Classes { get; }

    /// <summary>Logits <c>[N, K]</c>.</summary>
    float[] Logits(ReadOnlySpan<float> pixels, int batch, CancellationToken cancellationToken);

    /// <summary>Logits, per-sample cross-entropy and d(Σ loss)/d pixels (see <see cref="GradientRunner.CrossEntropy"/>).</summary>
    GradientResult CrossEntropy(ReadOnlySpan<float> pixels, ReadOnlySpan<long> labels, int batch, CancellationToken cancellationToken);

    /// <summary>Logits and Jᵀ·<paramref name="logitsGrad"/> (see <see cref="GradientRunner.Vjp"/>).</summary>
    GradientResult Vjp(ReadOnlySpan<float> pixels, ReadOnlySpan<float> logitsGrad, int batch, CancellationToken cancellationToken);
}

/// <summary>Extension helpers over <see cref="IDifferentiableClassifier"/>.</summary>
public static class DifferentiableClassifierExtensions
{
    /// <summary>C·H·W: values in one image.</summary>
    public static int SampleSize(this IDifferentiableClassifier model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Channels * model.Height * model.Width;
    }
}
