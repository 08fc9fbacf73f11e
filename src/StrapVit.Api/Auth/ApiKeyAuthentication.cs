using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using StrapVit.Api.Observability;

namespace StrapVit.Api.Auth;

/// <summary>The configured keys' hashes, decoded once, and the lookup of a presented key by constant-time comparison.</summary>
public sealed class ApiKeyStore(IOptions<ApiKeyOptions> options)
{
    private readonly (string Name, byte[] Hash)[] keys =
        [.. options.Value.ApiKeys.Select(k => (k.Key, Convert.FromHexString(k.Value.Trim())))];

    /// <summary>Whether any key is configured; without one the protected endpoints are open.</summary>
    public bool Enabled => keys.Length > 0;

    /// <summary>Whether an endpoint needs a key: any configured, and for a classification endpoint <c>Auth:RequireForClassify</c> too.</summary>
    public bool IsRequired(bool classification) => Enabled && (!classification || options.Value.RequireForClassify);

    /// <summary>The name of the key whose SHA-256 matches <paramref name="presented"/>, or null.</summary>
    public string? Find(string presented)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        string? found = null;
        foreach (var (name, expected) in keys)
        {
            // Compare against every key, so the time taken does not tell which one came close.
            if (CryptographicOperations.FixedTimeEquals(hash, expected)) found ??= name;
        }

        return found;
    }
}

/// <summary>
/// The <c>ApiKey</c> authentication scheme: <c>X-API-Key: &lt;key&gt;</c> or <c>Authorization: Bearer &lt;key&gt;</c>.
/// The principal's name is the key's configured name; the key itself is never logged, stored or exported.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    ApiKeyStore store,
    IProblemDetailsService problems,
    ServiceMetrics metrics)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string HeaderName = "X-API-Key";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var presented = Presented(Request);
        if (presented is null)
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        if (store.Find(presented) is not { } name)
        {
            metrics.CountAuth("none", "invalid");
            return Task.FromResult(AuthenticateResult.Fail("The API key is not valid."));
        }

        metrics.CountAuth(name, "accepted");
        var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, name)], SchemeName);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var result = await HandleAuthenticateOnceSafeAsync();
        var invalid = result.Failure is not null;
        if (!invalid) metrics.CountAuth("none", "missing");
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = $"{SchemeName} header=\"{HeaderName}\", Bearer";
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = Context,
            ProblemDetails = new ProblemDetails
            {
                Status = StatusCodes.Status401Unauthorized,
                Title = invalid ? "Invalid API key" : "API key required",
                Detail = invalid
                    ? "The API key sent is not one this service knows."
                    : $"This endpoint needs an API key: send it in the {HeaderName} header (or as Authorization: Bearer <key>).",
            },
        });
    }

    /// <summary>The key in X-API-Key, else the token of a Bearer Authorization header, else null.</summary>
    private static string? Presented(HttpRequest request)
    {
        if (request.Headers.TryGetValue(HeaderName, out var header) && !string.IsNullOrWhiteSpace(header))
        {
            return header.ToString().Trim();
        }

        var authorization = request.Headers.Authorization.ToString();
        return authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && authorization.Length > 7
            ? authorization[7..].Trim()
            : null;
    }
}

/// <summary>Needs an API key when keys are configured (and, for classification, when <c>Auth:RequireForClassify</c> is set).</summary>
public sealed class ApiKeyRequirement(bool classification) : IAuthorizationRequirement
{
    public bool Classification { get; } = classification;
}

internal sealed class ApiKeyRequirementHandler(ApiKeyStore store) : AuthorizationHandler<ApiKeyRequirement>
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, ApiKeyRequirement requirement)
    {
        if (!store.IsRequired(requirement.Classification) || context.User.Identity is { IsAuthenticated: true, AuthenticationType: ApiKeyAuthenticationHandler.SchemeName })
        {
            context.Succeed(requirement);
        }

        return Task.CompletedTask;
    }
}
