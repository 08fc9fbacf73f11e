using StrapVit.Core.Datasets;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Datasets;

/// <summary>
/// The labelled subsets in samples/fashion-mnist: reported images, tuning images and the clean reference must stay
/// apart, or the evaluation would choose its defaults on the images it reports.
/// </summary>
public sealed class ShippedSubsetTests
{
    private static IdxDataset Load(string name)
    {
        var dir = RepoPaths.Sample("fashion-mnist");
        return IdxDataset.Load(Path.Combine(dir, $"{name}-images-idx3-ubyte.gz"), Path.Combine(dir, $"{name}-labels-idx1-ubyte.gz"));
    }

    [Theory]
    [InlineData("test-1000", 1000)]
    [InlineData("tune-500", 500)]
    [InlineData("calib-500", 500)]
    public void Each_subset_has_28x28_images_and_labels_of_all_ten_classes(string name, int count)
    {
        var set = Load(name);
        Assert.Equal(count, set.Count);
        Assert.Equal((28, 28), (set.Rows, set.Cols));
        Assert.Equal(count * 28 * 28, set.Pixels.Length);
        Assert.Equal(Enumerable.Range(0, 10), set.Labels.Distinct().Order().Select(l => (int)l));
        // Every class is represented in a balanced way (Fashion-MNIST is balanced; a shifted slice would not be).
        Assert.All(set.Labels.GroupBy(l => l), g => Assert.InRange(g.Count(), count / 20, count / 5));
    }

    [Theory]
    [InlineData("tune-500", "test-1000")]
    [InlineData("calib-500", "test-1000")]
    [InlineData("calib-500", "tune-500")]
    public void Subsets_share_no_image(string a, string b)
    {
        static HashSet<string> Images(IdxDataset set) =>
            [.. Enumerable.Range(0, set.Count).Select(i => Convert.ToBase64String(set.Pixels, i * 784, 784))];

        var overlap = Images(Load(a));
        overlap.IntersectWith(Images(Load(b)));
        Assert.Empty(overlap);
    }
}
