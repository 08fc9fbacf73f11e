using System.CommandLine;
using Google.Protobuf;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Cli.Commands;

/// <summary><c>strapvit gradient-graph MODEL-DIR --output FILE [--objective cross-entropy|vjp]</c> (README, 'Attacks').</summary>
internal sealed class GradientGraphCommand : CliVerb
{
    private readonly Argument<string> modelDir = CliOptions.ModelDir();

    private readonly Option<string> output = CliOptions.Text("--output", "where to write the gradient model", required: true, helpName: "file.onnx");

    private readonly Option<string> objective = new("--objective")
    {
        Description = """
            cross-entropy: inputs pixel_values [N,C,H,W], labels int64 [N]; outputs logits [N,K], loss [N], pixel_grad [N,C,H,W].
            vjp: inputs pixel_values, logits_grad [N,K]; outputs logits, pixel_grad = J^T logits_grad
            """,
        HelpName = "cross-entropy|vjp",
        DefaultValueFactory = _ => GradientObjective.CrossEntropy.ToCliName(),
    };

    public GradientGraphCommand()
        : base("gradient-graph", """
            Write the exported gradient graph (forward + backward, standard ONNX ops) of a model package.

            Builds one ONNX model that computes the forward pass and the pixel gradient in a single run, with the
            package's normalization baked in (inputs are [0,1] pixels), using standard ONNX ops only.

            Exit codes: 0 written; 1 the package is invalid or an op cannot be differentiated (the message names the
            op and the node); 2 bad arguments.
            """)
    {
        objective.CompletionSources.Add("cross-entropy", "vjp");
        objective.Validators.Add(result =>
        {
            if (!GradientGraphNames.TryParseObjective(result.GetValueOrDefault<string>(), out _))
            {
                result.AddError($"--objective must be cross-entropy or vjp, not '{result.GetValueOrDefault<string>()}'");
            }
        });
        Arguments.Add(modelDir);
        Options.Add(output);
        Options.Add(objective);
    }

    protected override int Run(ParseResult parseResult, TextWriter stdout, TextWriter stderr)
    {
        var output = parseResult.GetRequiredValue(this.output);
        if (!GradientGraphNames.TryParseObjective(parseResult.GetValue(this.objective), out var objective)) throw new CliUsageException("--objective must be cross-entropy or vjp");
        try
        {
            var package = ModelPackage.Load(parseResult.GetRequiredValue(modelDir));
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
            stderr.WriteLine($"strapvit gradient-graph: {CliUsage.OneLine(ex.Message)}");
            return ExitCodes.Failed;
        }
    }
}
