using StrapVit.Cli.Commands;

// strapvit <verb> [arguments]: offline tools around a model package (verbs listed in CliApp).
return CliApp.Invoke(args, Console.Out, Console.Error);
