using StrapVit.Core.Defense;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Tests.Defense;

/// <summary>
/// <see cref="DefenseProfile.Light"/> on the embedded model: the configured detector without the masking check, the
/// window flagged only when a token is over its threshold.
/// </summary>
public sealed class LightProfileTests(DefaultModelTokens fixture) : IClassFixture<DefaultModelTokens>
{
    private readonly TokenSpaceModel _model = fixture.Model;
    private readonly TokenReference _reference = fixture.Reference;

    [Fact]
    public void Light_turns_the_check_off_and_keeps_every_other_setting()
    {
        var configured = new DefenseOptions { MinTokens = 3, WindowPixels = 10, WindowOnlyOverThreshold = false, Profile = DefenseProfile.Light };

        var light = configured.Resolved();

        Assert.Equal(DefenseProfile.Light, light.Profile);
        Assert.Equal(0, light.VerifyWindows);
        Assert.True(light.WindowOnlyOverThreshold);
        Assert.Equal((3, 10, TokenScore.Knn, Neutralization.Drop), (light.MinTokens, light.WindowPixels, light.Score, light.Neutralization));
        // The configured options are not changed by resolving them.
        Assert.Equal((9, false), (configured.VerifyWindows, configured.WindowOnlyOverThreshold));
    }

    [Fact]
    public void On_clean_images_light_drops_only_the_k_minimum_unless_a_token_is_over_threshold()
    {
        const int n = 40;
        var pixels = fixture.TestSet.Pixels.Take(n * 784).Select(b => b / 255f).ToArray();
        var seeds = Enumerable.Range(0, n).ToArray();
        // The defaults before session 19: K = 2, the window flagged around it as well.
        var configuredOptions = new DefenseOptions { MinTokens = 2, WindowOnlyOverThreshold = false };
        var configured = new TokenPatchDefense(_model, _reference, configuredOptions);
        var light = new TokenPatchDefense(_model, _reference, configuredOptions.Light());

        var full = configured.Run(pixels, n, DefenseMode.Mitigate, seeds);
        var lean = light.Run(pixels, n, DefenseMode.Mitigate, seeds);

        var quiet = 0;
        for (var i = 0; i < n; i++)
        {
            Assert.Null(lean[i].Report.Verification);
            Assert.NotNull(full[i].Report.Verification);
            var above = lean[i].Report.FlaggedAboveThreshold;
            Assert.Equal(full[i].Report.FlaggedAboveThreshold, above);
            if (above == 0)
            {
                // Nothing over threshold: the K strongest tokens, no window (the configured defense adds its 2x2 window).
                quiet++;
                Assert.Equal(configuredOptions.MinTokens, lean[i].Report.FlaggedTokens.Count);
                Assert.True(full[i].Report.FlaggedTokens.Count > configuredOptions.MinTokens);
                Assert.Equal(
                    full[i].Report.FlaggedTokens.Take(configuredOptions.MinTokens).Select(t => t.Index),
                    lean[i].Report.FlaggedTokens.Select(t => t.Index));
            }
            else
            {
                // Over threshold: the same tokens as the configured defense before its check.
                Assert.Equal(full[i].Report.FlaggedTokens.Select(t => t.Index), lean[i].Report.FlaggedTokens.Select(t => t.Index));
            }
        }

        // About four in five clean images have no token over threshold.
        Assert.InRange(quiet, n / 2, n);
    }

    [Fact]
    public void By_default_a_clean_image_loses_nothing_unless_a_token_is_over_threshold_and_then_its_window()
    {
        const int n = 40;
        var pixels = fixture.TestSet.Pixels.Take(n * 784).Select(b => b / 255f).ToArray();
        var results = new TokenPatchDefense(_model, _reference, new DefenseOptions()).Run(pixels, n, DefenseMode.Mitigate, Enumerable.Range(0, n).ToArray());

        var quiet = 0;
        foreach (var report in results.Select(r => r.Report))
        {
            Assert.Equal(0, report.K);
            Assert.NotNull(report.Verification);
            // Over threshold, recounted from the reported scores and thresholds.
            var over = report.FlaggedTokens.Count(t => t.Score > t.Threshold);
            Assert.Equal(report.FlaggedAboveThreshold, over);
            if (over == 0)
            {
                quiet++;
                Assert.Empty(report.FlaggedTokens);
                Assert.Empty(report.Transforms);
                continue;
            }

            // The 2x2 window around the strongest evidence is flagged whole, with every token over threshold.
            var cells = report.FlaggedTokens.Select(t => (t.Row, t.Col)).ToHashSet();
            Assert.Contains(
                from r in Enumerable.Range(0, 6) from c in Enumerable.Range(0, 6) select (r, c),
                sq => cells.Contains(sq) && cells.Contains((sq.r + 1, sq.c)) && cells.Contains((sq.r, sq.c + 1)) && cells.Contains((sq.r + 1, sq.c + 1)));
        }

        // The thresholds let about 30% of clean images have a token over them (calibration images; these are test images).
        Assert.InRange(quiet, n / 2, n - 1);
    }
}
