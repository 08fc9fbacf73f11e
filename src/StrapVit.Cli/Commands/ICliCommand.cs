namespace StrapVit.Cli.Commands;

/// <summary>One verb of the <c>strapvit</c> CLI.</summary>
internal interface ICliCommand
{
    /// <summary>The verb as typed, e.g. <c>gradient-graph</c>.</summary>
    string Name { get; }

    /// <summary>One line for the verb list.</summary>
    string Summary { get; }

    /// <summary>Full help text for <c>strapvit VERB --help</c>.</summary>
    string Usage { get; }

    /// <summary>Runs the verb; returns the process exit code (see <see cref="ExitCodes"/>).</summary>
    /// <exception cref="CliUsageException">The arguments are wrong (exit code 2).</exception>
    int Run(CliArguments args, TextWriter stdout, TextWriter stderr);
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

/// <summary>The command line is wrong: unknown option, missing value, missing positional argument.</summary>
internal sealed class CliUsageException(string message) : Exception(message);
