using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Attacks;
using StrapVit.Core.Datasets;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Cli.Commands;

/// <summary>The pieces the attack verbs share: a CPU model with gradients, and IDX image sets in the model's layout.</summary>
internal sealed class AttackCli : IDisposable
{
    private readonly VitClassifier classifier;
    private readonly GradientRunner runner;

    public AttackCli(string modelDir, int threads, string? cache)
    {
        Package = ModelPackage.Load(modelDir);
        var options = new InferenceOptions { Device = InferenceDevice.Cpu, IntraOpThreads = threads, MaxBatchSize = 64 };
        var sessions = new OnnxSessionFactory(options, NullLogger<OnnxSessionFactory>.Instance);
        classifier = new VitClassifier(Package, sessions, options);
        try
        {
            runner = GradientRunner.Create(Package, new GradientGraphs(ModelCache.Resolve(cache), NullLogger<GradientGraphs>.Instance), sessions);
        }
        catch
        {
            classifier.Dispose();
            throw;
        }

        Model = new OnnxDifferentiableClassifier(runner, classifier, 64);
    }

    public ModelPackage Package { get; }

    public IDifferentiableClassifier Model { get; }

    /// <summary>The first <paramref name="count"/> images of an IDX set shaped for the model (gray in every channel).</summary>
    public EvaluationSet LoadIdx(string images, string labels, int count) =>
        EvaluationSet.FromIdx(IdxDataset.Load(images, labels), count, Model.Channels, Model.Height, Model.Width);

    public void Dispose()
    {
        runner.Dispose();
        classifier.Dispose();
    }
}
