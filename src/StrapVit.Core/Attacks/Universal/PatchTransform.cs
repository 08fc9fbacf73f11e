namespace StrapVit.Core.Attacks.Universal;

/// <summary>Where and how a square patch lands on an image: centre (pixels), scale of its side, rotation (radians).</summary>
public readonly record struct PatchPose(float CenterX, float CenterY, float Scale, float Angle);

/// <summary>
/// Pastes a square patch <c>[C, S, S]</c> onto an image <c>[C, H, W]</c> under a <see cref="PatchPose"/>, and the
/// adjoint of that paste for the patch's gradient. Each image pixel whose centre falls inside the rotated, scaled
/// square takes the patch value at the inverse-mapped point, bilinearly interpolated; other pixels keep the image.
/// The paste is linear in the patch, so its adjoint spreads each covered pixel's gradient back onto the (up to
/// four) patch pixels it read, with the same weights. At scale 1, angle 0 and an integer corner it is an exact copy.
/// </summary>
public static class PatchTransform
{
    /// <summary>A pose with scale in [<paramref name="minScale"/>, <paramref name="maxScale"/>], angle in ±<paramref name="maxAngle"/>,
    /// and a centre that keeps the whole rotated patch inside the image.</summary>
    public static PatchPose RandomPose(Random random, int side, int height, int width, float maxAngle, float minScale, float maxScale)
    {
        ArgumentNullException.ThrowIfNull(random);
        var scale = minScale + ((maxScale - minScale) * (float)random.NextDouble());
        var angle = maxAngle * ((2 * (float)random.NextDouble()) - 1);
        var half = side * scale / 2 * (MathF.Abs(MathF.Cos(angle)) + MathF.Abs(MathF.Sin(angle)));
        return new PatchPose(Place(random, half, width), Place(random, half, height), scale, angle);
    }

    private static float Place(Random random, float half, int extent) =>
        half * 2 >= extent ? extent / 2f : half + ((extent - (2 * half)) * (float)random.NextDouble());

    /// <summary>Writes the patch into <paramref name="image"/> (in place).</summary>
    public static void Apply(Span<float> image, int channels, int height, int width, ReadOnlySpan<float> patch, int side, PatchPose pose)
    {
        var plane = height * width;
        var patchPlane = side * side;
        foreach (var k in Coverage(height, width, side, pose))
        {
            for (var c = 0; c < channels; c++)
            {
                var p = patch.Slice(c * patchPlane, patchPlane);
                image[(c * plane) + k.Pixel] = (k.W00 * p[k.I00]) + (k.W01 * p[k.I01]) + (k.W10 * p[k.I10]) + (k.W11 * p[k.I11]);
            }
        }
    }

    /// <summary>Adds the patch gradient implied by <paramref name="imageGrad"/> (d loss / d pasted image) to <paramref name="patchGrad"/>.</summary>
    public static void Backward(ReadOnlySpan<float> imageGrad, int channels, int height, int width, Span<float> patchGrad, int side, PatchPose pose)
    {
        var plane = height * width;
        var patchPlane = side * side;
        foreach (var k in Coverage(height, width, side, pose))
        {
            for (var c = 0; c < channels; c++)
            {
                var g = imageGrad[(c * plane) + k.Pixel];
                var p = patchGrad.Slice(c * patchPlane, patchPlane);
                p[k.I00] += k.W00 * g;
                p[k.I01] += k.W01 * g;
                p[k.I10] += k.W10 * g;
                p[k.I11] += k.W11 * g;
            }
        }
    }

    /// <summary>One covered image pixel: the four patch pixels it reads and their bilinear weights.</summary>
    private readonly record struct Cover(int Pixel, int I00, int I01, int I10, int I11, float W00, float W01, float W10, float W11);

    private static List<Cover> Coverage(int height, int width, int side, PatchPose pose)
    {
        var result = new List<Cover>();
        float cos = MathF.Cos(pose.Angle), sin = MathF.Sin(pose.Angle), inv = 1f / pose.Scale, half = side / 2f;
        var reach = (side * pose.Scale * 0.75f) + 1;
        int y0 = Math.Max(0, (int)(pose.CenterY - reach)), y1 = Math.Min(height - 1, (int)(pose.CenterY + reach));
        int x0 = Math.Max(0, (int)(pose.CenterX - reach)), x1 = Math.Min(width - 1, (int)(pose.CenterX + reach));
        for (var y = y0; y <= y1; y++)
        {
            for (var x = x0; x <= x1; x++)
            {
                float dx = x + 0.5f - pose.CenterX, dy = y + 0.5f - pose.CenterY;
                var u = (((dx * cos) + (dy * sin)) * inv) + half;
                var v = (((-dx * sin) + (dy * cos)) * inv) + half;
                if (u < 0 || v < 0 || u >= side || v >= side) continue;
                var fu = Math.Clamp(u - 0.5f, 0, side - 1);
                var fv = Math.Clamp(v - 0.5f, 0, side - 1);
                int cu = (int)fu, cv = (int)fv;
                int nu = Math.Min(cu + 1, side - 1), nv = Math.Min(cv + 1, side - 1);
                float au = fu - cu, av = fv - cv;
                result.Add(new Cover((y * width) + x, (cv * side) + cu, (cv * side) + nu, (nv * side) + cu, (nv * side) + nu,
                    (1 - au) * (1 - av), au * (1 - av), (1 - au) * av, au * av));
            }
        }

        return result;
    }
}
