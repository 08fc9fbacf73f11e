using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Imaging;
using StrapVit.Core.Models;
using StrapVit.Core.Numerics;
using StrapVit.Core.Onnx;

namespace StrapVit.Core.Inference;

/// <summary>
/// The served classifier: one ONNX Runtime session over the normalized forward graph (input [0, 1] pixels).
/// <c>InferenceSession.Run</c> is thread-safe, so one instance serves all requests.
/// </summary>
public sealed class VitClassifier : IDisposable
{
    private readonly OrtSession _session;
    private readonly int _maxBatch;

    /// <exception cref="ModelPackageException">The graph cannot be loaded or disagrees with the manifest.</exception>
    public VitClassifier(ModelPackage package, OnnxSessionFactory factory, InferenceOptions options)
    {
        Package = package;
        _maxBatch = Math.Max(1, options.MaxBatchSize);
        var bytes = ForwardGraph.LoadNormalizedBytes(package);
        try
        {
            _session = factory.Create(bytes, "classifier");
        }
        catch (OnnxRuntimeException ex)
        {
            throw new ModelPackageException($"ONNX Runtime cannot load {package.OnnxPath}: {FirstLine(ex.Message)}", ex);
        }

        try
        {
            WarmUp();
        }
        catch
        {
            _session.Dispose();
            throw;
        }
    }

    public ModelPackage Package { get; }

    public ModelManifest Manifest => Package.Manifest;

    /// <summary>The execution provider the session really runs on.</summary>
    public string ExecutionProvider => _session.ExecutionProvider;

    public int ClassCount => Manifest.Labels.Count;

    /// <summary>Logits <c>[N, K]</c> for <paramref name="batch"/> images laid out back to back in <paramref name="pixels"/>.</summary>
    public float[] Logits(ReadOnlySpan<float> pixels, int batch, RunOptions? runOptions = null)
    {
        var size = Manifest.Input.Size;
        if (pixels.Length != batch * size)
        {
            throw new ArgumentException($"Expected {batch} x {size} values, got {pixels.Length}.", nameof(pixels));
        }

        var k = ClassCount;
        var result = new float[batch * k];
        for (var start = 0; start < batch; start += _maxBatch)
        {
            var n = Math.Min(_maxBatch, batch - start);
            RunChunk(pixels.Slice(start * size, n * size), n, result.AsSpan(start * k, n * k), runOptions);
        }

        return result;
    }

    /// <summary>Classifies one image, returning the <paramref name="topK"/> best classes.</summary>
    public Classification Classify(ImageTensor image, int topK, RunOptions? runOptions = null)
    {
        var sw = Stopwatch.StartNew();
        var logits = Logits(image.Data, 1, runOptions);
        var elapsed = sw.Elapsed.TotalMilliseconds;
        return new Classification(Rank(logits, topK), logits, elapsed);
    }

    /// <summary>Top-K predictions for one logits row.</summary>
    public IReadOnlyList<Prediction> Rank(ReadOnlySpan<float> logits, int topK)
    {
        var probs = Probabilities.Softmax(logits);
        return Probabilities.TopK(probs, topK).Select(i => new Prediction(i, Manifest.Labels[i], probs[i])).ToArray();
    }

    private void RunChunk(ReadOnlySpan<float> pixels, int n, Span<float> output, RunOptions? runOptions)
    {
        var input = Manifest.Input;
        var buffer = pixels.ToArray();
        using var tensor = OrtValue.CreateTensorValueFromMemory(buffer, [n, input.Channels, input.Height, input.Width]);
        using var ro = runOptions is null ? new RunOptions() : null;
        using var activity = CoreActivities.OnnxRun("forward", n, _session.ExecutionProvider);
        using var results = _session.Session.Run(runOptions ?? ro!, [ForwardGraph.PixelInput], [tensor], [ForwardGraph.LogitsOutput]);
        var logits = results[0].GetTensorDataAsSpan<float>();
        if (logits.Length != output.Length)
        {
            throw new ModelPackageException(
                $"The model returned {logits.Length / n} logits per image but model.json has {ClassCount} labels.");
        }

        logits.CopyTo(output);
    }

    private void WarmUp()
    {
        var size = Manifest.Input.Size;
        var logits = Logits(new float[2 * size], 2);
        if (logits.Any(v => !float.IsFinite(v)))
        {
            throw new ModelPackageException("The model returned non-finite logits on a blank image.");
        }
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();

    public void Dispose() => _session.Dispose();
}
