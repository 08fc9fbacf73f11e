using StrapVit.Core.Defense;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Tests.Defense;

/// <summary>
/// The masking check inside the token defense on the previous default model (3x3 stem), against the defense without it and against the
/// same tokens dropped by the evaluation's oracle path (<c>RunWithFlags</c>), which runs the encoder its own way.
/// </summary>
public sealed class VerificationDefenseTests(StemModelTokens fixture) : IClassFixture<StemModelTokens>
{
    private readonly TokenSpaceModel _model = fixture.Model;
    private readonly TokenReference _reference = fixture.Reference;

    /// <summary>The first test images, each with a white-and-black 6x6 checkerboard planted at a place of its own.</summary>
    private float[] PatchedImages(int n)
    {
        var pixels = fixture.TestSet.Pixels.Take(n * 784).Select(b => b / 255f).ToArray();
        for (var i = 0; i < n; i++)
        {
            int top = (i * 7) % 22, left = (i * 11) % 22;
            for (var y = top; y < top + 6; y++)
            {
                for (var x = left; x < left + 6; x++) pixels[(i * 784) + (y * 28) + x] = (x + y) % 2;
            }
        }

        return pixels;
    }

    [Fact]
    public void The_check_keeps_the_defended_answer_or_takes_exactly_the_answer_without_its_window()
    {
        const int n = 40;
        var pixels = PatchedImages(n);
        var seeds = Enumerable.Range(0, n).ToArray();
        var options = new DefenseOptions { Neutralization = Neutralization.Drop, VerifyWindows = 2, VerifyPartners = 4 };
        var plainOptions = options.Clone();
        plainOptions.VerifyWindows = 0;
        var checkedDefense = new TokenPatchDefense(_model, _reference, options);
        var plain = new TokenPatchDefense(_model, _reference, plainOptions);

        var results = checkedDefense.Run(pixels, n, DefenseMode.Mitigate, seeds);
        var baseline = plain.Run(pixels, n, DefenseMode.Mitigate, seeds);

        var outcomes = new List<string>();
        for (var i = 0; i < n; i++)
        {
            var report = results[i].Report.Verification!;
            Assert.Null(baseline[i].Report.Verification);
            Assert.Equal((2, 4, 2, 2), (report.Windows, report.Partners, report.WindowRows, report.WindowCols));
            outcomes.Add(report.Outcome);
            if (report.Outcome == "recovered")
            {
                // Independently: the flagged tokens and the window dropped through the oracle path.
                var hidden = results[i].Report.FlaggedTokens.Select(f => f.Index).Concat(report.Window!).Distinct()
                    .Select(p => p + _model.FirstPatchToken).ToArray();
                var expected = plain.RunWithFlags(pixels.AsSpan(i * 784, 784), 1, _ => hidden, [seeds[i]]);
                Assert.Equal(4, report.Window!.Count);
                Assert.NotEqual(ArgMax(baseline[i].Logits), ArgMax(results[i].Logits));
                for (var c = 0; c < 10; c++) Assert.Equal(expected[c], results[i].Logits[c], 1e-4);
                Assert.Contains(report.Forwards, new[] { 5, 8 });
            }
            else
            {
                Assert.Equal(baseline[i].Logits, results[i].Logits);
                Assert.Null(report.Window);
                Assert.Contains(report.Forwards, report.Outcome == "agreed" ? [2] : new[] { 5, 8 });
            }
        }

        // Both paths ran on these images.
        Assert.Contains("agreed", outcomes);
        Assert.Contains("recovered", outcomes);
    }

    [Theory]
    [InlineData(0, 6, 2)]     // the flagging window's 6 px: 2 tokens of 4 px
    [InlineData(0, 0, 1)]     // no flagging window: single tokens
    [InlineData(12, 6, 3)]    // its own budget: 3x3 tokens hide any 6x6 patch
    [InlineData(10, 6, 3)]    // 2.5 tokens round away from zero
    [InlineData(3, 6, 1)]
    public void The_checks_window_side_comes_from_its_own_budget_or_the_flagging_windows(int verifyPixels, int windowPixels, int side)
    {
        var options = new DefenseOptions { VerifyWindowPixels = verifyPixels, WindowPixels = windowPixels };
        Assert.Equal(side, options.VerifyWindowTokens(4));
        Assert.Null(options.Validate());
    }

