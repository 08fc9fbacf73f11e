namespace StrapVit.Core.Attacks;

/// <summary>
/// Projected Gradient Descent: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
/// Adversarial Attacks", arXiv 1706.06083. Distance: L∞ or L2 (<see cref="BoundedAttack.Norm"/>).
/// Each step: x ← clip(Proj_ε(x + s·α·d), 0, 1) with d = sign(g) (L∞) or g/‖g‖₂ (L2), g = ∇ₓL(x, c) the
/// cross-entropy gradient, s = +1 away from the label (untargeted) or −1 toward the target (targeted).
/// </summary>
/// <remarks>
/// <para>Random start: δ₀ uniform in the L∞ ball, or a uniformly random direction with a radius uniform in [0, ε]
/// for L2. Restarts run batched (N·R rows in each ONNX Runtime run) and each sample keeps its best restart: a
/// successful one first, then the highest untargeted loss (lowest targeted loss). Without a random start every
/// restart would be identical, so only one runs. With early stop, a sample stops moving once any of its restarts
/// meets the goal, and its rows leave the batch.</para>
/// <para>Tensor shapes: images <c>[N, C, H, W]</c> in [0, 1]; each run <c>[N·R, C, H, W]</c> with labels <c>[N·R]</c>.
/// Iterations reported: the gradient steps the sample took (at most <c>steps</c>).</para>
/// </remarks>
public sealed class Pgd : BoundedAttack
{
    public const float DefaultEpsilon = 8f / 255f;
    public const float DefaultStepSize = 2f / 255f;
    public const int DefaultSteps = 10;

    /// <param name="norm">Distance: <see cref="PerturbationNorm.Linf"/> (default) or <see cref="PerturbationNorm.L2"/>.</param>
    /// <param name="epsilon">Budget ε in that norm; default 8/255.</param>
    /// <param name="stepSize">Step α; default 2/255.</param>
    /// <param name="steps">Gradient steps; default 10.</param>
    /// <param name="randomStart">Start from a random point in the ε-ball; default true.</param>
    /// <param name="restarts">Random restarts, each sample keeping its best; default 1.</param>
    /// <param name="earlyStop">Stop a sample once it meets the goal; default false (the full budget of steps).</param>
    public Pgd(PerturbationNorm? norm = null, float epsilon = DefaultEpsilon, float stepSize = DefaultStepSize, int steps = DefaultSteps,
        bool randomStart = true, int restarts = 1, bool earlyStop = false)
        : base(norm ?? PerturbationNorm.Linf, epsilon)
    {
        if (!(stepSize >= 0) || !float.IsFinite(stepSize)) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "Must be finite and at least 0.");
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        ArgumentOutOfRangeException.ThrowIfLessThan(restarts, 1);
        StepSize = stepSize;
        Steps = steps;
        RandomStart = randomStart;
        Restarts = restarts;
        EarlyStop = earlyStop;
    }

    public override string Name => "pgd";

    public float StepSize { get; }

    public int Steps { get; }

    public bool RandomStart { get; }

    public int Restarts { get; }

    public bool EarlyStop { get; }

    protected override Perturbation Perturb(AttackContext context, float[] clean, int batch, Criterion criterion, Random random)
    {
        var size = context.SampleSize;
        var restarts = RandomStart ? Restarts : 1;
        var rows = batch * restarts;

        // Row r attacks sample r / restarts.
        var x = new float[rows * size];
        for (var r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * size, size);
            var x0 = clean.AsSpan(r / restarts * size, size);
            if (RandomStart)
            {
                Norm.RandomPoint(random, row, Epsilon);
                for (var i = 0; i < size; i++)
                {
                    row[i] += x0[i];
                }

                Norm.Project(x0, row, Epsilon);
                Clip01(row);
            }
            else
            {
                x0.CopyTo(row);
            }
        }

        var iterations = new int[batch];
        var done = new bool[batch];
        var step = criterion.LossSign * StepSize;
        var direction = new float[size];
        var active = new List<int>(rows);
        for (var t = 0; t < Steps; t++)
        {
            active.Clear();
            for (var r = 0; r < rows; r++)
            {
                if (!done[r / restarts]) active.Add(r);
            }

            if (active.Count == 0) break;
            var (pixels, labels) = Gather(x, active, size, restarts, criterion);
            var result = context.CrossEntropy(pixels, labels, active.Count);

            if (EarlyStop)
            {
                var reached = new HashSet<int>();
                for (var a = 0; a < active.Count; a++)
                {
                    var s = active[a] / restarts;
                    if (criterion.IsAdversarial(s, result.LogitsOf(a))) reached.Add(s);
                }

                foreach (var s in reached) done[s] = true;
            }

            for (var a = 0; a < active.Count; a++)
            {
                var r = active[a];
                var s = r / restarts;
                if (done[s]) continue;
                var row = x.AsSpan(r * size, size);
                Norm.Direction(result.PixelGradOf(a), direction);
                for (var i = 0; i < size; i++)
                {
                    row[i] += step * direction[i];
                }

                Norm.Project(clean.AsSpan(s * size, size), row, Epsilon);
                Clip01(row);
                iterations[s] = t + 1;
            }
        }

        return new Perturbation(restarts == 1 ? x : PickBest(context, x, batch, restarts, criterion), iterations);
    }

    private static (float[] Pixels, long[] Labels) Gather(float[] x, List<int> rows, int size, int restarts, Criterion criterion)
    {
        if (rows.Count * size == x.Length)
        {
            return (x, [.. rows.Select(r => criterion.Classes[r / restarts])]);
        }

        var pixels = new float[rows.Count * size];
        for (var a = 0; a < rows.Count; a++)
        {
            x.AsSpan(rows[a] * size, size).CopyTo(pixels.AsSpan(a * size, size));
        }

        return (pixels, [.. rows.Select(r => criterion.Classes[r / restarts])]);
    }

    private static float[] PickBest(AttackContext context, float[] x, int batch, int restarts, Criterion criterion)
    {
        var size = context.SampleSize;
        var labels = Enumerable.Range(0, batch * restarts).Select(r => criterion.Classes[r / restarts]).ToArray();
        var final = context.CrossEntropy(x, labels, batch * restarts);
        var best = new float[batch * size];
        for (var s = 0; s < batch; s++)
        {
            var bestRow = -1;
            var bestKey = (false, float.NegativeInfinity);
            for (var j = 0; j < restarts; j++)
            {
                var r = (s * restarts) + j;
                var key = (criterion.IsAdversarial(s, final.LogitsOf(r)), criterion.LossSign * final.Loss![r]);
                if (bestRow < 0 || key.Item1 && !bestKey.Item1 || key.Item1 == bestKey.Item1 && key.Item2 > bestKey.Item2)
                {
                    (bestRow, bestKey) = (r, key);
                }
            }

            x.AsSpan(bestRow * size, size).CopyTo(best.AsSpan(s * size, size));
        }

        return best;
    }
}
