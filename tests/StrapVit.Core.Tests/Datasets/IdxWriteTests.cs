using System.IO.Compression;
using StrapVit.Core.Datasets;

namespace StrapVit.Core.Tests.Datasets;

/// <summary><see cref="IdxDataset.Write"/>: the bytes of MNIST's format (read back by hand) and a pair that <see cref="IdxDataset.Load"/> reads.</summary>
public sealed class IdxWriteTests : IDisposable
{
    private readonly string temp = Directory.CreateTempSubdirectory("strapvit-idx-").FullName;

    public void Dispose() => Directory.Delete(temp, recursive: true);

    [Fact]
    public void Writes_the_idx_headers_and_bytes_and_loads_back()
    {
        byte[] pixels = [.. Enumerable.Range(0, 18).Select(i => (byte)(i * 13))];
        byte[] labels = [7, 0, 9];
        var path = Path.Combine(temp, "set-images-idx3-ubyte.gz");
        IdxDataset.Write(path, pixels, labels, rows: 2, cols: 3);

        // The header as the format defines it: big-endian magic, count, rows, cols; then one byte per pixel.
        byte[] expectedImages = [0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3, .. pixels];
        byte[] expectedLabels = [0, 0, 8, 1, 0, 0, 0, 3, .. labels];
        Assert.Equal(expectedImages, Gunzip(path));
        Assert.Equal(expectedLabels, Gunzip(Path.Combine(temp, "set-labels-idx1-ubyte.gz")));

        var set = IdxDataset.Load(path, IdxDataset.LabelsBeside(path));
        Assert.Equal((3, 2, 3), (set.Count, set.Rows, set.Cols));
        Assert.Equal(pixels, set.Pixels);
        Assert.Equal(13 / 255f, set.Image(0).Data[1]);
    }

    [Fact]
    public void Refuses_pixels_that_are_not_whole_images_and_a_name_without_a_labels_file()
    {
        Assert.Throws<ArgumentException>(() => IdxDataset.Write(Path.Combine(temp, "a-images-idx3-ubyte.gz"), new byte[17], new byte[3], 2, 3));
        Assert.Throws<ArgumentException>(() => IdxDataset.Write(Path.Combine(temp, "images.gz"), new byte[6], new byte[1], 2, 3));
        Assert.Empty(Directory.GetFiles(temp));
    }

    private static byte[] Gunzip(string path)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }
}
