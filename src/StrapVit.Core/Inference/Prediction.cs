namespace StrapVit.Core.Inference;

/// <summary>One class with its softmax probability.</summary>
public sealed record Prediction(int Index, string Label, float Probability);

/// <summary>A classified image: the top-K predictions (best first) and the full logits row.</summary>
public sealed record Classification(IReadOnlyList<Prediction> Predictions, float[] Logits, double InferenceMs)
{
    public Prediction Top => Predictions[0];
}
