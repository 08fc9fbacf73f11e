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

/// <summary>Answer of <c>GET /v1/model</c>; it answers while the model loads (<see cref="Parts"/> says what is ready).</summary>
/// <param name="Name">The package's name.</param>
/// <param name="Labels">The K class labels, in logit order.</param>
/// <param name="Input">The input layout images are converted to.</param>
/// <param name="PatchSize">The ViT's patch side in pixels.</param>
/// <param name="ExecutionProvider">Where classification runs; null while it loads.</param>
/// <param name="Gradients">Whether attacks and saliency can run, and if not, why.</param>
/// <param name="Defense">Whether the patch defense can run, and if not, why.</param>
/// <param name="Certify">Whether certified mode can run, and if not, why.</param>
/// <param name="Parts">Which parts are loaded.</param>
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

/// <summary>
/// State of each part of the served model: <c>loading</c>, <c>ready</c>, <c>unavailable</c> (this model cannot run it;
/// the part's <c>error</c> says why) or <c>failed</c> (the model could not be loaded). Classification (and with it the
/// defense and certified mode) loads first; the gradient graphs behind attacks and explain after it.
/// </summary>
public sealed record ModelParts(string Classification, string Defense, string Certify, string Gradients);

/// <summary>Whether certified mode (defense=certify) runs for this model: masking method, default and largest patch, and if not, why.</summary>
public sealed record CertifyAvailability(bool Available, string? Method, int? DefaultPatchSize, int? MaxPatchSize, string? Error);

/// <summary>Whether the patch defense runs for this model, which variant, and if not, why.</summary>
public sealed record DefenseAvailability(bool Available, string? Variant, string DefaultMode, string? Error);

/// <summary>Input layout: images are resized to height x width and converted to this many channels.</summary>
public sealed record ModelInputInfo(int Channels, int Height, int Width);

/// <summary>Whether the gradient graphs (attacks, saliency) could be built for this model, and if not, why.</summary>
public sealed record GradientAvailability(bool Available, string? Error);
