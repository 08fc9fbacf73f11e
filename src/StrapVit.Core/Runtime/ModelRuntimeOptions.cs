using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Runtime;

/// <summary>What <see cref="ModelRuntimeFactory"/> loads for a package, and how.</summary>
public sealed class ModelRuntimeOptions
{
    /// <summary>Device, threads, batch limit and weight sharing of every session.</summary>
    public InferenceOptions Inference { get; init; } = new();

    /// <summary>Folder for derived artefacts (shared weights, gradient graphs, calibration); null means <see cref="Models.ModelCache.Resolve"/>'s default.</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>The patch defense's settings, or null to load no defense.</summary>
    public DefenseOptions? Defense { get; init; }

    /// <summary>Certified mode's settings, or null to load no certified mode.</summary>
    public CertifyOptions? Certify { get; init; }

    /// <summary>Split the model at its tokens tensor even when neither the defense nor certified mode asks for it (calibration, evaluation).</summary>
    public bool TokenSplit { get; init; }
}
