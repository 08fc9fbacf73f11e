using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using StrapVit.Core.Models;

namespace StrapVit.Cli.Commands;

/// <summary>
/// One verb of the <c>strapvit</c> CLI: a System.CommandLine command whose action writes to the invocation's
/// output and error writers and returns an <see cref="ExitCodes"/> value.
/// </summary>
internal abstract class CliVerb : Command
{
    /// <param name="name">The verb as typed.</param>
    /// <param name="help">First paragraph: the one line of the verb list; the rest: the details closing <c>strapvit VERB --help</c>.</param>
    protected CliVerb(string name, string help)
        : base(name)
    {
        var split = help.IndexOf("\n\n", StringComparison.Ordinal);
        Description = split < 0 ? help : help[..split];
        Details = split < 0 ? string.Empty : help[(split + 2)..].Trim();
        SetAction(parseResult =>
        {
            var config = parseResult.InvocationConfiguration;
            try
            {
                return Run(parseResult, config.Output, config.Error);
            }
            catch (CliUsageException ex)
            {
                config.Error.WriteLine(CliUsage.Line(this, ex.Message));
                return ExitCodes.Usage;
            }
            catch (Exception ex) when (ex is ModelPackageException or IOException or InvalidDataException or UnauthorizedAccessException)
            {
                // What a verb does not report itself: a failed run, one line (not System.CommandLine's stack trace).
                config.Error.WriteLine($"strapvit {Name}: {CliUsage.OneLine(ex.Message)}");
                return ExitCodes.Failed;
            }
        });
    }

    /// <summary>The long help, after the options in <c>strapvit VERB --help</c>.</summary>
    public string Details { get; }

    /// <summary>Runs the verb on arguments that parsed and validated; returns the process exit code.</summary>
    /// <exception cref="CliUsageException">The arguments are wrong in a way only the run can see (exit code 2).</exception>
    protected abstract int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr);
}

/// <summary>Process exit codes shared by every verb.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>The verb ran and failed (bad model, graph that cannot be differentiated, I/O).</summary>
    public const int Failed = 1;

    /// <summary>The command line itself is wrong.</summary>
    public const int Usage = 2;
}

/// <summary>The command line is wrong in a way the parser cannot see, e.g. no labels file beside the images.</summary>
internal sealed class CliUsageException(string message) : Exception(message);

/// <summary>The one-line usage error every verb prints.</summary>
internal static class CliUsage
{
    public static string Line(Command command, string message)
    {
        var prefix = command is RootCommand ? "strapvit" : $"strapvit {command.Name}";
        return $"{prefix}: {OneLine(message)} (see '{prefix} --help')";
    }

    public static string OneLine(string text) => string.Join(' ', text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}

/// <summary>The standard help, then a verb's <see cref="CliVerb.Details"/> (the standard help has one description for both the verb list and the verb).</summary>
internal sealed class VerbHelpAction(HelpAction standard) : SynchronousCommandLineAction
{
    public override int Invoke(ParseResult parseResult)
    {
        var exit = standard.Invoke(parseResult);
        if (parseResult.CommandResult.Command is CliVerb { Details.Length: > 0 } verb)
        {
            var output = parseResult.InvocationConfiguration.Output;
            output.WriteLine("Details:");
            foreach (var line in verb.Details.Split('\n')) output.WriteLine(line.Length == 0 ? string.Empty : "  " + line);
            output.WriteLine();
        }

        return exit;
    }
}
