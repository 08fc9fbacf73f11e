using StrapVit.Core.Defense;
using StrapVit.Core.Tests.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

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
        var options = new DefenseOptions { Neutralization = Neutralization.Drop, VerifyWindows = 2, VerifyPartners = 4, VerifyGroup = 1 };
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
            // What the evaluation's losses read: each first-round window hidden on its own (groups of 1) and its view's
            // answer, which the oracle path gives independently with the flagged tokens and that window dropped.
            Assert.Equal(2, report.FirstRound!.Count);
            foreach (var (cells, answer, alone) in report.FirstRound)
            {
                Assert.True(alone);
                Assert.Equal(4, cells.Length);
                var hiddenView = results[i].Report.FlaggedTokens.Select(f => f.Index).Concat(cells).Distinct().Select(p => p + _model.FirstPatchToken).ToArray();
                Assert.Equal(ArgMax(plain.RunWithFlags(pixels.AsSpan(i * 784, 784), 1, _ => hiddenView, [seeds[i]])), answer);
            }

            if (report.Outcome == "recovered")
            {
                // Independently: the flagged tokens and the window dropped through the oracle path.
                var hidden = results[i].Report.FlaggedTokens.Select(f => f.Index).Concat(report.Window!).Distinct()
                    .Select(p => p + _model.FirstPatchToken).ToArray();
                var expected = plain.RunWithFlags(pixels.AsSpan(i * 784, 784), 1, _ => hidden, [seeds[i]]);
                Assert.Equal(4, report.Window!.Count);
                Assert.NotEqual(ArgMax(baseline[i].Logits), ArgMax(results[i].Logits));
                for (var c = 0; c < 10; c++) Assert.Equal(expected[c], results[i].Logits[c], 1e-4);
                // 2 one-window views, then the passing window's 3 partners, and at most the other window's 3.
                Assert.InRange(report.Forwards, 5, 8);
            }
            else
            {
                Assert.Equal(baseline[i].Logits, results[i].Logits);
                Assert.Null(report.Window);
                // A kept answer: each disagreeing window stops at its first partner view that answers otherwise.
                if (report.Outcome == "agreed") Assert.Equal(2, report.Forwards);
                else Assert.InRange(report.Forwards, 3, 8);
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
        Assert.Equal(singles.Average(r => r.Report.Verification!.Forwards), score.CheckForwards!.Value, 9);

        var noCheck = options.Clone();
        noCheck.VerifyWindows = 0;
        var plain = StrapVit.Core.Evaluation.DefenseScoring.Defended(new TokenPatchDefense(_model, _reference, noCheck), set, DefenseMode.Mitigate, seed: 0);
        Assert.Null(plain.CheckRecovered);
        Assert.Null(plain.CheckRecoveredCorrect);
        Assert.Null(plain.CheckForwards);
    }

    /// <summary>
    /// The check computed here view by view through the oracle path, PatchCleanser's rule written out: every one-window
    /// view, and every pair for a disagreeing window. The defense's grouped first round and staged second round must
    /// reach the same outcome, window and logits, except where a group's view kept the defended answer while one of its
    /// windows alone would not (which grouping accepts, and which is checked here on its own view).
    /// </summary>
    [Theory]
    [InlineData(1, 0.0, VerifyRule.Unanimous)]
    [InlineData(2, 0.0, VerifyRule.Unanimous)]
    [InlineData(4, 0.0, VerifyRule.Unanimous)]
    [InlineData(1, 2.0, VerifyRule.Unanimous)]
    [InlineData(3, 2.0, VerifyRule.Unanimous)]
    [InlineData(1, 0.0, VerifyRule.Veto)]
    [InlineData(3, 0.0, VerifyRule.Veto)]
    [InlineData(3, 2.0, VerifyRule.Veto)]
    [InlineData(1, 2.0, VerifyRule.Veto)]
    [InlineData(1, 0.0, VerifyRule.Unanimous, true)]
    [InlineData(3, 0.0, VerifyRule.Unanimous, true)]
    [InlineData(1, 2.0, VerifyRule.Unanimous, true)]
    [InlineData(1, 0.0, VerifyRule.Unanimous, true, true)]
    [InlineData(3, 2.0, VerifyRule.Unanimous, true, true)]
    public void Grouped_and_staged_the_check_decides_as_the_rule_computed_view_by_view(int group, double margin, VerifyRule rule, bool complete = false, bool unflagged = false)
    {
        const int n = 30, windows = 4, partnerCount = 6;
        var pixels = PatchedImages(n);
        var seeds = Enumerable.Range(0, n).ToArray();
        var options = new DefenseOptions { VerifyWindows = windows, VerifyPartners = partnerCount, VerifyGroup = group, VerifyMargin = margin, VerifyRule = rule, VerifyComplete = complete, VerifyCompleteUnflagged = unflagged };
        // Unflagged completion acts only where nothing is over threshold: here no token is, whatever the checkerboard does.
        if (unflagged) options.ThresholdScale = 1e6;
        var plainOptions = options.Clone();
        plainOptions.VerifyWindows = 0;
        var results = new TokenPatchDefense(_model, _reference, options).Run(pixels, n, DefenseMode.Mitigate, seeds);
        var plain = new TokenPatchDefense(_model, _reference, plainOptions);
        var baseline = plain.Run(pixels, n, DefenseMode.Mitigate, seeds);
        int first = _model.FirstPatchToken, masked = 0, recovered = 0, tightened = 0, completed = 0, ruled = 0, completedUnflagged = 0;
        for (var i = 0; i < n; i++)
        {
            var flagged = results[i].Report.FlaggedTokens.Select(f => f.Index + first).ToArray();
            float[] View(params int[][] hide) =>
                plain.RunWithFlags(pixels.AsSpan(i * 784, 784), 1, _ => flagged.Concat(hide.SelectMany(w => w)).Distinct().ToArray(), [seeds[i]]);
            var ratios = results[i].Scores.Select((s, k) => s / results[i].Thresholds[k]).ToArray();
            var cells = WindowVerification.Candidates(ratios, _model.GridRows, _model.GridCols, 2, 2, partnerCount)
                .Select(w => w.Select(c => c + first).ToArray()).ToArray();
            var defended = ArgMax(baseline[i].Logits);
            var one = Enumerable.Range(0, windows).Select(m => View(cells[m])).ToArray();
            // PatchCleanser's rule, each second-round view holding only with the window's answer by at least the margin;
            // by veto, each view holding unless the defended answer's logit comes within the margin of its best other.
            int Chosen(double needed) => ChosenBy(rule, needed);
            int ChosenBy(VerifyRule by, double needed)
            {
                foreach (var m in Enumerable.Range(0, windows).Where(m => ArgMax(one[m]) != defended))
                {
                    bool Held(float[] v) => by == VerifyRule.Veto
                        ? Enumerable.Range(0, v.Length).Where(c => c != defended).Max(c => v[c]) - v[defended] > needed
                        : Holds(v, ArgMax(one[m]), needed);
                    if (Enumerable.Range(0, cells.Length).All(j => j == m || Held(View(cells[m], cells[j])))) return m;
                }

                return -1;
            }

            var chosen = Chosen(margin);
            if (rule == VerifyRule.Veto)
            {
                // Pair views the two rules read differently: a third class, or the window's answer by less than the margin.
                foreach (var m in Enumerable.Range(0, windows).Where(m => ArgMax(one[m]) != defended))
                {
                    ruled += Enumerable.Range(0, cells.Length).Where(j => j != m).Select(j => View(cells[m], cells[j]))
                        .Count(v => (Enumerable.Range(0, v.Length).Where(c => c != defended).Max(c => v[c]) - v[defended] > margin) != Holds(v, ArgMax(one[m]), margin));
                }
            }
            if (margin > 0 && Chosen(0) >= 0 && chosen != Chosen(0)) tightened++;

            var report = results[i].Report.Verification!;
            // The first round as recorded for the evaluation's losses: a window hidden alone answers its own view (computed
            // here), one whose group's view kept the defended answer answers that.
            var recorded = report.FirstRound!;
            Assert.Equal(cells.Take(windows).Select(w => w.Select(c => c - first).ToArray()), recorded.Select(w => w.Cells));
            for (var m = 0; m < windows; m++) Assert.Equal(recorded[m].Alone ? ArgMax(one[m]) : defended, recorded[m].Answer);
            if (group == 1) Assert.All(recorded, w => Assert.True(w.Alone));
            var expectedOutcome = chosen >= 0 ? "recovered" : one.All(v => ArgMax(v) == defended) ? "agreed" : "kept";
            // Completion, written out: tokens over threshold from the report's own scores, neighbours by row and column.
            var overCells = results[i].Report.FlaggedTokens.Where(f => f.Score > f.Threshold).Select(f => (f.Row, f.Col)).ToArray();
            if (complete && expectedOutcome == "kept" && overCells.Length > 0)
            {
                chosen = Enumerable.Range(0, windows).Where(m => ArgMax(one[m]) != defended).FirstOrDefault(m =>
                    cells[m].Any(c => overCells.Any(o => Math.Abs(((c - first) / _model.GridCols) - o.Row) <= 1 && Math.Abs(((c - first) % _model.GridCols) - o.Col) <= 1))
                    && Holds(one[m], ArgMax(one[m]), margin), -1);
                if (chosen >= 0) expectedOutcome = "completed";
            }
            else if (complete && unflagged && expectedOutcome == "kept")
            {
                // Nothing over threshold: the first disagreeing window anywhere whose own view gives its answer by the margin.
                chosen = Enumerable.Range(0, windows).Where(m => ArgMax(one[m]) != defended).FirstOrDefault(m => Holds(one[m], ArgMax(one[m]), margin), -1);
                if (chosen >= 0)
                {
                    expectedOutcome = "completed";
                    completedUnflagged++;
                }
            }
            if (report.Outcome != expectedOutcome || (chosen >= 0 && !report.Window!.SequenceEqual(cells[chosen].Select(c => c - first))))
            {
                // Only a group whose view kept the defended answer may have hidden a disagreeing window.
                Assert.True(group > 1, $"image {i}: {report.Outcome}, expected {expectedOutcome}");
                var hiddenBy = Enumerable.Range(0, windows).Chunk(group)
                    .Where(g => g.Any(m => ArgMax(one[m]) != defended) && ArgMax(View(g.Select(m => cells[m]).ToArray())) == defended);
                Assert.NotEmpty(hiddenBy);
                masked++;
                continue;
            }

            var expected = chosen >= 0 ? one[chosen] : baseline[i].Logits;
            for (var c = 0; c < 10; c++) Assert.Equal(expected[c], results[i].Logits[c], 1e-4);
            if (expectedOutcome == "recovered") recovered++;
            if (expectedOutcome == "completed") completed++;
            // First round: one view per group, then one per window of each group whose view changed the answer.
            var chunks = Enumerable.Range(0, windows).Chunk(group).ToArray();
            var firstRound = chunks.Length + (group == 1 ? 0 : chunks.Where(g => ArgMax(View(g.Select(m => cells[m]).ToArray())) != defended).Sum(g => g.Length));
            if (report.Outcome == "agreed") Assert.Equal(firstRound, report.Forwards);
            else Assert.InRange(report.Forwards, firstRound + 1, firstRound + (windows * (partnerCount - 1)));
        }

        Assert.True(recovered > 0, "no image exercised the second round");
        if (margin > 0 && rule == VerifyRule.Unanimous) Assert.True(tightened > 0, "the margin changed no decision");
        if (complete && group == 1 && margin == 0) Assert.True(completed > 0, "no image was completed");
        if (unflagged && group == 1 && margin == 0) Assert.True(completedUnflagged > 0, "no image with nothing over threshold was completed");
        if (rule == VerifyRule.Veto && margin > 0) Assert.True(ruled > 0, "no pair view that the two rules read differently");
        Assert.True(masked <= n / 5, $"{masked} of {n} decisions changed by grouping");
    }

    [Fact]
    public void A_check_group_outside_1_to_16_is_refused()
    {
        Assert.Equal("Defense:VerifyGroup must be in [1, 16].", new DefenseOptions { VerifyGroup = 0 }.Validate());
        Assert.Equal("Defense:VerifyGroup must be in [1, 16].", new DefenseOptions { VerifyGroup = 17 }.Validate());
    }

    [Fact]
    public void A_negative_or_infinite_check_margin_is_refused()
    {
        Assert.Equal("Defense:VerifyMargin must be a finite number >= 0.", new DefenseOptions { VerifyMargin = -0.1 }.Validate());
        Assert.Equal("Defense:VerifyMargin must be a finite number >= 0.", new DefenseOptions { VerifyMargin = double.PositiveInfinity }.Validate());
        Assert.Null(new DefenseOptions { VerifyMargin = 0 }.Validate());
    }

    [Fact]
    public void Negative_or_infinite_window_ratios_are_refused()
    {
        Assert.Equal("Defense:WindowGrowRatio must be a finite number >= 0.", new DefenseOptions { WindowGrowRatio = -0.5 }.Validate());
        Assert.Equal("Defense:WindowGrowRatio must be a finite number >= 0.", new DefenseOptions { WindowGrowRatio = double.NaN }.Validate());
        Assert.Null(new DefenseOptions { WindowGrowRatio = 0.7 }.Validate());
        Assert.Equal("Defense:WindowMinRatioSum must be a finite number >= 0.", new DefenseOptions { WindowMinRatioSum = -1 }.Validate());
        Assert.Equal("Defense:WindowMinRatioSum must be a finite number >= 0.", new DefenseOptions { WindowMinRatioSum = double.PositiveInfinity }.Validate());
        Assert.Null(new DefenseOptions { WindowMinRatioSum = 2.5 }.Validate());
    }

    [Fact]
    public void The_shipped_check_margin_holds_for_the_defaults_and_not_for_a_grown_window()
    {
        // The calibration files were written before WindowGrowRatio existed: the missing field reads as 0, the default.
        var package = ModelPackage.Load(GradientTestData.EmbeddedModelDir);
        var check = DefenseCalibration.Load(Path.Combine(package.Directory, DefenseCalibration.FileName), package).Check!;

        Assert.Equal(CheckScope.Of(new DefenseOptions()), check.Scope);
        Assert.NotEqual(CheckScope.Of(new DefenseOptions { WindowGrowRatio = 0.7 }), check.Scope);
        Assert.NotEqual(CheckScope.Of(new DefenseOptions { WindowMinRatioSum = 2.5 }), check.Scope);
    }

    [Fact]
    public void A_second_round_view_answers_only_when_it_leads_by_the_margin()
    {
        float[] logits = [0.5f, 3.0f, 2.25f, -1f];
        Assert.Equal(1, TokenPatchDefense.Answer(logits, 0));
        Assert.Equal(1, TokenPatchDefense.Answer(logits, 0.75));   // leads by exactly 0.75
        Assert.Equal(-1, TokenPatchDefense.Answer(logits, 0.76));
        float[] tie = [1f, 2f, 2f];
        Assert.Equal(1, TokenPatchDefense.Answer(tie, 0));          // the first of the tied classes, as argmax
        Assert.Equal(-1, TokenPatchDefense.Answer(tie, 1e-6));      // a tie leads by nothing
    }

    [Fact]
    public void A_window_touches_the_cells_it_shares_or_borders_diagonally_and_no_others()
    {
        // 5 columns. The 2x2 window at (1,1): cells 6, 7, 11, 12.
        int[] window = [6, 7, 11, 12];
        Assert.True(WindowVerification.Touches(window, [12], 5, 5));      // shared
        Assert.True(WindowVerification.Touches(window, [18], 5, 5));      // (3,3), diagonal to (2,2)
        Assert.True(WindowVerification.Touches(window, [0], 5, 5));       // (0,0), diagonal to (1,1)
        Assert.False(WindowVerification.Touches(window, [19], 5, 5));     // (3,4): two columns from (2,2)
        Assert.False(WindowVerification.Touches(window, [9, 14], 5, 5));  // (1,4), (2,4)
        Assert.False(WindowVerification.Touches(window, [], 5, 5));
    }

    [Fact]
    public void By_veto_a_view_sides_with_the_defended_answer_when_it_comes_within_the_margin_of_the_top()
    {
        float[] logits = [0.5f, 3.0f, 2.25f, -1f];
        Assert.True(TokenPatchDefense.Sides(logits, 1, 0));        // the top itself
        Assert.False(TokenPatchDefense.Sides(logits, 2, 0));       // 0.75 under the top
        Assert.True(TokenPatchDefense.Sides(logits, 2, 0.75));     // exactly the margin under it
        Assert.False(TokenPatchDefense.Sides(logits, 2, 0.74));
        Assert.False(TokenPatchDefense.Sides(logits, 3, 3.9));     // 4 under
    }

    /// <summary>Whether logits <paramref name="v"/> answer <paramref name="label"/> ahead of every other class by at least <paramref name="margin"/>.</summary>
    private static bool Holds(float[] v, int label, double margin) =>
        ArgMax(v) == label && Enumerable.Range(0, v.Length).Where(c => c != label).All(c => v[label] - v[c] >= margin);

    private static int ArgMax(float[] v) => Array.IndexOf(v, v.Max());
}
