namespace StrapVit.Core.Imaging;

/// <summary>
/// One image in [0, 1] pixel space at the model's resolution, channels-first <c>[C, H, W]</c>, row-major.
/// This is "the image" of README, 'Using the API' for every endpoint.
/// </summary>
public sealed record ImageTensor(float[] Data, int Channels, int Height, int Width)
{
    public int Size => Channels * Height * Width;

    /// <summary>Value of channel <paramref name="c"/> at row <paramref name="y"/>, column <paramref name="x"/>.</summary>
    public float this[int c, int y, int x] => Data[((c * Height) + y) * Width + x];

    /// <summary>The same image rounded to 8 bits per channel, as an 8-bit PNG would carry it.</summary>
    public ImageTensor Quantize()
    {
        var q = new float[Data.Length];
        for (var i = 0; i < q.Length; i++)
        {
            q[i] = MathF.Round(Math.Clamp(Data[i], 0f, 1f) * 255f) / 255f;
        }

        return this with { Data = q };
    }
}
