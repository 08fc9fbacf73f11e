using System.Buffers.Binary;
using System.IO.Compression;
using StrapVit.Core.Imaging;

namespace StrapVit.Core.Datasets;

/// <summary>
/// A labelled image set in the (optionally gzipped) IDX format of MNIST and Fashion-MNIST: unsigned bytes,
/// a 16-byte image header (magic 0x803, count, rows, cols) and an 8-byte label header (magic 0x801, count).
/// </summary>
public sealed class IdxDataset
{
    private IdxDataset(byte[] pixels, byte[] labels, int rows, int cols)
    {
        Pixels = pixels;
        Labels = labels;
        Rows = rows;
        Cols = cols;
    }

    /// <summary>All images back to back, one byte per pixel.</summary>
    public byte[] Pixels { get; }

    public byte[] Labels { get; }

    public int Rows { get; }

    public int Cols { get; }

    public int Count => Labels.Length;

    /// <summary>The labels file that the MNIST naming puts beside an images file (<c>*images-idx3*</c> -> <c>*labels-idx1*</c>).</summary>
    public static string LabelsBeside(string imagesPath) => imagesPath.Replace("images-idx3", "labels-idx1", StringComparison.Ordinal);

    public static IdxDataset Load(string imagesPath, string labelsPath)
    {
        var images = ReadAll(imagesPath);
        var labels = ReadAll(labelsPath);
        if (images.Length < 16 || BinaryPrimitives.ReadInt32BigEndian(images) != 0x803)
        {
            throw new InvalidDataException($"{imagesPath} is not an IDX image file.");
        }

        if (labels.Length < 8 || BinaryPrimitives.ReadInt32BigEndian(labels) != 0x801)
        {
            throw new InvalidDataException($"{labelsPath} is not an IDX label file.");
        }

        var n = BinaryPrimitives.ReadInt32BigEndian(images.AsSpan(4));
        var rows = BinaryPrimitives.ReadInt32BigEndian(images.AsSpan(8));
        var cols = BinaryPrimitives.ReadInt32BigEndian(images.AsSpan(12));
        var m = BinaryPrimitives.ReadInt32BigEndian(labels.AsSpan(4));
        if (n != m || images.Length != 16 + ((long)n * rows * cols) || labels.Length != 8 + m)
        {
            throw new InvalidDataException($"{imagesPath} and {labelsPath} disagree on the number of items or are truncated.");
        }

        return new IdxDataset(images[16..], labels[8..], rows, cols);
    }

    /// <summary>Image <paramref name="index"/> as a one-channel tensor in [0, 1].</summary>
    public ImageTensor Image(int index)
    {
        var size = Rows * Cols;
        var data = new float[size];
        var src = Pixels.AsSpan(index * size, size);
        for (var i = 0; i < size; i++)
        {
            data[i] = src[i] / 255f;
        }

        return new ImageTensor(data, 1, Rows, Cols);
    }

    /// <summary>
    /// Writes images <c>[count * rows * cols]</c> (one byte per pixel) and their labels as a gzipped IDX pair, the format
    /// <see cref="Load"/> reads: <paramref name="imagesPath"/> and the labels file <see cref="LabelsBeside"/> names.
    /// </summary>
    public static void Write(string imagesPath, ReadOnlySpan<byte> pixels, ReadOnlySpan<byte> labels, int rows, int cols)
    {
        if (pixels.Length != labels.Length * rows * cols)
        {
            throw new ArgumentException($"{pixels.Length} pixels are not {labels.Length} images of {rows}x{cols}.", nameof(pixels));
        }

        var labelsPath = LabelsBeside(imagesPath);
        if (labelsPath == imagesPath)
        {
            throw new ArgumentException("The images file must be named *images-idx3* so that its labels file can sit beside it.", nameof(imagesPath));
        }

        Span<byte> header = stackalloc byte[16];
        BinaryPrimitives.WriteInt32BigEndian(header, 0x803);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], labels.Length);
        BinaryPrimitives.WriteInt32BigEndian(header[8..], rows);
        BinaryPrimitives.WriteInt32BigEndian(header[12..], cols);
        WriteGzip(imagesPath, header, pixels);
        BinaryPrimitives.WriteInt32BigEndian(header, 0x801);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], labels.Length);
        WriteGzip(labelsPath, header[..8], labels);
    }

    private static void WriteGzip(string path, ReadOnlySpan<byte> header, ReadOnlySpan<byte> body)
    {
        using var file = File.Create(path);
        using var gz = new GZipStream(file, CompressionLevel.Optimal);
        gz.Write(header);
        gz.Write(body);
    }

    private static byte[] ReadAll(string path)
    {
        using var file = File.OpenRead(path);
        using var ms = new MemoryStream();
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
        {
            using var gz = new GZipStream(file, CompressionMode.Decompress);
            gz.CopyTo(ms);
        }
        else
        {
            file.CopyTo(ms);
        }

        return ms.ToArray();
    }
}
