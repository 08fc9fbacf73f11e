using StrapVit.Core.Defense;

namespace StrapVit.Core.Tests.Defense;

public sealed class TokenMitigationTests
{
    private const int Dim = 16;
    private const double T = 1.0;

    // A clean centre of small values, its reference distribution, and an outlier token with one huge channel:
    // the shape an adversarial patch gives a token.
    private static readonly float[] Center = Enumerable.Range(0, Dim).Select(i => (float)Math.Sin(i) * 0.3f).ToArray();
    private static readonly float CleanNorm = (float)Math.Sqrt(Center.Sum(v => v * v)) + 0.5f;

    private static float[] Outlier()
    {
        var z = (float[])Center.Clone();
        z[3] += 12f;
        z[7] -= 6f;
        return z;
    }

    private static double Score(float[] z)
    {
        var p = new double[Dim];
        var q = new double[Dim];
        JensenShannon.Softmax(z, T, p);
        JensenShannon.Softmax(Center, T, q);
        return JensenShannon.Distance(p, q);
    }

    public static TheoryData<string, Action<float[]>> EachTransform => new()
    {
        { "lp projection", z => TokenMitigation.ProjectL2(z, CleanNorm) },
        { "affine shrink", z => TokenMitigation.ShrinkToward(z, Center, 0.3) },
        { "temperature", z => TokenMitigation.ScaleTemperature(z, 3.0) },
    };

    [Theory]
    [MemberData(nameof(EachTransform))]
    public void Each_transform_lowers_the_anomaly_score_of_a_planted_outlier(string name, Action<float[]> transform)
    {
        var z = Outlier();
        var before = Score(z);

        transform(z);

        var after = Score(z);
        Assert.True(after < 0.8 * before, $"{name}: {before:F4} -> {after:F4}");
    }

    [Fact]
    public void Lp_projection_reaches_the_ball_and_leaves_inner_points_alone()
    {
        var z = Outlier();
        TokenMitigation.ProjectL2(z, CleanNorm);
        Assert.Equal(CleanNorm, Math.Sqrt(z.Sum(v => (double)v * v)), 3);

        var inner = Center.Select(v => v * 0.1f).ToArray();
        var copy = (float[])inner.Clone();
        TokenMitigation.ProjectL2(inner, CleanNorm);
        Assert.Equal(copy, inner);
    }

    [Fact]
    public void Temperature_scaling_equals_a_softmax_at_a_higher_temperature()
    {
        var z = Outlier();
        var expected = new double[Dim];
        JensenShannon.Softmax(z, T * 3.0, expected);

        TokenMitigation.ScaleTemperature(z, 3.0);
        var actual = new double[Dim];
        JensenShannon.Softmax(z, T, actual);

        for (var i = 0; i < Dim; i++)
        {
            Assert.Equal(expected[i], actual[i], 5);
        }
    }

    [Fact]
    public void Shrink_with_alpha_zero_lands_on_the_centre()
    {
        var z = Outlier();
        TokenMitigation.ShrinkToward(z, Center, 0);
        Assert.Equal(Center, z);
    }

    [Fact]
    public void Random_composites_are_non_empty_subsets_reproducible_by_seed_and_vary_across_seeds()
    {
        var options = new DefenseOptions();
        string Run(int seed, int tokens)
        {
            var rng = new Random(seed);
            return string.Join('|', Enumerable.Range(0, tokens).Select(_ =>
                string.Join(',', TokenMitigation.Apply(Outlier(), Center, CleanNorm, options, rng))));
        }

        var a = Run(11, 20);
        Assert.Equal(a, Run(11, 20));
        Assert.NotEqual(a, Run(12, 20));
        var sets = a.Split('|');
        Assert.All(sets, s => Assert.InRange(s.Split(',').Length, 1, 3));
        Assert.True(sets.Distinct().Count() > 3, "the subsets and orders should vary from token to token");
    }

    [Fact]
    public void Only_enabled_transforms_are_drawn()
    {
        var options = new DefenseOptions { Transforms = TokenTransforms.AffineShrink };
        var rng = new Random(1);

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal([TokenMitigation.Shrink], TokenMitigation.Apply(Outlier(), Center, CleanNorm, options, rng));
        }
    }

    [Theory]
    [InlineData("lp_projection,affine_shrink,temperature")]
    [InlineData("temperature,lp_projection")]
    [InlineData("affine_shrink")]
    public void Backward_matches_central_finite_differences(string ops)
    {
        var steps = ops.Split(',').Select(op => new MitigationStep(op, op == TokenMitigation.Shrink ? 0.4 : 2.5)).ToArray();
        var rng = new Random(5);
        var z = Outlier();
        var g = Enumerable.Range(0, Dim).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();
        var v = Enumerable.Range(0, Dim).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();

        var back = (float[])g.Clone();
        TokenMitigation.Backward(z, Center, CleanNorm, steps, back);
        var analytic = back.Zip(v, (a, b) => (double)a * b).Sum();

        double F(float sign)
        {
            var x = z.Select((zi, i) => zi + (sign * 1e-2f * v[i])).ToArray();
            TokenMitigation.Apply(x, Center, CleanNorm, steps);
            return x.Zip(g, (a, b) => (double)a * b).Sum();
        }

        var numeric = (F(1) - F(-1)) / 2e-2;
        Assert.Equal(numeric, analytic, 2);
    }
}
