using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Certification;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Certification;

/// <summary>The tokens' receptive field derived from the embedding graph, checked against which tokens really move when one pixel does.</summary>
public sealed class ReceptiveFieldTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly OnnxSessionFactory _sessions = new(Cpu, NullLogger<OnnxSessionFactory>.Instance);
    private readonly TokenSpaceModel _model;

    public ReceptiveFieldTests() => _model = new TokenSpaceModel(ModelPackage.Load(RepoPaths.DefaultModel), _sessions);

    [Fact]
    public void The_default_models_local_stem_keeps_each_token_to_its_own_patch()
    {
        var field = ReceptiveField.Derive(_model.EmbeddingGraph, 4);

        // 2x2 stride-2 conv, then 2x2 stride 2 (MODEL_CARD): token j reads pixels [4j, 4j + 3] and nothing else.
        Assert.Equal(new AxisReceptiveField(0, 4, 4), field.Rows);
        Assert.Equal(new AxisReceptiveField(0, 4, 4), field.Cols);
    }

    [Fact]
    public void The_previous_models_stem_widens_each_token_to_six_pixels()
    {
        using var stem = new TokenSpaceModel(ModelPackage.Load(RepoPaths.StemModel), _sessions);

        var field = ReceptiveField.Derive(stem.EmbeddingGraph, 4);

        // 3x3 conv, padding 1, then 4x4 stride 4: token j reads pixels [4j - 1, 4j + 4].
        Assert.Equal(new AxisReceptiveField(-1, 6, 4), field.Rows);
        Assert.Equal(new AxisReceptiveField(-1, 6, 4), field.Cols);
    }

    [Theory]
    [InlineData(false, 0, 0)]
    [InlineData(false, 4, 4)]
    [InlineData(false, 7, 12)]
    [InlineData(false, 13, 8)]
    [InlineData(false, 27, 27)]
    [InlineData(true, 0, 0)]
    [InlineData(true, 4, 4)]
    [InlineData(true, 7, 12)]
    [InlineData(true, 13, 8)]
    [InlineData(true, 27, 27)]
    public void The_tokens_a_pixel_moves_are_exactly_those_whose_field_holds_it(bool stemModel, int y, int x)
    {
        using var other = stemModel ? new TokenSpaceModel(ModelPackage.Load(RepoPaths.StemModel), _sessions) : null;
        var model = other ?? _model;
        var field = ReceptiveField.Derive(model.EmbeddingGraph, 4);
        var rng = new Random((y * 28) + x);
        var clean = Enumerable.Range(0, 28 * 28).Select(_ => (float)rng.NextDouble()).ToArray();
        var moved = (float[])clean.Clone();
        moved[(y * 28) + x] = clean[(y * 28) + x] > 0.5f ? 0f : 1f;

        var a = model.Embed(clean, 1);
        var b = model.Embed(moved, 1);

        var changed = new List<int>();
        for (var p = 0; p < 49; p++)
        {
            var offset = (p + 1) * model.Dim;
            if (Enumerable.Range(0, _model.Dim).Any(c => a[offset + c] != b[offset + c])) changed.Add(p);
        }

        var (r0, r1) = field.Rows.TokensTouching(y, y, 7);
        var (c0, c1) = field.Cols.TokensTouching(x, x, 7);
        var expected = Enumerable.Range(r0, r1 - r0 + 1).SelectMany(r => Enumerable.Range(c0, c1 - c0 + 1).Select(c => (r * 7) + c)).ToList();
        Assert.Equal(expected, changed);
    }

    [Fact]
    public void A_model_without_a_stem_has_the_patch_as_its_field()
    {
        using var model = new TokenSpaceModel(ModelPackage.Load(RepoPaths.Fixture("models", "rgb-vit-32")), _sessions);

        var field = ReceptiveField.Derive(model.EmbeddingGraph, 8);

        Assert.Equal(ReceptiveField.OfPatch(8), field);
    }

    [Fact]
    public void An_op_that_mixes_positions_on_the_path_is_a_clear_error()
    {
        var embedding = _model.EmbeddingGraph.Clone();
        var graph = embedding.Graph;
        var first = graph.Node.First(n => n.Input.Contains(ForwardGraph.PixelInput));
        // Put a global pooling right after the pixels: every token would then depend on every pixel.
        first.Input[first.Input.IndexOf(ForwardGraph.PixelInput)] = "pooled";
        graph.Node.Insert(0, ForwardGraph.Node("GlobalAveragePool", [ForwardGraph.PixelInput], ["pooled"], "global_pool"));

        var ex = Assert.Throws<ModelPackageException>(() => ReceptiveField.Derive(embedding, 4));

        Assert.Contains("global_pool", ex.Message, StringComparison.Ordinal);
        Assert.Contains("GlobalAveragePool", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_stride_that_is_not_the_patch_size_is_refused()
    {
        var ex = Assert.Throws<ModelPackageException>(() => ReceptiveField.Derive(_model.EmbeddingGraph, 7));

        Assert.Contains("4x4 pixels per token", ex.Message, StringComparison.Ordinal);
    }

    public void Dispose() => _model.Dispose();
}
