using Microsoft.Extensions.Options;
using StrapVit.Api.Errors;
using StrapVit.Api.Serving;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;

namespace StrapVit.Api.Defense;

/// <summary>
/// The <c>defense</c> query value. The members are spelled as clients write them because ASP.NET binds an enum
/// by its exact member name.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Style", "IDE1006:Naming Styles", Justification = "Wire values.")]
public enum DefenseChoice
{
    /// <summary>The classifier alone.</summary>
    off,

    /// <summary>Score and flag the patch tokens, then classify the untouched image.</summary>
    detect,

    /// <summary>Score, flag and neutralize the flagged tokens, then classify.</summary>
    mitigate,

    /// <summary>PatchCleanser's certified double masking (<c>POST /v1/classify</c> and <c>POST /v2/models/{name}/infer</c> only).</summary>
    certify,
}

/// <summary>
/// The parameters that choose the defense in front of the classifier: the query of classify and inspect, bound by
/// ASP.NET, or the inference protocol's request <c>parameters</c>, read into the same record.
/// </summary>
/// <param name="Defense">off, detect, mitigate (the default, <c>Defense:DefaultMode</c>) or certify: the STRAP-ViT patch defense in front of the classifier, or PatchCleanser's certified double masking.</param>
/// <param name="Seed">Seed of the defense's randomized transforms, at least 0 (default: a fresh one, reported back).</param>
public sealed record DefenseQuery(DefenseChoice? Defense = null, int? Seed = null);

/// <summary>Configuration section <c>Defense</c>, the HTTP side: what a request gets when it names no mode.</summary>
public sealed class DefenseEndpointOptions
{
    public DefenseMode DefaultMode { get; set; } = DefenseMode.Mitigate;
}

/// <summary>The defense a request gets.</summary>
/// <param name="Mode">off, detect, mitigate or certify.</param>
/// <param name="Seed">Seed of the randomized transforms: the client's, or a fresh one that the report returns.</param>
/// <param name="Explicit">Whether the client named the mode (a default falls back to off when the defense is unavailable).</param>
/// <param name="PatchSize">certify: side in pixels of the patches to certify against.</param>
public sealed record DefenseSelection(DefenseMode Mode, int Seed, bool Explicit, int PatchSize = 0);

/// <summary>
/// Resolves a request's <see cref="DefenseQuery"/> against what the loaded model can run: the default mode, a drawn
/// seed, the certified patch size; 503 for an explicit mode the model cannot run, 400 for a patch size it cannot certify.
/// </summary>
public sealed class DefenseSelector(ModelRuntime runtime, IOptions<DefenseEndpointOptions> options, IOptions<CertifyOptions> certifyOptions)
{
    /// <summary>The mode a request that names none gets.</summary>
    public DefenseMode DefaultMode => options.Value.DefaultMode;

    /// <param name="query">The request's defense parameters.</param>
    /// <param name="patch">defense=certify only: the certified patch side (default <c>Certify:PatchSize</c>).</param>
    public DefenseSelection Select(DefenseQuery query, int? patch = null)
    {
        if (query.Defense is { } undefined && !Enum.IsDefined(undefined))
        {
            // Enum.TryParse, which binds the query, takes any integer as a member.
            throw BindingFailure.NotConvertible("defense", undefined.ToString(), typeof(DefenseChoice));
        }

        var seed = Parameter.InRange(query.Seed, 0, int.MaxValue) ?? Random.Shared.Next();
        var mode = query.Defense is { } choice ? ToMode(choice) : DefaultMode;
        var named = query.Defense is not null;
        if (mode == DefenseMode.Certify)
        {
            return new DefenseSelection(mode, seed, named, CertifiedPatch(patch, query.Defense));
        }

        if (patch is not null)
        {
            throw ProblemException.BadParameter("patch", "patch is the certified patch size and applies only to defense=certify.");
        }

        if (mode != DefenseMode.Off && runtime.Defense is null)
        {
            if (named)
            {
                throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "Defense unavailable",
                    $"defense={query.Defense} cannot run for this model: {runtime.DefenseUnavailable}");
            }

            mode = DefenseMode.Off;
        }

        return new DefenseSelection(mode, seed, named);
    }

    private static DefenseMode ToMode(DefenseChoice choice) => choice switch
    {
        DefenseChoice.off => DefenseMode.Off,
        DefenseChoice.detect => DefenseMode.Detect,
        DefenseChoice.mitigate => DefenseMode.Mitigate,
        DefenseChoice.certify => DefenseMode.Certify,
        _ => throw new ArgumentOutOfRangeException(nameof(choice), choice, null),
    };

    private int CertifiedPatch(int? patch, DefenseChoice? named)
    {
        var certify = certifyOptions.Value;
        if (runtime.Certifier is not { } certifier)
        {
            throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "Certified mode unavailable",
                $"defense={named ?? DefenseChoice.certify} cannot run for this model: {runtime.CertifyUnavailable}");
        }

        var side = Parameter.InRange(patch, 1, certify.MaxPatchSize) ?? certify.PatchSize;
        try
        {
            // Builds (and caches) the mask set now, so a patch the grid cannot cover is a 400 before any inference.
            certifier.MasksFor(side);
        }
        catch (CertificationException ex)
        {
            throw ProblemException.BadParameter("patch", ex.Message);
        }

        return side;
    }
}
