using System.CommandLine;
using StrapVit.Cli.Commands;

namespace StrapVit.Cli.Tests;

/// <summary>Runs the CLI in-process, as <c>strapvit ARGS</c> would, and captures what it prints.</summary>
internal static class CliHarness
{
    public static (int Exit, string Stdout, string Stderr) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var exit = CliApp.Invoke(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Parses without running: the verb's typed option values, by option name.</summary>
    public static ParseResult Parse(params string[] args) => CliApp.Create().Parse(args);

    public static T[] List<T>(ParseResult result, string option) =>
        result.GetList(result.CommandResult.Command.Options.OfType<ListOption<T>>().Single(o => o.Name == option));

    public static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
}
