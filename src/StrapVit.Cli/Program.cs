using StrapVit.Cli.Commands;

// strapvit <verb> [arguments]: offline tools around a model package. Add a verb by writing one ICliCommand
// under Commands/ and listing it here.
ICliCommand[] commands =
[
    new GradientGraphCommand(),
    new CalibrateCommand(),
    new EvaluateCommand(),
    new CertifyEvalCommand(),
    new AttackEvalCommand(),
    new PatchTrainCommand(),
    new PgdBenchCommand(),
];

return Dispatch(args, commands, Console.Out, Console.Error);

static int Dispatch(string[] args, ICliCommand[] commands, TextWriter stdout, TextWriter stderr)
{
    if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
    {
        var verb = args.Length > 1 && args[0] == "help" ? commands.FirstOrDefault(c => c.Name == args[1]) : null;
        stdout.WriteLine(verb?.Usage ?? Overview(commands));
        return args.Length == 0 ? ExitCodes.Usage : ExitCodes.Ok;
    }

    var command = commands.FirstOrDefault(c => string.Equals(c.Name, args[0], StringComparison.Ordinal));
    if (command is null)
    {
        stderr.WriteLine($"strapvit: unknown verb '{args[0]}'. Run 'strapvit --help' for the list.");
        return ExitCodes.Usage;
    }

    var rest = args[1..];
    if (rest.Any(a => a is "--help" or "-h"))
    {
        stdout.WriteLine(command.Usage);
        return ExitCodes.Ok;
    }

    try
    {
        return command.Run(CliArguments.Parse(rest), stdout, stderr);
    }
    catch (CliUsageException ex)
    {
        stderr.WriteLine($"strapvit {command.Name}: {ex.Message}");
        stderr.WriteLine($"Run 'strapvit {command.Name} --help' for usage.");
        return ExitCodes.Usage;
    }
}

static string Overview(ICliCommand[] commands) =>
    "Usage: strapvit <verb> [arguments]\n\nVerbs:\n"
    + string.Join('\n', commands.Select(c => $"  {c.Name,-16}{c.Summary}"))
    + "\n\nRun 'strapvit <verb> --help' for a verb's arguments.";
