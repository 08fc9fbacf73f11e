using StrapVit.Api.Serving;

namespace StrapVit.Api.Model;

/// <summary>Answer of <c>GET /v1/model</c>; it answers while the model loads (<c>parts</c> says what is ready).</summary>
/// <param name="Name" example="fashion-vit-tiny">The model package's name.</param>
/// <param name="Labels">Class labels; a class index is a position in this list.</param>
/// <param name="Input">What every uploaded image is turned into.</param>
/// <param name="PatchSize" example="4">Side in pixels of the ViT's patches.</param>
/// <param name="ExecutionProvider" example="CPUExecutionProvider">Where ONNX Runtime runs classification; null while it loads.</param>
/// <param name="Gradients">Whether attacks and saliency can run, and if not, why.</param>
/// <param name="Defense">Whether the patch defense can run, its default mode, and if not, why.</param>
/// <param name="Certify">Whether certified mode can run, and if not, why.</param>
/// <param name="Parts">Which parts of the model are loaded: classification first, the gradient graphs after it.</param>
public sealed record ModelInfoResponse(
    string Name,
    IReadOnlyList<string> Labels,
    ModelInputInfo Input,
    int PatchSize,
    string? ExecutionProvider,
    GradientAvailability Gradients,
    DefenseAvailability Defense,
    CertifyAvailability Certify,
    ModelParts Parts);

/// <summary>Whether certified mode (defense=certify) runs for this model: masking method, default and largest patch, and if not, why.</summary>
public sealed record CertifyAvailability(bool Available, string? Method, int? DefaultPatchSize, int? MaxPatchSize, string? Error);

/// <summary>Whether the patch defense runs for this model, which variant, and if not, why.</summary>
public sealed record DefenseAvailability(bool Available, string? Variant, string DefaultMode, string? Error);

/// <summary>Input layout: images are resized to height x width and converted to this many channels.</summary>
public sealed record ModelInputInfo(int Channels, int Height, int Width);
