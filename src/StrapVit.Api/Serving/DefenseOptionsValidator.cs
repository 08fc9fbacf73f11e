using Microsoft.Extensions.Options;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;

namespace StrapVit.Api.Serving;

/// <summary>Start-up validation of <see cref="DefenseOptions"/> with the option's own message.</summary>
public sealed class DefenseOptionsValidator : IValidateOptions<DefenseOptions>
{
    public ValidateOptionsResult Validate(string? name, DefenseOptions options) =>
        options.Validate() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
}

/// <summary>Start-up validation of <see cref="CertifyOptions"/> with the option's own message.</summary>
public sealed class CertifyOptionsValidator : IValidateOptions<CertifyOptions>
{
    public ValidateOptionsResult Validate(string? name, CertifyOptions options) =>
        options.Validate() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
}
