using Microsoft.Extensions.Options;
using StrapVit.Api.Endpoints;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;

namespace StrapVit.Api.Defense;

/// <summary>Configuration section <c>Defense</c>, the HTTP side: what a request gets when it names no mode.</summary>
public sealed class DefenseEndpointOptions
{
    public DefenseMode DefaultMode { get; set; } = DefenseMode.Mitigate;
}

/// <summary>The defense a request asked for (query <c>defense</c>, <c>seed</c>, <c>patch</c>), resolved by <see cref="PatchDefenseFilter"/>.</summary>
/// <param name="Mode">off, detect, mitigate or certify.</param>
/// <param name="Seed">Seed of the randomized transforms: the client's, or a fresh one that the report returns.</param>
/// <param name="Explicit">Whether the client named the mode (a default falls back to off when the defense is unavailable).</param>
public sealed record DefenseSelection(DefenseMode Mode, int Seed, bool Explicit)
{
    /// <summary>certify: side in pixels of the patches to certify against (query <c>patch</c>, default <c>Certify:PatchSize</c>).</summary>
    public int PatchSize { get; init; }

    private static readonly object Key = new();

    public static DefenseSelection From(HttpContext context) =>
        context.Items[Key] as DefenseSelection ?? throw new InvalidOperationException("The endpoint is not behind PatchDefenseFilter.");

    internal void Store(HttpContext context) => context.Items[Key] = this;
}

/// <summary>
/// The defense's place in the request pipeline: an endpoint filter in front of every classification endpoint. It
/// resolves the requested mode (default: mitigate), seed and certified patch size before the body is read, so a bad
/// value costs nothing, and refuses an explicit detect/mitigate/certify with 503 when the model cannot run it.
/// </summary>
public sealed class PatchDefenseFilter(IOptions<DefenseEndpointOptions> options, IOptions<CertifyOptions> certifyOptions) : IEndpointFilter
{
    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var query = http.Request.Query;
        Resolve(http.RequestServices.GetRequiredService<Hosting.ModelRuntime>(),
            query["defense"].ToString(), query["seed"].ToString(), query["patch"].ToString()).Store(http);
        return next(context);
    }

    /// <summary>
    /// The selection that the raw values <c>defense</c>, <c>seed</c> and <c>patch</c> ask for (empty: not given), or
    /// the 400/503 problem they deserve. The inference protocol's <c>parameters</c> are resolved here too.
    /// </summary>
    public DefenseSelection Resolve(Hosting.ModelRuntime runtime, string? requested, string? seedText, string? patchText)
    {
        var mode = QueryParsing.ParseDefense(requested, options.Value.DefaultMode);
        var seed = QueryParsing.ParseInt(seedText, "seed", Random.Shared.Next(), 0, int.MaxValue);
        var explicitMode = !string.IsNullOrEmpty(requested);
        if (mode == DefenseMode.Certify)
        {
            var patch = CertifyPatch(runtime, patchText, requested);
            return new DefenseSelection(mode, seed, explicitMode) { PatchSize = patch };
        }

        if (!string.IsNullOrEmpty(patchText))
        {
            throw Errors.ProblemException.BadParameter("patch", "patch is the certified patch size and applies only to defense=certify.");
        }

        if (mode != DefenseMode.Off && runtime.Defense is null)
        {
            if (explicitMode)
            {
                throw new Errors.ProblemException(StatusCodes.Status503ServiceUnavailable, "Defense unavailable",
                    $"defense={requested} cannot run for this model: {runtime.DefenseUnavailable}");
            }

            mode = DefenseMode.Off;
        }

        return new DefenseSelection(mode, seed, explicitMode);
    }

    private int CertifyPatch(Hosting.ModelRuntime runtime, string? patchText, string? requested)
    {
        var certify = certifyOptions.Value;
        if (runtime.Certifier is not { } certifier)
        {
            throw new Errors.ProblemException(StatusCodes.Status503ServiceUnavailable, "Certified mode unavailable",
                $"defense={(string.IsNullOrEmpty(requested) ? "certify" : requested)} cannot run for this model: {runtime.CertifyUnavailable}");
        }

        var patch = QueryParsing.ParseInt(patchText, "patch", certify.PatchSize, 1, certify.MaxPatchSize);
        try
        {
            // Builds (and caches) the mask set now, so a patch the grid cannot cover is a 400 before the upload is read.
            certifier.MasksFor(patch);
        }
        catch (CertificationException ex)
        {
            throw Errors.ProblemException.BadParameter("patch", ex.Message);
        }

        return patch;
    }
}
