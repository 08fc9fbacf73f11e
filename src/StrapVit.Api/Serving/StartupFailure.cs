using System.Reflection;
using Microsoft.Extensions.Options;
using StrapVit.Core.Models;

namespace StrapVit.Api.Serving;

/// <summary>
/// The one-line reason for a start-up failure an operator can fix (bad settings, a missing or corrupt model package),
/// printed instead of an unhandled-exception dump and an abort; the host's own log keeps the full exception.
/// </summary>
public static class StartupFailure
{
    /// <summary>The reason to print, or null for a failure that is a bug and should surface whole.</summary>
    public static string? Reason(Exception exception) => exception switch
    {
        OptionsValidationException options => string.Join(" ", options.Failures),
        ModelPackageException model => model.Message,
        AggregateException { InnerExceptions.Count: 1 } aggregate => Reason(aggregate.InnerExceptions[0]),
        _ => null,
    };

    /// <summary>Runs the app; a start-up failure with a known reason ends the process with that line and exit code 1.</summary>
    public static int Run(WebApplication app)
    {
        ModelRuntime? runtime = null;
        try
        {
            // Resolved before Run, which disposes the container when it returns.
            runtime = app.Services.GetRequiredService<ModelRuntime>();
            app.Run();
            // The model loads after the service listens; if it could not be loaded at all, the service stopped itself.
            // Only as the process's own entry point: under WebApplicationFactory the entry point must not end on its
            // own (the test host reports the failure, and a returning entry point can take the test process down).
            if (runtime.FatalError is { } fatal && Assembly.GetEntryAssembly() == typeof(StartupFailure).Assembly)
            {
                Console.Error.WriteLine($"StrapVitService cannot start: {fatal}");
                return 1;
            }

            return 0;
        }
        // Only as the process's own entry point: under WebApplicationFactory the test host reports the failure itself.
        // A model that fails to load before the server has started stops the start itself (it is cancelled): the reason is the model's.
        catch (Exception ex) when (Assembly.GetEntryAssembly() == typeof(StartupFailure).Assembly && (Reason(ex) ?? runtime?.FatalError) is { } reason)
        {
            Console.Error.WriteLine($"StrapVitService cannot start: {reason}");
            return 1;
        }
    }
}
