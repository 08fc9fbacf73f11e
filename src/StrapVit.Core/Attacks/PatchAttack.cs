namespace StrapVit.Core.Attacks;

/// <summary>
/// Per-image adversarial patch, LaVAN-style: Karmon, Zoran, Goldberg, "LaVAN: Localized and Visible Adversarial
/// Noise", arXiv 1801.02608. Distance: none in value (a patch pixel may take any value in [0, 1]); the constraint is
/// the support: only the pixels of a <c>patchSize</c> × <c>patchSize</c> square (all channels) change.
/// </summary>
/// <remarks>
/// <para>Optimiser: signed gradient steps on the patch pixels only, p ← clip(p + s·α·sign(∇ₚL), 0, 1)
/// (s = +1 away from the label, −1 toward the target), starting from seeded uniform noise on the 8-bit grid. Signed
/// steps are scale-free (no learning rate to tune per model) and, with α a multiple of 1/255 as the default is,
/// keep the patch on the 8-bit grid, so the PNG returned carries exactly the image that was judged. A sample stops
/// as soon as it meets the goal.</para>
/// <para>Place: top-left (<c>x</c>, <c>y</c>) when given, else drawn uniformly per sample from the seed.
/// Tensor shapes: images <c>[N, C, H, W]</c>; each run <c>[n, C, H, W]</c> over the unfinished samples.
/// Iterations reported: gradient steps taken.</para>
/// </remarks>
public sealed class PatchAttack : Attack
{
    public const int DefaultSteps = 200;
    public const float DefaultStepSize = 4f / 255f;

    /// <param name="patchSize">Side of the square in pixels (0 changes nothing); 4 is about 2% of a 28×28 image.</param>
    /// <param name="x">Left column of the patch; null draws it from the seed.</param>
    /// <param name="y">Top row of the patch; null draws it from the seed.</param>
    /// <param name="steps">Gradient steps at most; default 200.</param>
    /// <param name="stepSize">Signed step α; default 4/255.</param>
    public PatchAttack(int patchSize, int? x = null, int? y = null, int steps = DefaultSteps, float stepSize = DefaultStepSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(patchSize);
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        if (x < 0) throw new ArgumentOutOfRangeException(nameof(x), x, "Must be at least 0.");
        if (y < 0) throw new ArgumentOutOfRangeException(nameof(y), y, "Must be at least 0.");
        if (!(stepSize >= 0) || !float.IsFinite(stepSize)) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "Must be finite and at least 0.");
        PatchSize = patchSize;
        X = x;
        Y = y;
        Steps = steps;
        StepSize = stepSize;
    }

    public override string Name => "patch";

    public int PatchSize { get; }

    public int? X { get; }

    public int? Y { get; }

    public int Steps { get; }

    public float StepSize { get; }

    protected override Perturbation Perturb(AttackContext context, float[] clean, int batch, Criterion criterion, Random random)
    {
        var model = context.Model;
        int c = model.Channels, h = model.Height, w = model.Width, size = context.SampleSize;
        if (PatchSize > h || PatchSize > w)
        {
            throw new AttackParameterException("patchSize", $"A {PatchSize}-pixel patch does not fit a {h}x{w} image.");
        }

        var places = new PatchPlacement[batch];
        var x = (float[])clean.Clone();
        for (var s = 0; s < batch; s++)
        {
            var px = X ?? random.Next(0, w - PatchSize + 1);
            var py = Y ?? random.Next(0, h - PatchSize + 1);
            if (px + PatchSize > w || py + PatchSize > h)
            {
                throw new AttackParameterException(px + PatchSize > w ? "x" : "y", $"A {PatchSize}-pixel patch at ({px}, {py}) does not fit a {h}x{w} image.");
            }

            places[s] = new PatchPlacement(px, py, PatchSize);
            foreach (var i in MaskIndices(places[s], c, h, w))
            {
                x[(s * size) + i] = random.Next(256) / 255f;
            }
        }

        var iterations = new int[batch];
        var done = new bool[batch];
        var step = criterion.LossSign * StepSize;
        for (var t = 0; t < Steps && PatchSize > 0; t++)
        {
            var active = Enumerable.Range(0, batch).Where(s => !done[s]).ToList();
            if (active.Count == 0) break;
            var pixels = new float[active.Count * size];
            for (var a = 0; a < active.Count; a++)
            {
                x.AsSpan(active[a] * size, size).CopyTo(pixels.AsSpan(a * size, size));
            }

            var result = context.CrossEntropy(pixels, [.. active.Select(s => criterion.Classes[s])], active.Count);
            for (var a = 0; a < active.Count; a++)
            {
                var s = active[a];
                if (criterion.IsAdversarial(s, result.LogitsOf(a)))
                {
                    done[s] = true;
                    continue;
                }

                var g = result.PixelGradOf(a);
                foreach (var i in MaskIndices(places[s], c, h, w))
                {
                    var j = (s * size) + i;
                    x[j] = Math.Clamp(x[j] + (step * MathF.Sign(g[i])), 0f, 1f);
                }

                iterations[s] = t + 1;
            }
        }

        return new Perturbation(x, iterations, places);
    }

    protected override void Constrain(ReadOnlySpan<float> clean, Span<float> adversarial, int sample, Perturbation perturbation,
        IDifferentiableClassifier model)
    {
        // Whatever the optimiser did, only the patch's pixels may differ from the clean image.
        var keep = clean.ToArray();
        foreach (var i in MaskIndices(perturbation.Patches![sample], model.Channels, model.Height, model.Width))
        {
            keep[i] = adversarial[i];
        }

        keep.CopyTo(adversarial);
    }

    /// <summary>Flat indices within one image <c>[C, H, W]</c> of the square at <paramref name="place"/>.</summary>
    public static IEnumerable<int> MaskIndices(PatchPlacement place, int channels, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(place);
        for (var ch = 0; ch < channels; ch++)
        {
            for (var yy = place.Y; yy < place.Y + place.Size; yy++)
            {
                for (var xx = place.X; xx < place.X + place.Size; xx++)
                {
                    yield return (((ch * height) + yy) * width) + xx;
                }
            }
        }
    }
}
