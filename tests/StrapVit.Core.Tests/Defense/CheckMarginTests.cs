using StrapVit.Core.Defense;

namespace StrapVit.Core.Tests.Defense;

/// <summary>The margin search of <see cref="CheckMargin"/> against counts whose boundary is known.</summary>
public sealed class CheckMarginTests
{
    /// <summary>Images whose check would replace the answer up to these margins (the strongest holding window's weakest view).</summary>
    private static readonly double[] Strength = [0.3, 1.7, 2.2, 2.2, 4.9, 7.5, 12.0, 0.05];

    private static int Replaced(double margin) => Strength.Count(s => s >= margin);

    [Theory]
    [InlineData(0.25, 2, 4.9)]   // 2 of 8 allowed: only 7.5 and 12.0 may hold, so the margin lands just above 4.9
    [InlineData(0.5, 4, 2.2)]    // 4 allowed: 2.2 (twice) must fail
    [InlineData(0.1, 0, 12.0)]   // none allowed
    public void The_margin_is_the_smallest_that_replaces_at_most_the_allowed_share(double rate, int allowed, double boundary)
    {
        var margin = CheckMargin.For(Replaced, Strength.Length, rate);
        Assert.True(Replaced(margin) <= allowed, $"{Replaced(margin)} replaced at margin {margin}");
        Assert.InRange(margin, boundary, boundary + 1e-3);
    }

    [Fact]
    public void No_margin_when_the_check_already_replaces_few_enough() =>
        Assert.Equal(0, CheckMargin.For(Replaced, 80, 0.1));   // 8 of 80 replaced, 8 allowed

    [Fact]
    public void A_check_that_replaces_at_every_margin_is_refused_rather_than_given_one_that_fails()
    {
        var tried = new List<double>();
        var ex = Assert.Throws<InvalidOperationException>(() => CheckMargin.For(m => { tried.Add(m); return 5; }, 10, 0.1));
        Assert.Contains("Defense:VerifyWindows = 0", ex.Message, StringComparison.Ordinal);
        Assert.Equal(CheckMargin.Max, tried.Max());
    }

    [Fact]
    public void The_allowed_count_is_the_floor_of_rate_times_images_without_rounding_down_a_whole_number() =>
        Assert.Equal(0, CheckMargin.For(m => 29, 100, 0.29));   // 0.29 x 100 is 28.999... in doubles

    [Fact]
    public void A_rate_outside_0_to_1_a_negative_count_or_no_precision_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckMargin.For(Replaced, 8, 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckMargin.For(Replaced, -1, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckMargin.For(Replaced, 8, 0.1, precision: 0));
    }

    [Theory]
    [InlineData(5, 500, 0.020910322942267)]    // the embedded model's calibration: 5 of 500 replaced
    [InlineData(39, 4000, 0.012715902800769)]  // its check on held-out half A
    [InlineData(43, 4500, 0.012304933301562)]  // and on half B
    public void The_upper_bound_on_the_clean_rate_matches_an_exact_binomial_sum(int replaced, int images, double expected)
    {
        // Expected values: bisection on the exact binomial sum in Python (integer binomials, 200 halvings), not this code.
        Assert.Equal(expected, CheckMargin.UpperBound(replaced, images), 1e-9);
    }

    [Theory]
    [InlineData(500)]
    [InlineData(60)]
    public void With_nothing_replaced_the_bound_is_the_closed_form(int images) =>
        // P(X = 0) = (1 - p)^n = 0.05 at the bound.
        Assert.Equal(1 - Math.Pow(0.05, 1.0 / images), CheckMargin.UpperBound(0, images), 1e-12);

    [Fact]
    public void The_bound_is_one_when_every_answer_was_replaced_and_refuses_impossible_counts()
    {
        Assert.Equal(1.0, CheckMargin.UpperBound(10, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckMargin.UpperBound(11, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckMargin.UpperBound(-1, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckMargin.UpperBound(1, 10, confidence: 1));
    }
}
