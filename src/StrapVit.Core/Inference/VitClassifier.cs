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
    private static readonly string[] InputNames = [ForwardGraph.PixelInput];
    private static readonly string[] OutputNames = [ForwardGraph.LogitsOutput];

    private readonly OnnxRunner _session;
    private readonly int _maxBatch;

    /// <exception cref="ModelPackageException">The graph cannot be loaded or disagrees with the manifest.</exception>
    public VitClassifier(ModelPackage package, OnnxSessionFactory factory, InferenceOptions options)
        : this(package, ForwardGraph.LoadNormalized(package), factory, options)
    {
    }

    /// <summary>The classifier over an already loaded normalized forward graph, which the factory may rewrite in place (shared weights).</summary>
    /// <exception cref="ModelPackageException">The graph cannot be loaded or disagrees with the manifest.</exception>
    public VitClassifier(ModelPackage package, global::Onnx.ModelProto forward, OnnxSessionFactory factory, InferenceOptions options)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentNullException.ThrowIfNull(factory);
        ArgumentNullException.ThrowIfNull(options);
        Package = package;
        _maxBatch = Math.Max(1, options.MaxBatchSize);
        try
        {
            FusedAttentionBlocks = options.FuseAttention ? AttentionFusion.Optimize(forward) : 0;
            _session = factory.Create(forward, "classifier");
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

    /// <summary>Self-attention blocks of the forward graph that run as one fused operator (<see cref="AttentionFusion"/>).</summary>
    public int FusedAttentionBlocks { get; }

    public ModelManifest Manifest => Package.Manifest;

    /// <summary>The execution provider the session really runs on.</summary>
    public string ExecutionProvider => _session.ExecutionProvider;

    public int ClassCount => Manifest.Labels.Count;

    /// <summary>Logits <c>[N, K]</c> for <paramref name="batch"/> images laid out back to back in <paramref name="pixels"/>.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public float[] Logits(ReadOnlySpan<float> pixels, int batch, CancellationToken cancellationToken = default)
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
            RunChunk(pixels.Slice(start * size, n * size), n, result.AsMemory(start * k, n * k), cancellationToken);
        }

        return result;
    }

    /// <summary>Classifies one image, returning the <paramref name="topK"/> best classes.</summary>
    public Classification Classify(ImageTensor image, int topK, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        var sw = Stopwatch.StartNew();
        var logits = Logits(image.Data, 1, cancellationToken);
        var elapsed = sw.Elapsed.TotalMilliseconds;
        return new Classification(Rank(logits, topK), logits, elapsed);
    }

    /// <summary>Top-K predictions for one logits row.</summary>
    public IReadOnlyList<Prediction> Rank(ReadOnlySpan<float> logits, int topK)
    {
        var probs = Probabilities.Softmax(logits);
        return Probabilities.TopK(probs, topK).Select(i => new Prediction(i, Manifest.Labels[i], probs[i])).ToArray();
    }

    private unsafe void RunChunk(ReadOnlySpan<float> pixels, int n, Memory<float> output, CancellationToken cancellationToken)
    {
        var input = Manifest.Input;
        fixed (float* data = pixels)
        {
            using var tensor = OnnxRunner.Pinned(data, pixels.Length, [n, input.Channels, input.Height, input.Width]);
            using var logits = OnnxRunner.Output(output, [n, ClassCount]);
            using var activity = CoreActivities.OnnxRun("forward", n, _session.ExecutionProvider);
            _session.Run(InputNames, [tensor], OutputNames, [logits], cancellationToken);
        }
    }

    /// <summary>One run with ONNX Runtime's own output, so a model whose logits disagree with the labels gets a clear reason.</summary>
    private unsafe void WarmUp()
    {
        var input = Manifest.Input;
        var pixels = new float[2 * input.Size];
        fixed (float* data = pixels)
        {
            using var tensor = OnnxRunner.Pinned(data, pixels.Length, [2, input.Channels, input.Height, input.Width]);
            using var results = _session.RunAllocated(InputNames, [tensor], OutputNames);
            var logits = results[0].GetTensorDataAsSpan<float>();
            if (logits.Length != 2 * ClassCount)
            {
                throw new ModelPackageException(
                    $"The model returned {logits.Length / 2} logits per image but model.json has {ClassCount} labels.");
            }

            foreach (var v in logits)
            {
                if (!float.IsFinite(v)) throw new ModelPackageException("The model returned non-finite logits on a blank image.");
            }
        }
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();

    public void Dispose() => _session.Dispose();
}
