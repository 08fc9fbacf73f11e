using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Attacks;
using StrapVit.Core.Datasets;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Cli.Commands;

/// <summary>The one runtime setup of every CLI verb: a package's model runtime from the shared factory, gradients loaded when asked for.</summary>
internal static class CliRuntime
{
    public static ModelRuntime Load(ModelPackage package, ModelRuntimeOptions options, bool gradients)
    {
        var runtime = new ModelRuntimeFactory(NullLoggerFactory.Instance).Create(package, options);
        try
        {
            if (gradients) runtime.LoadGradients();
            return runtime;
        }
        catch
        {
            runtime.Dispose();
            throw;
        }
    }
}

/// <summary>The pieces the attack verbs share: a CPU model with gradients, and IDX image sets in the model's layout.</summary>
internal sealed class AttackCli : IDisposable
{
    private readonly ModelRuntime runtime;

    public AttackCli(string modelDir, int threads, string? cache)
    {
        Package = ModelPackage.Load(modelDir);
        runtime = CliRuntime.Load(Package, new ModelRuntimeOptions
        {
            Inference = new InferenceOptions { Device = InferenceDevice.Cpu, IntraOpThreads = threads, MaxBatchSize = 64 },
            CacheDirectory = cache,
        }, gradients: true);
        Model = new OnnxDifferentiableClassifier(runtime.Gradients!, runtime.Classifier, 64);
    }

    public ModelPackage Package { get; }

    public IDifferentiableClassifier Model { get; }

    /// <summary>The first <paramref name="count"/> images of an IDX set shaped for the model (gray in every channel).</summary>
    public EvaluationSet LoadIdx(string images, string labels, int count) =>
        EvaluationSet.FromIdx(IdxDataset.Load(images, labels), count, Model.Channels, Model.Height, Model.Width);

    public void Dispose() => runtime.Dispose();
}
