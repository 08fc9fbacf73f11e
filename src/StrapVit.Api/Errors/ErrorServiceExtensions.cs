using System.Globalization;
using Microsoft.AspNetCore.Http.Features;

namespace StrapVit.Api.Errors;

/// <summary>RFC 7807 answers for every refusal: the service's own, the framework's binding failures and its status codes.</summary>
public static class ErrorServiceExtensions
{
    public static IServiceCollection AddStrapVitProblems(this IServiceCollection services)
    {
        // Problems the framework writes itself (status-code pages) get a detail too.
        services.AddProblemDetails(o => o.CustomizeProblemDetails = ctx => ctx.ProblemDetails.Detail ??= DefaultDetail(ctx.HttpContext, ctx.ProblemDetails.Status));
        services.AddExceptionHandler<ProblemExceptionHandler>();
        // Binding failures (a value of the wrong type, a body over its limit, malformed JSON) reach the exception
        // handler, which sends the reason as the problem's detail, instead of ending as a bare status code.
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        return services;
    }

    private static string DefaultDetail(HttpContext context, int? status) => status switch
    {
        StatusCodes.Status413PayloadTooLarge =>
            $"The request body is over this endpoint's limit of {context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize?.ToString(CultureInfo.InvariantCulture) ?? "?"} bytes.",
        StatusCodes.Status404NotFound => $"There is no resource at '{context.Request.Path}'; GET /swagger lists the API.",
        StatusCodes.Status405MethodNotAllowed => $"'{context.Request.Method}' is not allowed on '{context.Request.Path}'.",
        StatusCodes.Status415UnsupportedMediaType => $"The content type '{context.Request.ContentType ?? "none"}' is not one this endpoint reads.",
        _ => Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status ?? 500),
    };
}
