using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace StrapVit.Cli.Commands;

/// <summary>The <c>strapvit</c> command tree and its one entry point. Add a verb by writing a <see cref="CliVerb"/> and listing it here.</summary>
internal static class CliApp
{
    public static RootCommand Create()
    {
        var root = new RootCommand("strapvit: offline tools around a model package (gradient graphs, defense calibration, evaluations, attacks).")
        {
            new GradientGraphCommand(),
            new CalibrateCommand(),
            new DefenseFlagsCommand(),
            new EvaluateCommand(),
            new CertifyEvalCommand(),
            new AttackEvalCommand(),
            new PatchTrainCommand(),
            new PgdBenchCommand(),
        };
        var help = root.Options.OfType<HelpOption>().Single();
        help.Action = new VerbHelpAction((HelpAction)help.Action!);
        return root;
    }

    /// <summary>
    /// Parses and runs <paramref name="args"/>. Parse errors (unknown verb or option, missing or malformed value)
    /// print one line to <paramref name="stderr"/> and return <see cref="ExitCodes.Usage"/> (System.CommandLine's own
    /// parse-error action would return 1, the code of a failed run); <c>--help</c> wins over them. No arguments at all
    /// print the verb list and return <see cref="ExitCodes.Usage"/>.
    /// </summary>
    public static int Invoke(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = Create();
        var config = new InvocationConfiguration { Output = stdout, Error = stderr };
        if (args.Length == 0)
        {
            root.Parse(["--help"]).Invoke(config);
            return ExitCodes.Usage;
        }

        var parseResult = root.Parse(args);
        if (parseResult.Errors.Count > 0 && parseResult.Action is ParseErrorAction)
        {
            stderr.WriteLine(CliUsage.Line(parseResult.CommandResult.Command, string.Join("; ", parseResult.Errors.Select(e => e.Message.TrimEnd('.')))));
            return ExitCodes.Usage;
        }

        return parseResult.Invoke(config);
    }
}
