using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>
/// <see cref="BankSettings.FprFolds"/> on the embedded model: leave-one-out scores understate what fresh clean images
/// score, and the cross-fitted calibration rate makes up for it. Measured against images that no calibration saw.
/// </summary>
public sealed class FreshRateTests(DefaultModelTokens fixture) : IClassFixture<DefaultModelTokens>
{
    private const double Target = 0.30;

    [Fact]
    public void Thresholds_set_for_fresh_images_flag_about_the_target_share_of_fresh_images()
    {
        // As the shipped calibration is made: the 500 calibration images and a bank of 8,192; fresh: the 1,000 test images.
        var path = RepoPaths.Sample(Path.Combine("fashion-mnist", "calib-500-images-idx3-ubyte.gz"));
        var set = IdxDataset.Load(path, IdxDataset.LabelsBeside(path));
        var calibration = Enumerable.Range(0, set.Count).Select(set.Image).ToList();
        var fresh = Enumerable.Range(0, fixture.TestSet.Count).Select(fixture.TestSet.Image).ToList();
        var plain = fixture.Reference;   // the shipped calibration: these 500 images, without folds
        var crossFitted = Calibrate(calibration, folds: 3);   // 3 folds, not the 5 measured in docs: a test run in Debug builds must stay short
        Assert.Equal(500, calibration.Count);

        Assert.Null(plain.BankFreshRate);
        Assert.Null(plain.BankNominalRate);
        Assert.Equal(Target, plain.BankFalsePositiveRate, 2);                 // leave-one-out: the target on its own images
        var nominal = crossFitted.BankNominalRate!.Value;
        Assert.InRange(nominal, 0.15, Target);
        Assert.Equal(0, Math.Round((Target - nominal) / 0.005, 6) % 1);        // on the grid of 0.005 steps
        Assert.True(crossFitted.BankFreshRate <= Target);
        Assert.True(crossFitted.BankThreshold!.Zip(plain.BankThreshold!).All(p => p.First >= p.Second), "a lower rate gives thresholds no lower");

        var plainFresh = FlaggedShare(plain, fresh);
        var fittedFresh = FlaggedShare(crossFitted, fresh);
        // The bias this corrects: fresh images are flagged more often than the calibration's own.
        Assert.True(plainFresh > Target + 0.01, $"fresh images flagged {plainFresh:P1} with leave-one-out thresholds");
        Assert.True(fittedFresh < plainFresh, $"{fittedFresh:P1} against {plainFresh:P1}");
        // The estimate against images no fold saw (1,000 images: about 1.5 points of sampling error).
        Assert.InRange(fittedFresh, Target - 0.05, Target + 0.03);
        Assert.InRange(crossFitted.BankFreshRate!.Value - fittedFresh, -0.05, 0.05);
    }

    [Fact]
    public void With_fewer_than_twenty_images_a_fold_the_rate_is_taken_leave_one_out_as_without_folds()
    {
        var images = Enumerable.Range(0, (5 * BankSettings.MinImagesPerFold) - 1).Select(fixture.TestSet.Image).ToList();
        var (plain, folded) = (Calibrate(images, folds: 0), Calibrate(images, folds: 5));
        Assert.Null(folded.BankFreshRate);
        Assert.Null(folded.BankNominalRate);
        Assert.Equal(plain.BankThreshold, folded.BankThreshold);
    }

    private TokenReference Calibrate(List<ImageTensor> images, int folds) =>
        DefenseCalibration.Compute(fixture.Package, fixture.Model, images, 1.0, 16, 0.99,
            new BankSettings(FalsePositiveRate: Target, FprFolds: folds)).Tokens!;

    /// <summary>The share of <paramref name="images"/> with a token over its bank threshold, scored against the whole bank.</summary>
    private double FlaggedShare(TokenReference reference, List<ImageTensor> images)
    {
        var model = fixture.Model;
        var tokens = model.Embed(images.SelectMany(image => image.Data.ToArray()).ToArray(), images.Count);
        int t = model.TokenCount, d = model.Dim, first = model.FirstPatchToken;
        var flagged = 0;
        for (var i = 0; i < images.Count; i++)
        {
            var scores = new double[t];
            reference.Score(tokens.AsSpan(i * t * d, t * d), scores, TokenScore.Knn, first);
            if (Enumerable.Range(first, t - first).Any(k => scores[k] > reference.BankThreshold![k])) flagged++;
        }

        return flagged / (double)images.Count;
    }
}
