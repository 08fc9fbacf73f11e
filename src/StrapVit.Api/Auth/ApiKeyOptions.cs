using System.Globalization;
using Microsoft.Extensions.Options;

namespace StrapVit.Api.Auth;

/// <summary>
/// Configuration section <c>Auth</c>: API keys and their rate limits. <c>Auth:ApiKeys:&lt;name&gt;</c> holds the lowercase
/// hex SHA-256 of a key, never the key itself (environment: <c>Auth__ApiKeys__&lt;name&gt;</c>).
/// </summary>
public sealed class ApiKeyOptions
{
    public const string SectionName = "Auth";

    /// <summary>Key name to the SHA-256 (hex) of the key. With none, every endpoint is open (and start-up says so).</summary>
    public Dictionary<string, string> ApiKeys { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Whether classification (<c>/v1/classify</c>, <c>/v1/defense/inspect</c>) needs a key too, once keys exist.</summary>
    public bool RequireForClassify { get; set; }

    /// <summary>Where secret files are read from (see <c>AddStrapVitSecrets</c>); default <c>/run/secrets</c>.</summary>
    public string? SecretsDirectory { get; set; }

    /// <summary>Sustained requests per minute one key may make (a token bucket per key name).</summary>
    public int RequestsPerMinute { get; set; } = 600;

    /// <summary>Requests one key may make at once before the per-minute rate applies.</summary>
    public int Burst { get; set; } = 60;
}

/// <summary>Start-up check: every configured hash is 64 hex digits, and the rates are positive.</summary>
internal sealed class ApiKeyOptionsValidator : IValidateOptions<ApiKeyOptions>
{
    public ValidateOptionsResult Validate(string? name, ApiKeyOptions options)
    {
        foreach (var (keyName, value) in options.ApiKeys)
        {
            // A secret file written by `sha256sum | cut` or `echo` ends in a newline.
            var hash = value.Trim();
            if (hash.Length != 64 || !hash.All(Uri.IsHexDigit))
            {
                // Name the key, never echo the value: someone may have pasted the key itself here.
                return ValidateOptionsResult.Fail(
                    $"Auth:ApiKeys:{keyName} must be the SHA-256 of the key as 64 hex digits (e.g. printf %s \"$KEY\" | sha256sum), not the key itself.");
            }
        }

        if (options.RequestsPerMinute < 1 || options.Burst < 1)
        {
            return ValidateOptionsResult.Fail(string.Create(CultureInfo.InvariantCulture,
                $"Auth:RequestsPerMinute ({options.RequestsPerMinute}) and Auth:Burst ({options.Burst}) must be at least 1."));
        }

        return ValidateOptionsResult.Success;
    }
}
