using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Core.Certification;

/// <summary>Certified mode set up for a model, or why it cannot run. Owns the split model it built (not one it shares).</summary>
public sealed record CertifySetup(PatchCertifier? Certifier, string? UnavailableReason) : IDisposable
{
    internal TokenSpaceModel? TokenModel { get; init; }

    public void Dispose() => TokenModel?.Dispose();
}

/// <summary>Builds certified mode for a package: split model, masking method (drop, else replace), receptive field.</summary>
public static class CertifyLoader
{
    /// <summary>
    /// The service's, the CLI's and the benchmarks' one way to set certified mode up. A package certified mode cannot
    /// handle (no tokens tensor, a receptive field that cannot be derived, no usable masking, a default patch whose
    /// masks do not fit) gives a setup with the reason instead of an exception: classification does not depend on it.
    /// When <paramref name="defense"/> already split the model (token variant), its split model and calibration are
    /// shared instead of being built and read again; the setup then owns nothing. So is <paramref name="tokens"/>, a split
    /// model its caller owns.
    /// </summary>
    public static CertifySetup Create(
        ModelPackage package, OnnxSessionFactory sessions, CertifyOptions options, string? cacheDirectory, DefenseSetup? defense = null,
        TokenSpaceModel? tokens = null)
    {
        ArgumentNullException.ThrowIfNull(package);
        if (package.Manifest.Tokens is null)
        {
            return new CertifySetup(null, "model.json has no 'tokens' entry; certified mode masks tokens.");
        }

        var shared = tokens ?? defense?.TokenModel;
        TokenSpaceModel model;
        try
        {
            model = shared ?? new TokenSpaceModel(package, sessions);
        }
        catch (ModelPackageException ex)
        {
            return new CertifySetup(null, ex.Message);
        }

        try
        {
            float[][]? replacement = null;
            if (options.Masking == MaskingChoice.Replace || (options.Masking == MaskingChoice.Auto && !model.AcceptsShorterSequences))
            {
                // Only a fixed-length encoder needs the clean mean tokens of the defense calibration.
                var calibration = defense?.Calibration;
                if (calibration is null && DefenseCalibration.CandidatePaths(package, cacheDirectory).FirstOrDefault(File.Exists) is { } path)
                {
                    calibration = DefenseCalibration.Load(path, package);
                }

                replacement = calibration?.Tokens?.Center;
            }

            var certifier = new PatchCertifier(new MaskedTokenClassifier(model, replacement, options.BatchSize, options.Masking), options);
            certifier.MasksFor(options.PatchSize);
            return new CertifySetup(certifier, null) { TokenModel = shared is null ? model : null };
        }
        catch (Exception ex) when (ex is CertificationException or ModelPackageException)
        {
            if (shared is null) model.Dispose();
            return new CertifySetup(null, ex.Message);
        }
    }
}
