using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;

namespace StrapVit.Benchmarks;

/// <summary>One benchmark case: a model package and a batch size. ToString is BenchmarkDotNet's column text.</summary>
public sealed record BenchCase(string Model, string PackageDir, int Batch)
{
    public override string ToString() => $"{Model} x{Batch}";
}

/// <summary>
/// Which packages exist on this machine: the embedded model, the previous one (3x3 stem), and the exports of tools/gradients/export_vit_b16.py.
/// <c>STRAPVIT_BENCH_MODELS</c> (names) and <c>STRAPVIT_BENCH_BATCHES</c> (batch sizes), comma-separated, narrow the cases.
/// </summary>
public static class BenchModels
{
    public static string RepoRoot { get; } = FindRoot();

    /// <summary>Cache for the built gradient graphs (ignored by git), so each case builds ViT-B/16's graph once.</summary>
    public static string CacheDir => Path.Combine(RepoRoot, "tools", "gradients", "out", "cache");

    public static IEnumerable<BenchCase> Available()
    {
        var embedded = Path.Combine(RepoRoot, "models", "fashion-vit-tiny");
        var stem = Path.Combine(RepoRoot, "models", "fashion-vit-tiny-stem");
        var tiny = Path.Combine(RepoRoot, "tools", "gradients", "out", "tiny");
        var b16 = Path.Combine(RepoRoot, "tools", "gradients", "out", "vit-b16");
        var only = Environment.GetEnvironmentVariable("STRAPVIT_BENCH_MODELS")?.Split(',');
        var onlyBatches = Environment.GetEnvironmentVariable("STRAPVIT_BENCH_BATCHES")?.Split(',').Select(b => int.Parse(b, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        (string Name, string Dir, int[] Batches)[] all =
        [
            ("fashion-vit-tiny", embedded, [1, 32]),
            ("fashion-vit-tiny-stem", stem, [1, 32]),
            ("tiny-seeded", tiny, [1, 32]),
            ("vit-b16", b16, [1, 8]),
        ];
        foreach (var (name, dir, batches) in all)
        {
            if (!File.Exists(Path.Combine(dir, "model.onnx")) || (only is not null && !only.Contains(name))) continue;
            foreach (var batch in batches.Where(b => onlyBatches is null || onlyBatches.Contains(b))) yield return new BenchCase(name, dir, batch);
        }
    }

    /// <summary>
    /// The execution provider the benchmarks run on: <c>STRAPVIT_BENCH_DEVICE</c> = <c>Cpu</c> (default), <c>Cuda</c>
    /// (CUDA or fail; tools/gpu-check.sh sets it) or <c>Auto</c>.
    /// </summary>
    public static InferenceDevice Device { get; } =
        Enum.TryParse<InferenceDevice>(Environment.GetEnvironmentVariable("STRAPVIT_BENCH_DEVICE"), ignoreCase: true, out var device)
            ? device
            : InferenceDevice.Cpu;

    /// <summary>
    /// The package's model runtime on <see cref="Device"/>, built by the same factory the service uses, gradient
    /// graphs cached in <see cref="CacheDir"/>. <c>STRAPVIT_SHARE_WEIGHTS=0</c> gives every session its own prepacked
    /// weights instead; <c>STRAPVIT_FUSE_ATTENTION=0</c> keeps the standard-op attention; <c>STRAPVIT_ALLOW_SPINNING=1</c>
    /// lets idle intra-op threads spin (ONNX Runtime's default); <c>STRAPVIT_VIEW_PARALLELISM</c> sets
    /// <c>Inference:ViewParallelism</c> (1: masked views as one run on the intra-op pool, as before session 7);
    /// <c>STRAPVIT_VIEW_MASKING</c> sets <c>Inference:ViewMasking</c> (<c>Drop</c>, the default, or <c>KeyMask</c>).
    /// <paramref name="defense"/> loads the patch defense with those options; <paramref name="device"/> overrides <see cref="Device"/>.
    /// </summary>
    public static ModelRuntime Runtime(string packageDir, int threads, bool tokenSplit = false, DefenseOptions? defense = null, InferenceDevice? device = null) =>
        new ModelRuntimeFactory(NullLoggerFactory.Instance).Create(ModelPackage.Load(packageDir), new ModelRuntimeOptions
        {
            Inference = new InferenceOptions
            {
                Device = device ?? Device,
                IntraOpThreads = threads,
                ShareWeights = Environment.GetEnvironmentVariable("STRAPVIT_SHARE_WEIGHTS") != "0",
                FuseAttention = Environment.GetEnvironmentVariable("STRAPVIT_FUSE_ATTENTION") != "0",
                AllowSpinning = Environment.GetEnvironmentVariable("STRAPVIT_ALLOW_SPINNING") == "1",
                ViewParallelism = EnvInt("STRAPVIT_VIEW_PARALLELISM", 0),
                ViewMasking = Enum.TryParse<ViewMasking>(Environment.GetEnvironmentVariable("STRAPVIT_VIEW_MASKING"), ignoreCase: true, out var masking) ? masking : ViewMasking.Drop,
            },
            CacheDirectory = CacheDir,
            TokenSplit = tokenSplit,
            Defense = defense,
        });

    /// <summary>An image file decoded and resized to the model's input, as the service decodes a request.</summary>
    public static float[] Decode(string file, ModelInputSpec input) =>
        new ImageDecoder(new ImageLimits()).Decode(File.ReadAllBytes(file), input.Channels, input.Height, input.Width).Data;

    /// <summary>An integer from the environment variable <paramref name="name"/>, or <paramref name="fallback"/>.</summary>
    internal static int EnvInt(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : fallback;

    private static string FindRoot()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "StrapVitService.sln"))) return dir.FullName;
            }
        }

        throw new InvalidOperationException("Run the benchmarks from inside the repository (StrapVitService.sln not found).");
    }
}
