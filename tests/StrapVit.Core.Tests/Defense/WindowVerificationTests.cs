using StrapVit.Core.Defense;

namespace StrapVit.Core.Tests.Defense;

/// <summary>The masking check's window choice and its decision rule, on hand-built grids and answers.</summary>
public sealed class WindowVerificationTests
{
    [Fact]
    public void Candidates_are_the_strongest_windows_and_skip_one_that_is_mostly_a_stronger_one()
    {
        // 4x4 grid: a strong block at rows 0-1, cols 0-1, a weaker one at rows 2-3, cols 2-3, the rest 0.
        var ratios = new double[16];
        ratios[0] = ratios[1] = ratios[4] = ratios[5] = 3;
        ratios[10] = ratios[11] = ratios[14] = ratios[15] = 2;

        var windows = WindowVerification.Candidates(ratios, 4, 4, 2, 2, 3);

        Assert.Equal([0, 1, 4, 5], windows[0]);
        Assert.Equal([10, 11, 14, 15], windows[1]);
        // Third: rows 0-1 x cols 1-2 and rows 1-2 x cols 0-1 both sum to 6 and share exactly half (two cells) with
        // the first, which is allowed; the tie goes to the upper row.
        Assert.Equal([1, 2, 5, 6], windows[2]);
    }

    [Fact]
    public void A_window_that_shares_more_than_half_its_cells_with_a_stronger_one_is_skipped()
    {
        // 3x3 windows on a 4x4 grid: every placement shares at least 4 of 9 cells with every other; (0,0) and (1,1)
        // share 4 (kept), (0,0) and (0,1) share 6 (skipped).
        var ratios = Enumerable.Range(0, 16).Select(i => i == 0 ? 10.0 : i == 15 ? 5.0 : 1.0).ToArray();

        var windows = WindowVerification.Candidates(ratios, 4, 4, 3, 3, 4);

        Assert.Equal(2, windows.Length);
        Assert.Equal([0, 1, 2, 4, 5, 6, 8, 9, 10], windows[0]);
        Assert.Equal([5, 6, 7, 9, 10, 11, 13, 14, 15], windows[1]);
    }

    [Fact]
    public void Agreement_keeps_the_defended_answer_without_a_second_round()
    {
        var asked = 0;

        var chosen = WindowVerification.Decide(7, [7, 7, 7], 6, (_, _) => { asked++; return 0; });

        Assert.Equal(-1, chosen);
        Assert.Equal(0, asked);
    }

    [Fact]
    public void A_disagreeing_window_whose_answer_survives_every_second_mask_is_taken()
    {
        // Window 1 hides the patch: alone it answers 3, and with each partner hidden too it still answers 3.
        var asked = new List<(int, int)>();

        var chosen = WindowVerification.Decide(7, [7, 3, 7], 5, (m, j) => { asked.Add((m, j)); return 3; });

        Assert.Equal(1, chosen);
        Assert.Equal([(1, 0), (1, 2), (1, 3), (1, 4)], asked);
    }

    [Fact]
    public void A_disagreeing_window_that_one_second_mask_contradicts_is_not_taken()
    {
        // A clean image whose answer one occlusion flipped: hiding window 2 as well brings the old answer back.
        var chosen = WindowVerification.Decide(7, [7, 3, 7], 4, (m, j) => j == 2 ? 7 : 3);

        Assert.Equal(-1, chosen);
    }

    [Fact]
    public void Of_two_disagreeing_windows_the_first_that_holds_wins_even_if_an_earlier_one_fails()
    {
        // Window 0 disagrees but fails its second round; window 2 disagrees with another answer and holds.
        var chosen = WindowVerification.Decide(7, [1, 7, 4], 3, (m, j) => m == 0 ? (j == 1 ? 7 : 1) : 4);

        Assert.Equal(2, chosen);
    }

    [Fact]
    public void Disagreeing_lists_the_windows_whose_answer_differs_in_order()
    {
        Assert.Equal([0, 2], WindowVerification.Disagreeing(5, [1, 5, 2, 5]));
        Assert.Empty(WindowVerification.Disagreeing(5, [5, 5]));
    }
}
