using StrapVit.Core.Defense;

namespace StrapVit.Core.Tests.Defense;

public sealed class DefenseMathTests
{
    [Fact]
    public void Jensen_shannon_distance_is_zero_for_equal_and_maximal_for_disjoint_distributions()
    {
        double[] p = [0.5, 0.5, 0, 0];
        double[] q = [0, 0, 0.5, 0.5];

        Assert.Equal(0, JensenShannon.Distance(p, p), 12);
        Assert.Equal(Math.Sqrt(Math.Log(2)), JensenShannon.Distance(p, q), 12);
        Assert.Equal(JensenShannon.MaxDistance, JensenShannon.Distance(p, q), 12);
    }

    [Fact]
    public void Jensen_shannon_matches_a_hand_computed_value_and_is_symmetric()
    {
        double[] p = [0.1, 0.2, 0.7];
        double[] q = [0.3, 0.3, 0.4];
        // Direct from the definition, in closed form.
        double Kl(double[] a, double[] m) => a.Select((v, i) => v * Math.Log(v / m[i])).Sum();
        var m = p.Select((v, i) => (v + q[i]) / 2).ToArray();
        var expected = (0.5 * Kl(p, m)) + (0.5 * Kl(q, m));

        Assert.Equal(expected, JensenShannon.Divergence(p, q), 12);
        Assert.Equal(JensenShannon.Divergence(q, p), JensenShannon.Divergence(p, q), 12);
    }

    [Fact]
    public void Jensen_shannon_distance_obeys_the_triangle_inequality_on_random_distributions()
    {
        var rng = new Random(3);
        double[] Draw()
        {
            var v = Enumerable.Range(0, 8).Select(_ => rng.NextDouble() + 1e-3).ToArray();
            var s = v.Sum();
            return v.Select(x => x / s).ToArray();
        }

        for (var i = 0; i < 200; i++)
        {
            double[] a = Draw(), b = Draw(), c = Draw();
            Assert.True(JensenShannon.Distance(a, c) <= JensenShannon.Distance(a, b) + JensenShannon.Distance(b, c) + 1e-12);
        }
    }

    [Fact]
    public void Temperature_softmax_sharpens_below_one_and_flattens_above()
    {
        float[] z = [1, 2, 3];
        var sharp = new double[3];
        var flat = new double[3];

        JensenShannon.Softmax(z, 0.5, sharp);
        JensenShannon.Softmax(z, 4, flat);

        Assert.Equal(1, sharp.Sum(), 12);
        Assert.True(sharp[2] > flat[2] && flat[2] > 1.0 / 3);
    }

    [Theory]
    [InlineData(new[] { 0.1, 0.9, 0.2, 0.3, 0.05 }, 1, 1.0, new[] { 1 }, 1)]
    [InlineData(new[] { 0.1, 0.9, 0.2, 0.3, 0.05 }, 3, 1.0, new[] { 1, 3, 2 }, 1)]
    [InlineData(new[] { 0.6, 0.9, 0.7, 0.3, 0.05 }, 1, 1.0, new[] { 1, 2, 0 }, 3)]
    [InlineData(new[] { 0.6, 0.9, 0.7, 0.3, 0.05 }, 0, 2.0, new int[0], 0)]
    public void Selection_is_threshold_with_at_least_k(double[] scores, int k, double scale, int[] expected, int above)
    {
        float[] thresholds = [0.5f, 0.5f, 0.5f, 0.5f, 0.5f];

        var (flagged, count) = TokenSelection.Select(scores, thresholds, [0, 1, 2, 3, 4], k, scale);

        Assert.Equal(expected, flagged);
        Assert.Equal(above, count);
    }

    [Fact]
    public void Selection_ranks_by_score_over_the_positions_own_threshold()
    {
        // Position 0 (say, background) has a tiny clean threshold: a modest score there is more anomalous
        // than a larger score at a busy position.
        double[] scores = [0.05, 0.3];
        float[] thresholds = [0.01f, 0.4f];

        var (flagged, above) = TokenSelection.Select(scores, thresholds, [0, 1], 1, 1.0);

        Assert.Equal([0], flagged);
        Assert.Equal(1, above);
    }

    [Fact]
    public void Class_token_is_never_a_candidate()
    {
        double[] scores = [10, 0.1, 0.2];
        float[] thresholds = [0.1f, 0.1f, 0.1f];

        var (flagged, _) = TokenSelection.Select(scores, thresholds, [1, 2], 2, 1.0);

        Assert.DoesNotContain(0, flagged);
    }
}
