using Onnx;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Core.Defense;

/// <summary>
/// Gradient graphs of the two halves of the split model, for an attacker who differentiates through the token
/// defense: the encoder's cross-entropy/VJP with respect to the tokens, and the embedding's VJP with respect to the
/// pixels. The gradient builder wants an image-shaped input and an <c>[N, K]</c> output, so the encoder is given a
/// <c>[N, 1, T, D]</c> input reshaped to tokens and the embedding's <c>[N, T, D]</c> output is flattened to
/// <c>[N, T·D]</c>; both reshapes are exact.
/// </summary>
public sealed class TokenGradients : IDisposable
{
    private const string TokenImage = "token_image";
    private const string FlatTokens = "tokens_flat";

    private readonly Dictionary<int, GradientRunner> _shorter = [];
    private readonly ModelProto _encoderGraph;
    private readonly OnnxSessionFactory _sessions;

    private TokenGradients(GradientRunner encoder, GradientRunner embedding, ModelProto encoderGraph, OnnxSessionFactory sessions)
    {
        Encoder = encoder;
        Embedding = embedding;
        _encoderGraph = encoderGraph;
        _sessions = sessions;
    }

    /// <summary>Encoder: input <c>[N, 1, T, D]</c> tokens, output logits.</summary>
    public GradientRunner Encoder { get; }

    /// <summary>Embedding: input pixels, output <c>[N, T·D]</c> tokens (use its VJP).</summary>
    public GradientRunner Embedding { get; }

    public static TokenGradients Create(ModelPackage package, TokenSpaceModel model, OnnxSessionFactory sessions)
    {
        var split = Split(package);
        var encoderRunner = CreateEncoder(split.Encoder, model.TokenCount, model.Dim, sessions);
        try
        {
            return new TokenGradients(encoderRunner, EmbeddingVjp(split.Embedding, model.TokenCount, model.Dim, sessions), split.Encoder, sessions);
        }
        catch
        {
            encoderRunner.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The encoder's runners for views of <paramref name="tokens"/> tokens (the class token and the patch tokens a view
    /// keeps, in order): built on first use and kept until disposal; the full length is <see cref="Encoder"/> itself.
    /// Needs a model whose encoder accepts shorter sequences (<see cref="TokenSpaceModel.AcceptsShorterSequences"/>).
    /// </summary>
    public GradientRunner EncoderFor(int tokens)
    {
        // Encoder takes [N, 1, T, D]: its height is the full token count, its width the token width.
        if (tokens == Encoder.Height) return Encoder;
        lock (_shorter)
        {
            if (!_shorter.TryGetValue(tokens, out var runner))
            {
                runner = CreateEncoder(_encoderGraph, tokens, Encoder.Width, _sessions);
                _shorter[tokens] = runner;
            }

            return runner;
        }
    }

    /// <summary>
    /// Cross-entropy and VJP runners of an encoder graph taking <paramref name="t"/> tokens of width
    /// <paramref name="d"/>, fed as <c>[N, 1, t, d]</c> (a shorter <paramref name="t"/> for token-dropping views).
    /// </summary>
    internal static GradientRunner CreateEncoder(ModelProto encoder, int t, int d, OnnxSessionFactory sessions)
    {
        var builder = new GradientGraphBuilder();
        var wrapped = WrapEncoder(encoder, t, d);
        return GradientRunner.Create(
            builder.Build(wrapped, GradientObjective.CrossEntropy),
            builder.Build(wrapped, GradientObjective.Vjp),
            sessions);
    }

    /// <summary>The embedding's VJP alone (pixels to <c>[N, T·D]</c> tokens), for attackers that bring their own encoder gradient.</summary>
    public static GradientRunner CreateEmbeddingVjp(ModelPackage package, TokenSpaceModel model, OnnxSessionFactory sessions) =>
        EmbeddingVjp(Split(package).Embedding, model.TokenCount, model.Dim, sessions);

    private static SplitGraphs Split(ModelPackage package)
    {
        var tokens = package.Manifest.Tokens ?? throw new ModelPackageException("model.json has no 'tokens' entry.");
        return TokenGraphSplitter.Split(ForwardGraph.LoadNormalized(package), tokens.Tensor);
    }

    // The embedding has no classes: only its VJP graph exists.
    private static GradientRunner EmbeddingVjp(ModelProto embedding, int t, int d, OnnxSessionFactory sessions) =>
        GradientRunner.CreateVjpOnly(new GradientGraphBuilder().Build(WrapEmbedding(embedding, t, d), GradientObjective.Vjp), sessions);

    private static ModelProto WrapEncoder(ModelProto encoder, int t, int d)
    {
        var model = encoder.Clone();
        var graph = model.Graph;
        var shape = "strapvit_token_shape";
        graph.Initializer.Add(OnnxProto.Int64Tensor(shape, [3], [-1, t, d]));
        graph.Node.Insert(0, ForwardGraph.Node("Reshape", [TokenImage, shape], [TokenGraphSplitter.TokensName], "strapvit_token_image_to_tokens"));
        graph.Input.Clear();
        graph.Input.Add(OnnxProto.TensorInfo(TokenImage, OnnxProto.Float, ["N", 1, t, d]));
        return model;
    }

    private static ModelProto WrapEmbedding(ModelProto embedding, int t, int d)
    {
        var model = embedding.Clone();
        var graph = model.Graph;
        var shape = "strapvit_flat_shape";
        graph.Initializer.Add(OnnxProto.Int64Tensor(shape, [2], [-1, (long)t * d]));
        graph.Node.Add(ForwardGraph.Node("Reshape", [TokenGraphSplitter.TokensName, shape], [FlatTokens], "strapvit_tokens_flatten"));
        graph.Output.Clear();
        graph.Output.Add(OnnxProto.TensorInfo(FlatTokens, OnnxProto.Float, ["N", (long)t * d]));
        return model;
    }

    public void Dispose()
    {
        Encoder.Dispose();
        Embedding.Dispose();
        lock (_shorter)
        {
            foreach (var runner in _shorter.Values) runner.Dispose();
            _shorter.Clear();
        }
    }
}
