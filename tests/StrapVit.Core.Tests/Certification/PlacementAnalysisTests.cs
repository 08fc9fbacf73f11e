using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Attacks;
using StrapVit.Core.Certification;
using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Certification;

/// <summary>
/// Where a patch can change certified mode's answer (<see cref="PlacementAnalysis"/>), on the embedded model and real
/// test images, 6x6 patches and the service's mask set.
/// </summary>
public sealed class PlacementAnalysisTests : IDisposable
{
    private const int Patch = 6;
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly ModelPackage _package = ModelPackage.Load(RepoPaths.DefaultModel);
    private readonly OnnxSessionFactory _sessions = new(Cpu, NullLogger<OnnxSessionFactory>.Instance);
    private readonly TokenSpaceModel _model;
    private readonly PatchCertifier _certifier;
    private readonly MaskSet _masks;
    private readonly IdxDataset _images;

    public PlacementAnalysisTests()
    {
        _model = new TokenSpaceModel(_package, _sessions);
        _certifier = new PatchCertifier(new MaskedTokenClassifier(_model, null), new CertifyOptions());
        _masks = _certifier.MasksFor(Patch);
        var path = RepoPaths.Sample(Path.Combine("fashion-mnist", "test-1000-images-idx3-ubyte.gz"));
        _images = IdxDataset.Load(path, IdxDataset.LabelsBeside(path));
    }

    public void Dispose() => _model.Dispose();

    /// <summary>The first test image answered right and certified (or not, as asked) at 6x6.</summary>
    private (float[] Pixels, int Label) First(bool certified)
    {
        for (var i = 0; i < 100; i++)
        {
            var pixels = _images.Image(i).Data;
            var answer = _certifier.Certify(pixels, _masks);
            if (answer.Label == _images.Labels[i] && answer.Report.Certified == certified) return (pixels, _images.Labels[i]);
        }

        throw new InvalidOperationException("no such image among the first 100");
    }

    [Fact]
    public void A_certified_image_has_every_mask_sound_and_no_vulnerable_placement()
    {
        var (pixels, label) = First(certified: true);

        var sound = PlacementAnalysis.SoundMasks(_certifier.Classifier, _masks, pixels, label);

        Assert.All(sound, Assert.True);
        Assert.Empty(PlacementAnalysis.Vulnerable(_masks, _certifier.Field, 28, 28, sound));
    }

    [Fact]
    public void An_uncertified_image_has_an_unsound_mask_and_only_placements_no_sound_mask_covers_are_vulnerable()
    {
        var (pixels, label) = First(certified: false);

        var sound = PlacementAnalysis.SoundMasks(_certifier.Classifier, _masks, pixels, label);
        var vulnerable = PlacementAnalysis.Vulnerable(_masks, _certifier.Field, 28, 28, sound);

        Assert.Contains(false, sound);
        Assert.NotEmpty(vulnerable);
        var set = vulnerable.Select(p => (p.X, p.Y)).ToHashSet();
        for (var y = 0; y <= 28 - Patch; y++)
        {
            for (var x = 0; x <= 28 - Patch; x++)
            {
                var covering = PlacementAnalysis.Covering(_masks, _certifier.Field, x, y);
                Assert.NotEmpty(covering);   // the cover property of the mask set
                Assert.Equal(!covering.Any(m => sound[m]), set.Contains((x, y)));
            }
        }
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(11, 7)]
    [InlineData(13, 14)]
    [InlineData(22, 22)]
    public void The_covering_masks_are_exactly_those_whose_view_never_sees_the_patch(int x, int y)
    {
        // Checked on the model itself: a one-mask view's logits stay bit for bit the same under any change of the
        // patch's pixels exactly when the mask hides every token those pixels reach.
        var clean = _images.Image(3).Data;
        var patched = (float[])clean.Clone();
        for (var yy = y; yy < y + Patch; yy++)
        {
            for (var xx = x; xx < x + Patch; xx++) patched[(yy * 28) + xx] = 1f - patched[(yy * 28) + xx];
        }

        var views = _certifier.Classifier;
        var a = views.Logits(_model.Embed(clean, 1), _masks.Masks);
        var b = views.Logits(_model.Embed(patched, 1), _masks.Masks);
        var classes = views.Classes;
        var unchanged = Enumerable.Range(0, _masks.Count)
            .Where(m => a.AsSpan(m * classes, classes).SequenceEqual(b.AsSpan(m * classes, classes))).ToArray();

        Assert.Equal(unchanged, PlacementAnalysis.Covering(_masks, _certifier.Field, x, y));
    }

    [Fact]
    public void A_patch_inside_a_sound_mask_of_an_uncertified_image_does_not_change_the_answer()
    {
        // The placement argument: PatchCleanser's Theorem 1 for one placement. Random patches, and one optimised on
        // the certify surrogate, at every placement some sound mask covers on an image that is not certified.
        (float[] Pixels, int Label, bool[] Sound)? found = null;
        for (var i = 0; i < 100 && found is null; i++)
        {
            var pixels = _images.Image(i).Data;
            var answer = _certifier.Certify(pixels, _masks);
            if (answer.Label != _images.Labels[i] || answer.Report.Certified) continue;
            var sound = PlacementAnalysis.SoundMasks(_certifier.Classifier, _masks, pixels, _images.Labels[i]);
            if (sound.Count(s => s) >= 3) found = (pixels, _images.Labels[i], sound);
        }

        var (clean, label, soundMasks) = found ?? throw new InvalidOperationException("no uncertified image with sound masks among the first 100");
        var vulnerable = PlacementAnalysis.Vulnerable(_masks, _certifier.Field, 28, 28, soundMasks).Select(p => (p.X, p.Y)).ToHashSet();
        var safe = Enumerable.Range(0, 23 * 23).Select(p => (X: p % 23, Y: p / 23)).Where(p => !vulnerable.Contains(p)).ToArray();
        Assert.NotEmpty(safe);
        var rng = new Random(5);
        foreach (var (x, y) in safe.OrderBy(_ => rng.Next()).Take(12))
        {
            var patched = (float[])clean.Clone();
            for (var yy = y; yy < y + Patch; yy++)
            {
                for (var xx = x; xx < x + Patch; xx++) patched[(yy * 28) + xx] = rng.Next(2);
            }

            Assert.Equal(label, _certifier.Certify(patched, _masks).Label);
        }

        using var gradients = TokenGradients.Create(_package, _model, _sessions);
        using var surrogate = new CertifySurrogateClassifier(_package, _certifier.Classifier, _masks, gradients.Embedding, _sessions);
        var (sx, sy) = safe[safe.Length / 2];
        var attacked = new PatchAttack(Patch, sx, sy, steps: 50).Run(surrogate, clean, 1, AttackGoal.Untargeted([label]), 1);
        Assert.Equal(label, _certifier.Certify(attacked.QuantizedOf(0), _masks).Label);
    }
}
