using StrapVit.Core.Numerics;

namespace StrapVit.Core.Tests;

public sealed class ProbabilitiesTests
{
    [Theory]
    [InlineData(new[] { 1f, 5f, 3f }, 1, 2)]
    [InlineData(new[] { 1f, 5f, 3f }, 0, 1)]
    [InlineData(new[] { 4f, 2f, 4f, 4f }, 0, 2)]
    [InlineData(new[] { -3f, -1f }, 1, 0)]
    [InlineData(new[] { 7f }, 0, -1)]
    public void The_strongest_rival_is_the_first_largest_value_at_another_index(float[] values, int except, int expected) =>
        Assert.Equal(expected, Probabilities.ArgMaxExcept(values, except));
}
