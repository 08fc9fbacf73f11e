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
        var configured = new DefenseOptions { MinTokens = 3, WindowPixels = 10, Profile = DefenseProfile.Light };

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
        var configuredOptions = new DefenseOptions();
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
}
