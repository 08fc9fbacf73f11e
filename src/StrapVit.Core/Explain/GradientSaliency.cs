using StrapVit.Core.Attacks;
using StrapVit.Core.Imaging;
using StrapVit.Core.Numerics;

namespace StrapVit.Core.Explain;

/// <summary>
/// Gradient saliency (Simonyan, Vedaldi, Zisserman, "Deep Inside Convolutional Networks", arXiv 1312.6034): the
/// magnitude of ∂f_c/∂x, the class logit's gradient with respect to the [0, 1] pixels, reduced over channels by the
/// maximum absolute value. One forward run (to find the predicted class when none is given) and one vjp run with
/// the one-hot cotangent e_c. Map shape: <c>[H, W]</c>, row-major.
/// </summary>
public static class GradientSaliency
{
    /// <param name="model">The differentiable model.</param>
    /// <param name="image">The image, <c>[C, H, W]</c> in [0, 1].</param>
    /// <param name="classIndex">The class to explain; null explains the predicted class.</param>
    /// <param name="cancellationToken">Stops the ONNX Runtime runs.</param>
    public static SaliencyMap Compute(IDifferentiableClassifier model, ImageTensor image, int? classIndex, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(image);
        if (classIndex is < 0 || classIndex >= model.Classes)
        {
            throw new AttackParameterException("class", $"Class {classIndex} is outside [0, {model.Classes - 1}].");
        }

        var context = new AttackContext(model, cancellationToken);
        var logits = context.Logits(image.Data, 1);
        var c = classIndex ?? Probabilities.ArgMax(logits);
        var cotangent = new float[model.Classes];
        cotangent[c] = 1f;
        var grad = context.Vjp(image.Data, cotangent, 1).PixelGrad;

        int h = image.Height, w = image.Width, plane = h * w;
        var map = new float[plane];
        for (var ch = 0; ch < image.Channels; ch++)
        {
            for (var i = 0; i < plane; i++)
            {
                map[i] = MathF.Max(map[i], MathF.Abs(grad[(ch * plane) + i]));
            }
        }

        return new SaliencyMap(c, Probabilities.Softmax(logits)[c], map, h, w, map.Max());
    }

    /// <summary>
    /// The map over the image: the image in gray, the map normalised by its maximum in a black-red-yellow ramp
    /// blended on top, enlarged by an integer factor until the shorter side is at least <paramref name="minSide"/>.
    /// </summary>
    public static ImageTensor Render(ImageTensor image, SaliencyMap saliency, int minSide = 224)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(saliency);
        var map = Array.ConvertAll(saliency.Map, v => (double)v);
        return Heatmap.Render(image, map, image.Height, image.Width, saliency.Max > 0 ? saliency.Max : 1, minSide);
    }
}

/// <summary>A saliency map: the explained class, its probability, |∂f_c/∂x| max over channels <c>[H, W]</c>, and its maximum.</summary>
public sealed record SaliencyMap(int ClassIndex, float Probability, float[] Map, int Height, int Width, float Max);
