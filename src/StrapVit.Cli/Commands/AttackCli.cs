using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Attacks;
using StrapVit.Core.Datasets;
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

    /// <summary>The first <paramref name="count"/> images of an IDX set as <c>[N, C, H, W]</c> (gray replicated over channels), with labels.</summary>
    public (float[] Images, int[] Labels, int Count) LoadIdx(string images, string labels, int count)
    {
        var set = IdxDataset.Load(images, labels);
        if (set.Rows != Model.Height || set.Cols != Model.Width)
        {
            throw new InvalidDataException($"{images} holds {set.Rows}x{set.Cols} images; the model takes {Model.Height}x{Model.Width}.");
        }

        var n = Math.Min(count, set.Count);
        var size = Model.SampleSize();
        var data = new float[n * size];
        for (var i = 0; i < n; i++)
        {
            var gray = set.Image(i).Data;
            for (var c = 0; c < Model.Channels; c++) gray.CopyTo(data.AsSpan((i * size) + (c * gray.Length), gray.Length));
        }

        return (data, [.. set.Labels.Take(n).Select(b => (int)b)], n);
    }

    public void Dispose()
    {
        runner.Dispose();
        classifier.Dispose();
    }
}
