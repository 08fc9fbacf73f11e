namespace StrapVit.Core.Gradients;

/// <summary>What the gradient graph differentiates (README, 'Attacks').</summary>
public enum GradientObjective
{
    /// <summary>Per-sample cross-entropy against int64 <c>labels</c>; <c>pixel_grad</c> = d(sum of loss)/d pixels.</summary>
    CrossEntropy,

    /// <summary>Vector-Jacobian product: <c>pixel_grad</c> = Jᵀ · <c>logits_grad</c>.</summary>
    Vjp,
}

/// <summary>The exact tensor names of the gradient graphs (README, 'Attacks').</summary>
public static class GradientGraphNames
{
    public const string PixelValues = "pixel_values";
    public const string Labels = "labels";
    public const string LogitsGrad = "logits_grad";
    public const string Logits = "logits";
    public const string Loss = "loss";
    public const string PixelGrad = "pixel_grad";

    /// <summary>The CLI spelling of an objective: <c>cross-entropy</c> or <c>vjp</c>.</summary>
    public static string ToCliName(this GradientObjective objective) => objective switch
    {
        GradientObjective.CrossEntropy => "cross-entropy",
        GradientObjective.Vjp => "vjp",
        _ => throw new ArgumentOutOfRangeException(nameof(objective), objective, null),
    };

    /// <summary>Parses <c>cross-entropy</c> / <c>vjp</c> (case-insensitive).</summary>
    public static bool TryParseObjective(string? text, out GradientObjective objective)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "cross-entropy" or "crossentropy" or "ce":
                objective = GradientObjective.CrossEntropy;
                return true;
            case "vjp":
                objective = GradientObjective.Vjp;
                return true;
            default:
                objective = default;
                return false;
        }
    }
}
