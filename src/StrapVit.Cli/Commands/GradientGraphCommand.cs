using Google.Protobuf;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit gradient-graph MODEL-DIR --output FILE [--objective cross-entropy|vjp]</c> (README, 'Attacks').</summary>
internal sealed class GradientGraphCommand : ICliCommand
{
    public string Name => "gradient-graph";

    public string Summary => "Write the exported gradient graph (forward + backward, standard ONNX ops) of a model package.";

    public string Usage => """
        Usage: strapvit gradient-graph <model-dir> --output <file.onnx> [--objective cross-entropy|vjp]

        Builds one ONNX model that computes the forward pass and the pixel gradient in a single run, with the
        package's normalization baked in (inputs are [0,1] pixels), using standard ONNX ops only.

          <model-dir>    model package folder (model.onnx + model.json)
          --output       where to write the gradient model
          --objective    cross-entropy (default): inputs pixel_values [N,C,H,W], labels int64 [N];
                                                  outputs logits [N,K], loss [N], pixel_grad [N,C,H,W]
                         vjp:                     inputs pixel_values, logits_grad [N,K];
                                                  outputs logits, pixel_grad = J^T logits_grad

        Exit codes: 0 written; 1 the package is invalid or an op cannot be differentiated (the message names the
        op and the node); 2 bad arguments.
        """;

    public int Run(CliArguments args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Positionals.Count != 1) throw new CliUsageException("expected exactly one <model-dir>");
        var output = args.RequiredOption("output");
        var objectiveText = args.Option("objective") ?? GradientObjective.CrossEntropy.ToCliName();
        if (!GradientGraphNames.TryParseObjective(objectiveText, out var objective))
        {
            throw new CliUsageException($"--objective must be cross-entropy or vjp, not '{objectiveText}'");
        }

        args.RejectUnknownOptions();
        try
        {
            var package = ModelPackage.Load(args.Positionals[0]);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var forward = ForwardGraph.LoadNormalized(package);
            var forwardNodes = forward.Graph.Node.Count;
            var model = new GradientGraphBuilder().Build(forward, objective);
            var fullPath = Path.GetFullPath(output);
            Directory.CreateDirectory(Path.GetDirectoryName(fullPath)!);
            File.WriteAllBytes(fullPath, model.ToByteArray());
            var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
            stdout.WriteLine($"{fullPath}: {objective.ToCliName()} gradient of {package.Manifest.Name} ({forwardNodes} forward + {model.Graph.Node.Count - forwardNodes} backward nodes, opset {model.OpsetImport.First(o => o.Domain.Length == 0 || o.Domain == "ai.onnx").Version}) in {elapsed:F1} s");
            return ExitCodes.Ok;
        }
        catch (Exception ex) when (ex is GradientGraphException or ModelPackageException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"strapvit gradient-graph: {OneLine(ex.Message)}");
            return ExitCodes.Failed;
        }
    }

    private static string OneLine(string text) => string.Join(' ', text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
