using StrapVit.Core.Numerics;

namespace StrapVit.Core.Attacks;

/// <summary>
/// DeepFool: Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to fool deep neural
/// networks", arXiv 1511.04599. Distance: L2, minimal (no budget). Each iteration linearises the logits f at the
/// current point: for every candidate k, w_k = ∇f_k − ∇f_o and f'_k = f_k − f_o (o the original class); it picks the
/// k minimising |f'_k| / ‖w_k‖₂ and adds r = (|f'_k| + 1e-4) / ‖w_k‖₂² · w_k to the accumulated perturbation. The
/// overshoot multiplies the accumulated perturbation, not each step: x_i = clip(x + (1 + overshoot)·r_total, 0, 1),
/// which is also the returned image. It stops when the label flips or after <c>maxIterations</c>.
/// </summary>
/// <remarks>
/// <para>Candidates: the <c>candidates</c> classes with the largest clean logits (the original class included, and
/// added if it is not among them). Targeted: the only candidate is the target, so the steps head for it.</para>
/// <para>All w_k of all unfinished samples come from one vjp run per iteration: the cotangent rows are
/// e_k − e_o, one per (sample, candidate), so each output row is already ∇(f_k − f_o) (a batch of
/// <c>[N·(candidates−1), C, H, W]</c> pixels and <c>[N·(candidates−1), K]</c> cotangents).</para>
/// <para>Iterations reported: linearisation steps taken.</para>
/// </remarks>
public sealed class DeepFool : Attack
{
    public const float DefaultOvershoot = 0.02f;
    public const int DefaultMaxIterations = 50;
    public const int DefaultCandidates = 10;

    /// <param name="overshoot">Factor (1 + overshoot) on the accumulated perturbation; default 0.02.</param>
    /// <param name="maxIterations">Linearisation steps at most; default 50.</param>
    /// <param name="candidates">Classes considered, from the top clean logits, the original included; default 10 (capped at K).</param>
    public DeepFool(float overshoot = DefaultOvershoot, int maxIterations = DefaultMaxIterations, int candidates = DefaultCandidates)
    {
        if (!(overshoot >= 0) || !float.IsFinite(overshoot)) throw new ArgumentOutOfRangeException(nameof(overshoot), overshoot, "Must be finite and at least 0.");
        ArgumentOutOfRangeException.ThrowIfNegative(maxIterations);
        ArgumentOutOfRangeException.ThrowIfLessThan(candidates, 2);
        Overshoot = overshoot;
        MaxIterations = maxIterations;
        Candidates = candidates;
    }

    public override string Name => "deepfool";

    public float Overshoot { get; }

    public int MaxIterations { get; }

    public int Candidates { get; }

    protected override Perturbation Perturb(AttackContext context, float[] clean, int batch, Criterion criterion, Random random)
    {
        var size = context.SampleSize;
        var k = context.Model.Classes;
        var cleanLogits = context.Logits(clean, batch);

        // Per sample: the original class o and the other candidate classes.
        var original = new int[batch];
        var others = new int[batch][];
        for (var s = 0; s < batch; s++)
        {
            original[s] = (int)criterion.Classes[s];
            if (criterion.Targeted)
            {
                // The target is the goal; linearise around the clean prediction toward it.
                original[s] = Probabilities.ArgMax(cleanLogits.AsSpan(s * k, k));
                others[s] = original[s] == criterion.Classes[s] ? [] : [(int)criterion.Classes[s]];
            }
            else
            {
                var o = original[s];
                others[s] = [.. Probabilities.TopK(cleanLogits.AsSpan(s * k, k), Math.Min(Candidates, k)).Where(c => c != o)
                    .Take(Math.Min(Candidates, k) - 1)];
            }
        }

        var rTotal = new float[batch * size];
        var x = (float[])clean.Clone();
        var iterations = new int[batch];
        var done = new bool[batch];
        for (var it = 0; it < MaxIterations; it++)
        {
            var active = Enumerable.Range(0, batch).Where(s => !done[s] && others[s].Length > 0).ToList();
            if (active.Count == 0) break;
            var rows = active.Sum(s => others[s].Length);
            var pixels = new float[rows * size];
            var cotangents = new float[rows * k];
            var row = 0;
            foreach (var s in active)
            {
                foreach (var c in others[s])
                {
                    x.AsSpan(s * size, size).CopyTo(pixels.AsSpan(row * size, size));
                    cotangents[(row * k) + c] = 1f;
                    cotangents[(row * k) + original[s]] = -1f;
                    row++;
                }
            }

            var result = context.Vjp(pixels, cotangents, rows);
            row = 0;
            foreach (var s in active)
            {
                var first = row;
                row += others[s].Length;
                if (criterion.IsAdversarial(s, result.LogitsOf(first)))
                {
                    done[s] = true;
                    continue;
                }

                var logits = result.LogitsOf(first);
                var bestRow = -1;
                var bestScore = double.PositiveInfinity;
                var bestF = 0.0;
                var bestNorm = 0.0;
                for (var j = 0; j < others[s].Length; j++)
                {
                    double f = logits[others[s][j]] - logits[original[s]];
                    double n = PerturbationNorm.L2.Measure(result.PixelGradOf(first + j));
                    var score = n > 0 ? Math.Abs(f) / n : double.PositiveInfinity;
                    if (score < bestScore)
                    {
                        (bestRow, bestScore, bestF, bestNorm) = (first + j, score, f, n);
                    }
                }

                if (bestRow < 0)
                {
                    // Every w_k is zero: the model is flat here and DeepFool has no direction.
                    done[s] = true;
                    continue;
                }

                var w = result.PixelGradOf(bestRow);
                var scale = (float)((Math.Abs(bestF) + 1e-4) / (bestNorm * bestNorm));
                var r = rTotal.AsSpan(s * size, size);
                var xs = x.AsSpan(s * size, size);
                var x0 = clean.AsSpan(s * size, size);
                for (var i = 0; i < size; i++)
                {
                    r[i] += scale * w[i];
                    xs[i] = Math.Clamp(x0[i] + ((1f + Overshoot) * r[i]), 0f, 1f);
                }

                iterations[s]++;
            }
        }

        return new Perturbation(x, iterations);
    }
}
