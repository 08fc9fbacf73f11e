using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Core.Defense;

/// <summary>The defense chosen for a model, or why none could be set up.</summary>
public sealed record DefenseSetup(IPatchDefense? Defense, string? UnavailableReason, DefenseCalibration? Calibration) : IDisposable
{
    /// <summary>The split model the token variant runs on, if any.</summary>
    internal TokenSpaceModel? TokenModel { get; init; }

    /// <summary>Whether <see cref="TokenModel"/> was built for this setup (else it is shared and owned elsewhere).</summary>
    internal bool OwnsTokenModel { get; init; }

    /// <summary>The bank search on the model's GPU, if the defense uses one (null on the CPU).</summary>
    public BankSearch? Search { get; internal init; }

    /// <summary>
    /// The calibration's masking-check margin when the token defense runs the check without it, because it was counted
    /// under other settings (the check then keeps PatchCleanser's rule); null when it is applied or not needed.
    /// </summary>
    public double? UnappliedCheckMargin { get; internal init; }

    public void Dispose()
    {
        Search?.Dispose();
        if (OwnsTokenModel) TokenModel?.Dispose();
    }
}

/// <summary>Finds the calibration for a package and builds the configured defense variant over it.</summary>
public static class DefenseLoader
{
    /// <param name="package">The model package.</param>
    /// <param name="classifier">Its classifier (the pixel variant runs on it).</param>
    /// <param name="sessions">Session factory for a split model, when <paramref name="tokens"/> is not given.</param>
    /// <param name="configured">Defense settings.</param>
    /// <param name="cacheDirectory">Where a calibration may be cached.</param>
    /// <param name="tokens">An already split model to share (its owner disposes it), or null to split one if needed.</param>
    public static DefenseSetup Create(
        ModelPackage package, VitClassifier classifier, OnnxSessionFactory sessions, DefenseOptions configured, string? cacheDirectory,
        TokenSpaceModel? tokens = null)
    {
        var options = configured.Resolved();
        var path = DefenseCalibration.CandidatePaths(package, cacheDirectory).FirstOrDefault(File.Exists);
        if (path is null)
        {
            return new DefenseSetup(null,
                $"No {DefenseCalibration.FileName} for this model (looked beside the package and in the cache); run `strapvit calibrate <model-dir> --images <folder>`.",
                null);
        }

        var calibration = DefenseCalibration.Load(path, package);
        // The calibrated margin holds for the settings it was counted under; under others the check keeps PatchCleanser's rule.
        double? unapplied = null;
        if (options.VerifyMargin is null && calibration.Check is { } check)
        {
            if (check.AppliesTo(options))
            {
                options = options.Clone();
                options.VerifyMargin = check.Margin;
            }
            else if (options.VerifyWindows > 0)
            {
                unapplied = check.Margin;
            }
        }
        var wantToken = options.Variant == DefenseVariant.Token
            || (options.Variant == DefenseVariant.Auto && package.Manifest.Tokens is not null && calibration.Tokens is not null);
        if (!wantToken)
        {
            return new DefenseSetup(new PixelPatchDefense(classifier, calibration.Pixels, options), null, calibration);
        }

        if (calibration.Tokens is null)
        {
            return new DefenseSetup(null, "Defense:Variant is Token but the calibration has no token reference (the package has no tokens tensor?).", calibration);
        }

        if (options.Score == TokenScore.Knn && calibration.Tokens.Bank is null)
        {
            return new DefenseSetup(null,
                "Defense:Score is Knn but the calibration has no token bank (made by an older version); run `strapvit calibrate` again, or set Defense:Score to Jsd.",
                calibration);
        }

        var tokenModel = tokens ?? new TokenSpaceModel(package, sessions);
        if (options.Neutralization is Neutralization.Drop or Neutralization.HybridDrop && !tokenModel.AcceptsShorterSequences)
        {
            if (tokens is null) tokenModel.Dispose();
            return new DefenseSetup(null,
                "Defense:Neutralization is Drop but this model's encoder only runs on the full token sequence; use Hybrid or Mean.", calibration);
        }

        // On a GPU the bank search runs there too (BankSearch); on the CPU, or if that session cannot open, the
        // calibration's own kernel does. (With Defense:Score = Jsd the bank only serves bank replacement: CPU kernel.)
        // A per-position bank searches a few hundred entries per token: the CPU kernel too.
        var reference = calibration.Tokens;
        BankSearch? search = null;
        if (options.Score == TokenScore.Knn && tokenModel.ExecutionProvider == OnnxSessionFactory.Cuda && reference.Bank!.PositionStarts is null)
        {
            try
            {
                search = new BankSearch(reference.Bank!, sessions);
                reference = reference with { Bank = reference.Bank! with { Search = search } };
            }
            catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
            {
                // The session would not open: the CPU kernel scores instead, as on a CPU.
            }
        }

        return new DefenseSetup(new TokenPatchDefense(tokenModel, reference, options), null, calibration)
        {
            TokenModel = tokenModel,
            OwnsTokenModel = tokens is null,
            Search = search,
            UnappliedCheckMargin = unapplied,
        };
    }
}
