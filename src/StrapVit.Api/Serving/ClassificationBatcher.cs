using Microsoft.Extensions.Options;
using StrapVit.Api.Defense;
using StrapVit.Api.Observability;
using StrapVit.Core.Defense;

namespace StrapVit.Api.Serving;

/// <summary>
/// The way every classification (<c>POST /v1/classify</c>, <c>POST /v2/models/{name}/infer</c>) reaches the model:
/// with <c>Batching</c> on, through the <see cref="DynamicBatcher{TKey,TRequest,TResult}"/>, which runs the queued
/// requests of one defense mode as one classifier or defense run, each image with its request's seed; otherwise,
/// and always for defense=certify (PatchCleanser runs image by image), on the caller's thread as before.
/// </summary>
public sealed class ClassificationBatcher : IAsyncDisposable
{
    private readonly ModelRuntime _runtime;
    private readonly ServiceMetrics _metrics;
    private readonly DynamicBatcher<DefenseMode, Images, DefendedBatch> _batcher;

    public ClassificationBatcher(ModelRuntime runtime, ServiceMetrics metrics, IOptions<BatchingOptions> options, TimeProvider time)
    {
        _runtime = runtime;
        _metrics = metrics;
        Enabled = options.Value.Enabled;
        _batcher = new DynamicBatcher<DefenseMode, Images, DefendedBatch>(options.Value, RunBatch, time, metrics.ObserveBatch);
    }

    /// <summary>Whether requests are batched (<c>Batching:Enabled</c>).</summary>
    public bool Enabled { get; }

    /// <summary>
    /// Classifies <paramref name="count"/> images laid out back to back in <paramref name="pixels"/> with
    /// <paramref name="selection"/>: the answers <see cref="DefendedClassification.RunBatch"/> gives for them alone,
    /// with the wall time of the run that classified them. While the model loads this throws the runtime's 503
    /// "Model loading" before anything is queued, so a batch only ever runs on a loaded model.
    /// </summary>
    public Task<DefendedBatch> ClassifyAsync(float[] pixels, int count, DefenseSelection selection, CancellationToken cancellationToken)
    {
        _ = _runtime.Classifier;
        if (selection.Mode == DefenseMode.Certify || !Enabled)
        {
            return Task.FromResult(Run(pixels, count, selection, null, cancellationToken));
        }

        return _batcher.RunAsync(selection.Mode, new Images(pixels, count, selection), count, cancellationToken);
    }

    /// <summary>
    /// Stops the batcher: queued requests are cancelled and a batch still running (its requests gone) is cancelled
    /// and waited for, so the model, disposed after this, is never disposed under a run.
    /// </summary>
    public ValueTask DisposeAsync() => _batcher.DisposeAsync();

    private DefendedBatch Run(float[] pixels, int count, DefenseSelection selection, IReadOnlyList<int>? seeds, CancellationToken cancellationToken) =>
        DefendedClassification.RunBatch(_runtime, _metrics, pixels, count, selection, cancellationToken, seeds);

    private DefendedBatch[] RunBatch(DefenseMode key, IReadOnlyList<Images> requests, CancellationToken cancellationToken)
    {
        if (requests is [var one])
        {
            return [Run(one.Pixels, one.Count, one.Selection, null, cancellationToken)];
        }

        var size = _runtime.Classifier.Manifest.Input.Size;
        var total = requests.Sum(r => r.Count);
        var pixels = new float[total * size];
        var seeds = new int[total];
        var offset = 0;
        foreach (var request in requests)
        {
            request.Pixels.CopyTo(pixels, offset * size);
            Array.Fill(seeds, request.Selection.Seed, offset, request.Count);
            offset += request.Count;
        }

        var batch = Run(pixels, total, requests[0].Selection, seeds, cancellationToken);
        offset = 0;
        var answers = new DefendedBatch[requests.Count];
        for (var i = 0; i < requests.Count; i++)
        {
            answers[i] = batch with { Images = batch.Images.Skip(offset).Take(requests[i].Count).ToArray() };
            offset += requests[i].Count;
        }

        return answers;
    }

    /// <summary>One request's images and defense choice.</summary>
    private sealed record Images(float[] Pixels, int Count, DefenseSelection Selection);
}
