using System.Diagnostics;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Defense;

/// <summary>
/// The model-agnostic patch-entropy filter (Jedi-like): cut the image into the ViT's patches, score each patch by the
/// Jensen-Shannon distance between its pixel histogram and the clean histogram at that position, flag "threshold, at
/// least K", and rewrite the flagged patches' pixels with a random non-empty subset of noise, blur, shuffle and
/// mean-fill in random order, then classify with the unmodified model. Needs no tokens tensor.
/// </summary>
public sealed class PixelPatchDefense(VitClassifier classifier, PixelReference reference, DefenseOptions options) : IPatchDefense
{
    public const string Noise = "noise";
    public const string Blur = "blur";
    public const string Shuffle = "shuffle";
    public const string MeanFill = "mean_fill";

    private static readonly string[] Ops = [Noise, Blur, Shuffle, MeanFill];

    public string Variant => "pixel";

    public DefendedLogits[] Run(ReadOnlySpan<float> pixels, int batch, DefenseMode mode, IReadOnlyList<int> seeds, CancellationToken cancellationToken = default)
    {
        if (mode == DefenseMode.Off)
        {
            throw new ArgumentException("Run the plain classifier when the defense is off.", nameof(mode));
        }

        using var activity = CoreActivities.Defense(mode == DefenseMode.Detect ? "detect" : "mitigate", Variant, batch);
        var sw = Stopwatch.StartNew();
        var input = classifier.Manifest.Input;
        var grid = new PatchGrid(input.Height, input.Width, reference.PatchSize);
        var candidates = Enumerable.Range(0, grid.Count).ToArray();
        var work = pixels.ToArray();
        var scores = new double[grid.Count];
        var pending = new (FlaggedToken[] Flagged, int Above, AppliedTransform[] Applied, double[] Scores)[batch];
        for (var i = 0; i < batch; i++)
        {
            var image = new ImageTensor(new float[input.Size], input.Channels, input.Height, input.Width);
            work.AsSpan(i * input.Size, input.Size).CopyTo(image.Data);
            reference.Score(image, scores);
            var (flagged, above) = TokenSelection.Select(scores, reference.Threshold, candidates, options.MinTokens, options.ThresholdScale);
            var applied = Array.Empty<AppliedTransform>();
            if (mode == DefenseMode.Mitigate)
            {
                var rng = new Random(seeds[i]);
                applied = flagged.Select(k => new AppliedTransform(k, Transform(image, grid, k, rng))).ToArray();
                image.Data.CopyTo(work, i * input.Size);
            }

            pending[i] = (
                flagged.Select(k => new FlaggedToken(k, k / grid.Cols, k % grid.Cols, Math.Round(scores[k], 6),
                    Math.Round(reference.Threshold[k] * options.ThresholdScale, 6))).ToArray(),
                above,
                applied,
                (double[])scores.Clone());
        }

        var logits = classifier.Logits(work, batch, cancellationToken);
        var perImageMs = sw.Elapsed.TotalMilliseconds / batch;
        var k2 = classifier.ClassCount;
        var thresholds = reference.Threshold.Select(v => v * options.ThresholdScale).ToArray();
        var modeName = mode == DefenseMode.Detect ? "detect" : "mitigate";
        activity?.SetTag(CoreActivities.DefenseFlaggedTokens, pending.Sum(p => p.Flagged.Length));
        return pending.Select((p, i) => new DefendedLogits(
            logits.AsSpan(i * k2, k2).ToArray(),
            new DefenseReport(modeName, Variant, p.Flagged, p.Above, options.ThresholdScale, options.MinTokens, p.Applied, seeds[i], perImageMs),
            p.Scores,
            thresholds)).ToArray();
    }

    private string[] Transform(ImageTensor image, PatchGrid grid, int k, Random rng)
    {
        var mask = rng.Next(1, 1 << Ops.Length);
        var chosen = Ops.Where((_, i) => (mask & (1 << i)) != 0).ToArray();
        rng.Shuffle(chosen);
        int p = grid.PatchSize, r0 = k / grid.Cols * p, c0 = k % grid.Cols * p;
        foreach (var op in chosen)
        {
            for (var c = 0; c < image.Channels; c++)
            {
                var data = image.Data;
                var offset = c * image.Height * image.Width;
                var plane = data.AsSpan(offset, image.Height * image.Width);
                switch (op)
                {
                    case Noise:
                        var sigma = 0.1 + (0.2 * rng.NextDouble());
                        ForEach(p, r0, c0, image.Width, idx => data[offset + idx] = (float)(data[offset + idx] + (sigma * Gaussian(rng))));
                        break;
                    case Blur:
                        BoxBlur(plane, image.Width, r0, c0, p);
                        break;
                    case Shuffle:
                        ShufflePatch(plane, image.Width, r0, c0, p, new Random(rng.Next()));
                        break;
                    default:
                        var mean = reference.Mean[k][c];
                        ForEach(p, r0, c0, image.Width, idx => data[offset + idx] = mean);
                        break;
                }
            }
        }

        for (var i = 0; i < image.Data.Length; i++)
        {
            image.Data[i] = Math.Clamp(image.Data[i], 0f, 1f);
        }

        return chosen;
    }

    private static void ForEach(int p, int r0, int c0, int width, Action<int> action)
    {
        for (var y = r0; y < r0 + p; y++)
        {
            for (var x = c0; x < c0 + p; x++)
            {
                action((y * width) + x);
            }
        }
    }

    private static void BoxBlur(Span<float> plane, int width, int r0, int c0, int p)
    {
        var copy = new float[p * p];
        for (var y = 0; y < p; y++)
        {
            for (var x = 0; x < p; x++)
            {
                double sum = 0;
                var count = 0;
                for (var dy = -1; dy <= 1; dy++)
                {
                    for (var dx = -1; dx <= 1; dx++)
                    {
                        int yy = y + dy, xx = x + dx;
                        if (yy >= 0 && yy < p && xx >= 0 && xx < p)
                        {
                            sum += plane[((r0 + yy) * width) + c0 + xx];
                            count++;
                        }
                    }
                }

                copy[(y * p) + x] = (float)(sum / count);
            }
        }

        for (var y = 0; y < p; y++)
        {
            copy.AsSpan(y * p, p).CopyTo(plane.Slice(((r0 + y) * width) + c0, p));
        }
    }

    private static void ShufflePatch(Span<float> plane, int width, int r0, int c0, int p, Random rng)
    {
        var values = new float[p * p];
        for (var y = 0; y < p; y++)
        {
            plane.Slice(((r0 + y) * width) + c0, p).CopyTo(values.AsSpan(y * p, p));
        }

        rng.Shuffle(values);
        for (var y = 0; y < p; y++)
        {
            values.AsSpan(y * p, p).CopyTo(plane.Slice(((r0 + y) * width) + c0, p));
        }
    }

    private static double Gaussian(Random rng)
    {
        // Box-Muller; 1 - NextDouble() avoids log(0).
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
