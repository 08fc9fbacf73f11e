using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;

namespace StrapVit.Api.Contracts;

/// <summary>Answer of <c>POST /v1/classify</c>.</summary>
/// <param name="Predictions">The top-K classes, most probable first.</param>
/// <param name="Defense">
/// The defense's report (<see cref="DefenseReport"/> for detect and mitigate; <see cref="CertifyReport"/> for
/// certify, with <c>certified</c>, <c>patchSize</c>, the mask set and the masked forwards), or null when off.
/// </param>
/// <param name="TimingsMs">Wall time of each stage in milliseconds (decode, defense, inference, total).</param>
public sealed record ClassifyResponse(
    IReadOnlyList<Prediction> Predictions,
    object? Defense,
    IReadOnlyDictionary<string, double> TimingsMs);

/// <summary>Answer of <c>GET /v1/model</c>.</summary>
public sealed record ModelInfoResponse(
    string Name,
    IReadOnlyList<string> Labels,
    ModelInputInfo Input,
    int PatchSize,
    string ExecutionProvider,
    GradientAvailability Gradients,
    DefenseAvailability Defense,
    CertifyAvailability Certify);

/// <summary>Whether certified mode (defense=certify) runs for this model: masking method, default and largest patch, and if not, why.</summary>
public sealed record CertifyAvailability(bool Available, string? Method, int? DefaultPatchSize, int? MaxPatchSize, string? Error);

/// <summary>Whether the patch defense runs for this model, which variant, and if not, why.</summary>
public sealed record DefenseAvailability(bool Available, string? Variant, string DefaultMode, string? Error);

/// <summary>Input layout: images are resized to height x width and converted to this many channels.</summary>
public sealed record ModelInputInfo(int Channels, int Height, int Width);

/// <summary>Whether the gradient graphs (attacks, saliency) could be built for this model, and if not, why.</summary>
public sealed record GradientAvailability(bool Available, string? Error);
