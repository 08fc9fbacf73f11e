using System.Diagnostics;
using System.Globalization;
using StrapVit.Core.Certification;
using StrapVit.Core.Datasets;
using StrapVit.Core.Models;

namespace StrapVit.Benchmarks;

/// <summary>
/// <c>certify [images] [patch] [strides]</c>: the cost of one certified classification (embedding + PatchCleanser's
/// masked forwards), one image at a time as the service answers it, on each available package: wall time, process
/// CPU time and masked forwards per image. The embedded model is timed on the shipped test images (the cost depends
/// on how many images reach the all-pairs check); other packages on seeded random images. <c>patch</c> 0 means
/// about 2% of the image area. A package whose encoder takes no shorter sequence and that has no calibration is
/// timed with zero tokens as the replacement: the cost is the same as with the clean mean tokens, the answers are not.
/// <c>STRAPVIT_BENCH_THREADS</c> sets the sessions' intra-op threads (default 0, ONNX Runtime's choice) and
/// <c>STRAPVIT_CERTIFY_BATCH</c> the views per chunk (Certify:BatchSize, default 256). <c>STRAPVIT_CERTIFY_BORDERS</c>
/// lists the border strides to time with each stride, as <c>rows x cols</c> (default <c>0x2</c>, the service's;
/// <c>0x0</c> is PatchCleanser's uniform set), e.g. <c>0x2,0x0</c>. <c>STRAPVIT_CERTIFY_IMAGE</c> names one image file to
/// certify <c>images</c> times instead (decoded as the service decodes a request).
/// </summary>
public static class CertifyTiming
{
    public static void Run(int images, int patch, int[] strides)
    {
        var borders = (Environment.GetEnvironmentVariable("STRAPVIT_CERTIFY_BORDERS") ?? "0x2").Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(b => b.Split('x')).Select(p => (Rows: int.Parse(p[0], CultureInfo.InvariantCulture), Cols: int.Parse(p[1], CultureInfo.InvariantCulture))).ToArray();
        Console.WriteLine("| model | patch | stride | border strides | masks | forwards/image | wall ms/image (mean) | wall ms/image (median) | CPU ms/image |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var dir in BenchModels.Available().Select(c => c.PackageDir).Distinct())
        {
            using var runtime = BenchModels.Runtime(dir, threads: BenchModels.EnvInt("STRAPVIT_BENCH_THREADS", 0), tokenSplit: true);
            var package = runtime.Package;
            var input = package.Manifest.Input;
            var side = patch > 0 ? patch : (int)Math.Round(Math.Sqrt(0.02 * input.Height * input.Width));
            var own = runtime.TokenModel ?? throw new InvalidOperationException($"{package.Manifest.Name} has no tokens tensor.");
            var count = package.Manifest.Name == "vit-b16" ? Math.Min(images, 2) : images;
            var pixels = Images(package, count);
            foreach (var (stride, border) in strides.SelectMany(s => borders.Select(b => (s, b))))
            {
                var options = new CertifyOptions { PatchSize = side, MaskStride = stride, RowBorderStride = border.Rows, ColBorderStride = border.Cols, MaxPatchSize = Math.Max(side, 16), MaxForwards = int.MaxValue, BatchSize = BenchModels.EnvInt("STRAPVIT_CERTIFY_BATCH", 256) };
                using var setup = CertifyLoader.Create(package, runtime.Sessions, options, null, tokens: own);
                var certifier = setup.Certifier ?? new PatchCertifier(
                    new MaskedTokenClassifier(own, Enumerable.Range(0, own.TokenCount).Select(_ => new float[own.Dim]).ToArray(), options.BatchSize, MaskingChoice.Replace), options);

                // Warm-up: one embedding and one masked view (a full certificate would double ViT-B/16's minutes).
                certifier.Classifier.Logits(certifier.Classifier.Model.Embed(pixels[0], 1), [certifier.MasksFor(side).Masks[0]]);
                var wall = new List<double>();
                var forwards = 0L;
                var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                foreach (var image in pixels)
                {
                    var sw = Stopwatch.StartNew();
                    forwards += certifier.Certify(image, side).Report.Forwards;
                    wall.Add(sw.Elapsed.TotalMilliseconds);
                }

                var cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMilliseconds / pixels.Count;
                wall.Sort();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {package.Manifest.Name} ({certifier.Classifier.MethodName}{(own.MasksKeys ? ", key mask" : "")}) | {side} | {stride} | {border.Rows}x{border.Cols} | {certifier.MasksFor(side).Count} | {forwards / (double)pixels.Count:F0} | {wall.Average():F1} | {wall[wall.Count / 2]:F1} | {cpuMs:F1} |"));
            }
        }
    }

    private static List<float[]> Images(ModelPackage package, int count)
    {
        var input = package.Manifest.Input;
        if (Environment.GetEnvironmentVariable("STRAPVIT_CERTIFY_IMAGE") is { Length: > 0 } file)
        {
            // One image file, decoded as the service decodes a request, certified count times.
            var image = BenchModels.Decode(file, input);
            return Enumerable.Range(0, count).Select(_ => image.ToArray()).ToList();
        }

        var test = Path.Combine(BenchModels.RepoRoot, "samples", "fashion-mnist", "test-1000-images-idx3-ubyte.gz");
        if (input is { Channels: 1, Height: 28, Width: 28 })
        {
            var data = IdxDataset.Load(test, IdxDataset.LabelsBeside(test));
            return Enumerable.Range(0, count).Select(i => data.Image(i).Data.ToArray()).ToList();
        }

        var rng = new Random(1);
        return Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, input.Size).Select(_ => (float)rng.NextDouble()).ToArray()).ToList();
    }
}