    [Fact]
    public void A_negative_check_window_budget_is_refused() =>
        Assert.Equal("Defense:VerifyWindowPixels must be >= 0.", new DefenseOptions { VerifyWindowPixels = -1 }.Validate());

    [Fact]
    public void A_wider_check_hides_3x3_windows_and_a_recovered_answer_is_the_view_without_one()
    {
        const int n = 40;
        var pixels = PatchedImages(n);
        var seeds = Enumerable.Range(0, n).ToArray();
        var options = new DefenseOptions { VerifyWindows = 3, VerifyPartners = 4, VerifyWindowPixels = 12 };
        var plainOptions = options.Clone();
        plainOptions.VerifyWindows = 0;
        var results = new TokenPatchDefense(_model, _reference, options).Run(pixels, n, DefenseMode.Mitigate, seeds);
        var plain = new TokenPatchDefense(_model, _reference, plainOptions);
        foreach (var (result, i) in results.Select((r, i) => (r, i)))
        {
            var report = result.Report.Verification!;
            Assert.Equal((3, 3), (report.WindowRows, report.WindowCols));
            Assert.Equal(2, result.Report.Window);   // the flagging window keeps its own size
            if (report.Window is { } window)
            {
                Assert.Equal(9, window.Count);
                Assert.Equal((2 * _model.GridCols) + 2, window.Max() - window.Min());   // 3 rows x 3 columns
                var hidden = result.Report.FlaggedTokens.Select(f => f.Index).Concat(window).Distinct().Select(p => p + _model.FirstPatchToken).ToArray();
                var expected = plain.RunWithFlags(pixels.AsSpan(i * 784, 784), 1, _ => hidden, [seeds[i]]);
                for (var c = 0; c < 10; c++) Assert.Equal(expected[c], result.Logits[c], 1e-4);
            }
        }

        Assert.Contains(results, r => r.Report.Verification!.Outcome == "recovered");
    }

    [Fact]
    public void The_evaluation_counts_the_checks_replaced_answers_and_how_many_are_right()
    {
        const int n = 40;
        var pixels = PatchedImages(n);
        var labels = fixture.TestSet.Labels.Take(n).Select(b => (int)b).ToArray();
        var set = new StrapVit.Core.Evaluation.EvaluationSet(pixels, labels, 784);
        var options = new DefenseOptions { VerifyWindows = 2, VerifyPartners = 4 };
        var defense = new TokenPatchDefense(_model, _reference, options);

        var score = StrapVit.Core.Evaluation.DefenseScoring.Defended(defense, set, DefenseMode.Mitigate, seed: 0);

        // Counted here from the defense's own reports, one image at a time.
        var singles = Enumerable.Range(0, n).Select(i => defense.Run(pixels.AsSpan(i * 784, 784), 1, DefenseMode.Mitigate, [i])[0]).ToArray();
        var recovered = Enumerable.Range(0, n).Where(i => singles[i].Report.Verification!.Outcome == "recovered").ToArray();
        Assert.NotEmpty(recovered);
        Assert.Equal(recovered.Length, score.CheckRecovered);
        Assert.Equal(recovered.Count(i => ArgMax(singles[i].Logits) == labels[i]), score.CheckRecoveredCorrect);

        var noCheck = options.Clone();
        noCheck.VerifyWindows = 0;
        var plain = StrapVit.Core.Evaluation.DefenseScoring.Defended(new TokenPatchDefense(_model, _reference, noCheck), set, DefenseMode.Mitigate, seed: 0);
        Assert.Null(plain.CheckRecovered);
        Assert.Null(plain.CheckRecoveredCorrect);
    }

    private static int ArgMax(float[] v) => Array.IndexOf(v, v.Max());
}
