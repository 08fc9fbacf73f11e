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
    public void A_check_that_always_replaces_gets_the_largest_margin() =>
        Assert.Equal(CheckMargin.Max, CheckMargin.For(_ => 5, 10, 0.1));

    [Fact]
    public void A_rate_outside_0_to_1_is_refused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckMargin.For(Replaced, 8, 1.0));
}
