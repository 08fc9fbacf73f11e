using StrapVit.Core.Datasets;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Inference;

/// <summary>The shipped Fashion-MNIST test images (samples/fashion-mnist/test-1000).</summary>
internal static class ShippedTestImages
{
    /// <summary>The first <paramref name="count"/> images, back to back (<c>[count, 1, 28, 28]</c>, pixels in [0, 1]).</summary>
    public static float[] First(int count)
    {
        var path = RepoPaths.Sample(Path.Combine("fashion-mnist", "test-1000-images-idx3-ubyte.gz"));
        var data = IdxDataset.Load(path, IdxDataset.LabelsBeside(path));
        return Enumerable.Range(0, count).SelectMany(i => data.Image(i).Data.ToArray()).ToArray();
    }
}
