using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;

namespace StrapVit.Benchmarks;

/// <summary>
/// <c>device-parity MODEL-DIR IDX-IMAGES [count] [device]</c>: the same images through the CPU and the CUDA execution provider
/// (or <c>device</c>: <c>Cpu</c> against itself is the dry run, every difference zero),
/// each runtime built by the service's factory, and how far apart the answers are: logits, the cross-entropy gradient
/// graph's pixel gradient, and the defended logits (<c>defense=mitigate</c>, the service's default options, seed 1).
/// The CPU run is the reference the tests check against PyTorch; this checks that CUDA gives the same answers.
/// With the bank search on the device, its scores on the same tokens against the CPU kernel's. Exit code 1 when an
/// argmax differs on more than 1% of the images, a gradient's cosine to the CPU one is under 0.999, a bank score
/// differs by more than 0.1%, or the defense loads on one device only.
/// </summary>
public static class DeviceParity
{
    public static int Run(string packageDir, string idxImages, int count, InferenceDevice other = InferenceDevice.Cuda)
    {
        var data = IdxDataset.Load(idxImages, IdxDataset.LabelsBeside(idxImages));
        count = Math.Min(count, data.Count);
        using var cpu = BenchModels.Runtime(packageDir, threads: 2, defense: new DefenseOptions(), device: InferenceDevice.Cpu);
        using var cuda = BenchModels.Runtime(packageDir, threads: 2, defense: new DefenseOptions(), device: other);
        Console.WriteLine($"{cpu.Package.Manifest.Name}: {count} images, CPU on {cpu.ExecutionProvider}, other on {cuda.ExecutionProvider}");
        if (other == InferenceDevice.Cuda && cuda.ExecutionProvider != "CUDAExecutionProvider") throw new InvalidOperationException("The CUDA runtime is not on CUDA.");

        var classes = cpu.Package.Manifest.Labels.Count;
        var (logitDiff, plainDisagree, defendedDisagree, defendedDiff) = (0.0, 0, 0, 0.0);
        var (minCos, maxGradRel) = (1.0, 0.0);
        var (cpuRight, cudaRight, cpuDefRight, cudaDefRight) = (0, 0, 0, 0);
        var (cpuDefense, cudaDefense) = (cpu.Defense?.Defense, cuda.Defense?.Defense);
        if ((cpuDefense is null) != (cudaDefense is null))
        {
            Console.WriteLine($"device-parity: FAIL: the defense loads on one device only (CPU: {cpu.Defense?.UnavailableReason ?? "loaded"}; {other}: {cuda.Defense?.UnavailableReason ?? "loaded"})");
            return 1;
        }

        // The neighbour search alone, on the same (CPU-embedded) tokens: the other device's search against the CPU kernel.
        var search = cuda.Defense?.Search;
        var bank = cpu.Defense?.Calibration?.Tokens?.Bank;
        var maxScoreRel = 0.0;
        for (var i = 0; i < count; i++)
        {
            var pixels = data.Image(i).Data;
            long[] label = [data.Labels[i]];
            var (a, b) = (cpu.Classifier.Logits(pixels, 1), cuda.Classifier.Logits(pixels, 1));
            logitDiff = Math.Max(logitDiff, MaxAbs(a, b));
            plainDisagree += ArgMax(a) != ArgMax(b) ? 1 : 0;
            cpuRight += ArgMax(a) == label[0] ? 1 : 0;
            cudaRight += ArgMax(b) == label[0] ? 1 : 0;

            var (ga, gb) = (cpu.LoadGradients().CrossEntropy(pixels, label, 1), cuda.LoadGradients().CrossEntropy(pixels, label, 1));
            minCos = Math.Min(minCos, Cosine(ga.PixelGrad, gb.PixelGrad));
            maxGradRel = Math.Max(maxGradRel, MaxAbs(ga.PixelGrad, gb.PixelGrad) / Math.Max(1e-12, ga.PixelGrad.Max(Math.Abs)));

            if (search is not null && bank is not null && cpu.TokenModel is { } tm)
            {
                var embedded = tm.Embed(pixels, 1);
                var (kernel, onDevice) = (new double[tm.TokenCount], new double[tm.TokenCount]);
                bank.ScoreImage(embedded, tm.FirstPatchToken, kernel);
                search.ScoreImage(embedded, tm.FirstPatchToken, onDevice);
                for (var t = tm.FirstPatchToken; t < tm.TokenCount; t++) maxScoreRel = Math.Max(maxScoreRel, Math.Abs(kernel[t] - onDevice[t]) / Math.Max(1e-12, kernel[t]));
            }

            if (cpuDefense is null || cudaDefense is null) continue;
            var (da, db) = (cpuDefense.Run(pixels, 1, DefenseMode.Mitigate, [1])[0].Logits, cudaDefense.Run(pixels, 1, DefenseMode.Mitigate, [1])[0].Logits);
            defendedDiff = Math.Max(defendedDiff, MaxAbs(da, db));
            defendedDisagree += ArgMax(da) != ArgMax(db) ? 1 : 0;
            cpuDefRight += ArgMax(da) == label[0] ? 1 : 0;
            cudaDefRight += ArgMax(db) == label[0] ? 1 : 0;
        }

        Console.WriteLine($"  plain: accuracy CPU {100.0 * cpuRight / count:F1}% / {other} {100.0 * cudaRight / count:F1}%, argmax differs on {plainDisagree}, max |logit diff| {logitDiff:G3} ({classes} classes)");
        Console.WriteLine($"  gradient (cross-entropy, d loss / d pixels): min cosine of {other} to CPU {minCos:F6}, max |diff| / max |CPU grad| {maxGradRel:G3}");
        if (cpuDefense is not null)
        {
            Console.WriteLine($"  bank search: CPU {(cpu.Defense?.Search?.ExecutionProvider ?? "kernel")}, {other} {(search?.ExecutionProvider ?? "kernel")}"
                + (search is null ? "" : $"; on the same tokens, largest relative score difference to the CPU kernel {maxScoreRel:G3}"));
            Console.WriteLine($"  defended (mitigate, {cpuDefense.Variant}): accuracy CPU {100.0 * cpuDefRight / count:F1}% / {other} {100.0 * cudaDefRight / count:F1}%, argmax differs on {defendedDisagree}, max |logit diff| {defendedDiff:G3}");
        }
        else
        {
            Console.WriteLine("  defended: no defense loaded (no calibration?)");
        }

        var ok = plainDisagree <= count / 100 && defendedDisagree <= count / 100 && minCos >= 0.999 && maxScoreRel <= 1e-3;
        Console.WriteLine(ok ? "device-parity: ok" : "device-parity: FAIL");
        return ok ? 0 : 1;
    }

    private static int ArgMax(float[] v)
    {
        var best = 0;
        for (var i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    private static double MaxAbs(float[] a, float[] b)
    {
        var m = 0.0;
        for (var i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    private static double Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }

        return na == 0 && nb == 0 ? 1 : dot / Math.Sqrt(na * nb);
    }
}
