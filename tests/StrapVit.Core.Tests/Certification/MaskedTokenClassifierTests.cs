using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Certification;
using StrapVit.Core.Datasets;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Certification;

/// <summary>Masked forwards on the default model: dropping tokens, replacing them, and the certificate end to end.</summary>
public sealed class MaskedTokenClassifierTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly ModelPackage _package = ModelPackage.Load(RepoPaths.StemModel);
    private readonly OnnxSessionFactory _sessions = new(Cpu, NullLogger<OnnxSessionFactory>.Instance);
    private readonly TokenSpaceModel _model;
    private readonly VitClassifier _classifier;

    public MaskedTokenClassifierTests()
    {
        _model = new TokenSpaceModel(_package, _sessions);
        _classifier = new VitClassifier(_package, _sessions, Cpu);
    }

    private static float[] Image(int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, 28 * 28).Select(_ => (float)rng.NextDouble()).ToArray();
    }

    [Fact]
    public void The_default_encoder_takes_a_shorter_sequence_so_masked_tokens_are_dropped()
    {
        var views = new MaskedTokenClassifier(_model, null);

        Assert.Equal(MaskingMethod.Drop, views.Method);
        Assert.Equal("drop", views.MethodName);
    }

    [Fact]
    public void A_view_hiding_nothing_is_the_plain_forward()
    {
        var pixels = Image(1);
        var views = new MaskedTokenClassifier(_model, null);

        var masked = views.Logits(_model.Embed(pixels, 1), [Array.Empty<int>()]);
        var plain = _classifier.Logits(pixels, 1);

        Assert.Equal(plain.Length, masked.Length);
        for (var i = 0; i < plain.Length; i++) Assert.Equal(plain[i], masked[i], 1e-4);
    }

    [Fact]
    public void Dropping_removes_tokens_from_attention_the_encoder_has_no_positions_of_its_own()
    {
        // Dropping is exact key masking only if the encoder reads no position after the tokens tensor: then the kept
        // patch tokens are a set, and any order of them gives the same logits.
        var tokens = _model.Embed(Image(2), 1);
        var views = new MaskedTokenClassifier(_model, null);
        var hidden = new[] { 8, 9, 10, 15, 16, 17 };
        var kept = views.Kept(hidden);
        var shuffled = kept.Take(1).Concat(kept.Skip(1).Reverse()).ToArray();
        var d = _model.Dim;
        var reordered = new float[shuffled.Length * d];
        for (var j = 0; j < shuffled.Length; j++) Array.Copy(tokens, shuffled[j] * d, reordered, j * d, d);

        var dropped = views.Logits(tokens, [hidden]);
        var permuted = _model.Encode(reordered, 1, shuffled.Length);

        Assert.Equal(50 - 6, kept.Length);
        Assert.Equal(0, kept[0]);
        for (var i = 0; i < dropped.Length; i++) Assert.Equal(dropped[i], permuted[i], 1e-4);
    }

    [Fact]
    public void Views_batched_by_length_equal_views_run_one_at_a_time()
    {
        var tokens = _model.Embed(Image(3), 1);
        var views = new MaskedTokenClassifier(_model, null, batchSize: 2);
        IReadOnlyCollection<int>[] hidden = [[0, 1, 7, 8], [], [20], [30, 31, 32, 33], [48]];

        var batched = views.Logits(tokens, hidden);

        for (var v = 0; v < hidden.Length; v++)
        {
            var alone = views.Logits(tokens, [hidden[v]]);
            for (var c = 0; c < 10; c++) Assert.Equal(alone[c], batched[(v * 10) + c], 1e-4);
        }
    }

    [Fact]
    public void Replacing_writes_the_clean_mean_token_into_each_hidden_position()
    {
        var center = Enumerable.Range(0, 50).Select(k => Enumerable.Range(0, _model.Dim).Select(c => (float)Math.Sin(k + c)).ToArray()).ToArray();
        var views = new MaskedTokenClassifier(_model, center, choice: MaskingChoice.Replace);
        var tokens = _model.Embed(Image(4), 1);
        var expected = (float[])tokens.Clone();
        foreach (var p in new[] { 3, 40 }) Array.Copy(center[p + 1], 0, expected, (p + 1) * _model.Dim, _model.Dim);

        var replaced = views.Logits(tokens, [new[] { 3, 40 }]);
        var manual = _model.Encode(expected, 1);

        Assert.Equal(MaskingMethod.Replace, views.Method);
        for (var i = 0; i < manual.Length; i++) Assert.Equal(manual[i], replaced[i], 1e-4);
    }

    [Fact]
    public void Forcing_replace_without_a_reference_is_a_clear_error()
    {
        var ex = Assert.Throws<CertificationException>(() => new MaskedTokenClassifier(_model, null, choice: MaskingChoice.Replace));

        Assert.Contains("no clean token reference", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_patch_inside_a_mask_leaves_every_view_hiding_that_mask_unchanged()
    {
        // The soundness of the certificate rests on this: the kept tokens of a view hiding the patch's mask do not
        // read a single patch pixel (receptive field included).
        var certifier = new PatchCertifier(new MaskedTokenClassifier(_model, null), new CertifyOptions());
        var masks = certifier.MasksFor(4);
        var clean = Image(5);
        var patched = (float[])clean.Clone();
        const int X = 11, Y = 7;
        for (var y = Y; y < Y + 4; y++)
        {
            for (var x = X; x < X + 4; x++) patched[(y * 28) + x] = 1f - patched[(y * 28) + x];
        }

        // Rows 7..10 reach token rows 1..2 (token 1 reads 3..8, token 2 reads 7..12); columns 11..14 reach 2..3.
        var holder = Enumerable.Range(0, masks.Count).First(i => new[] { 8 + 2, 8 + 3, 15 + 2, 15 + 3 }.All(masks.Masks[i].Contains));
        var views = certifier.Classifier;
        var hidden = Enumerable.Range(0, masks.Count).Select(j => (IReadOnlyCollection<int>)masks.Masks[holder].Union(masks.Masks[j]).ToArray()).ToArray();

        var a = views.Logits(_model.Embed(clean, 1), hidden);
        var b = views.Logits(_model.Embed(patched, 1), hidden);
        var other = views.Logits(_model.Embed(patched, 1), [Array.Empty<int>()]);
        var plain = views.Logits(_model.Embed(clean, 1), [Array.Empty<int>()]);

        Assert.Equal(a, b);
        Assert.NotEqual(plain, other);
    }

    [Fact]
    public void A_certified_sample_keeps_its_label_with_a_patch_anywhere()
    {
        using var setup = CertifyLoader.Create(_package, _sessions, new CertifyOptions(), null);
        var certifier = setup.Certifier!;
        var images = IdxDataset.Load(RepoPaths.Sample("fashion-mnist/test-1000-images-idx3-ubyte.gz"), RepoPaths.Sample("fashion-mnist/test-1000-labels-idx1-ubyte.gz"));
        var index = Enumerable.Range(0, 40).First(i => certifier.Certify(images.Image(i).Data, 4).Report.Certified);
        var clean = images.Image(index).Data.ToArray();
        var label = certifier.Certify(clean, 4).Label;
        var rng = new Random(9);

        for (var trial = 0; trial < 12; trial++)
        {
            var patched = (float[])clean.Clone();
            int x = rng.Next(25), y = rng.Next(25);
            for (var yy = y; yy < y + 4; yy++)
            {
                for (var xx = x; xx < x + 4; xx++) patched[(yy * 28) + xx] = rng.Next(2);
            }

            Assert.Equal(label, certifier.Certify(patched, 4).Label);
        }
    }

    public void Dispose()
    {
        _model.Dispose();
        _classifier.Dispose();
    }
}
