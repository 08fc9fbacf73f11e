using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Core.Tests.Gradients;

/// <summary>Locations of the embedded model and the parity fixtures, and shared helpers for gradient tests.</summary>
internal static class GradientTestData
{
    public static readonly string[] Variants =
    [
        "c1_cls_erf_op17", "c3_mean_tanh_op14", "c3_cls_hf_op15", "c1_mean_relu_op17", "torchvision_op17", "torchvision_tanhrep_op14",
    ];

    private static readonly Lazy<string> Root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "StrapVitService.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException("StrapVitService.sln not found above the test output folder.");
    });

    public static string RepoRoot => Root.Value;

    public static string FixtureDir(string variant) => Path.Combine(RepoRoot, "tests", "fixtures", "gradients", variant);

    public static string EmbeddedModelDir => Path.Combine(RepoRoot, "models", "fashion-vit-tiny");

    public static bool EmbeddedModelExists =>
        File.Exists(Path.Combine(EmbeddedModelDir, ModelPackage.OnnxFileName)) && File.Exists(Path.Combine(EmbeddedModelDir, ModelPackage.ManifestFileName));

    public static OnnxSessionFactory CpuSessions { get; } =
        new(new InferenceOptions { Device = InferenceDevice.Cpu, IntraOpThreads = 2 }, NullLogger<OnnxSessionFactory>.Instance);

    public static GradientGraphs UncachedGraphs { get; } = new(null, NullLogger<GradientGraphs>.Instance);

    public static GradientRunner CreateRunner(string packageDir) =>
        GradientRunner.Create(ModelPackage.Load(packageDir), UncachedGraphs, CpuSessions);

    /// <summary>||a − b||₂ / ||b||₂ in double precision.</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double diff = 0, norm = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            diff += Math.Pow(actual[i] - (double)expected[i], 2);
            norm += (double)expected[i] * expected[i];
        }

        return Math.Sqrt(diff) / Math.Max(Math.Sqrt(norm), 1e-30);
    }

    /// <summary>max |a − b| / max |b|: catches a few wrong elements that a norm over many elements would hide.</summary>
    public static double ScaledMaxError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        double worst = 0, scale = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - (double)expected[i]));
            scale = Math.Max(scale, Math.Abs((double)expected[i]));
        }

        return worst / Math.Max(scale, 1e-30);
    }
}

/// <summary>One variant's PyTorch float64 reference (written by tools/gradients/make_fixtures.py).</summary>
internal sealed class ParityReference
{
    private readonly Dictionary<string, float[]> arrays = new(StringComparer.Ordinal);

    private ParityReference(int batch, long[] labels)
    {
        Batch = batch;
        Labels = labels;
    }

    public int Batch { get; }

    public long[] Labels { get; }

    public float[] this[string name] => arrays[name];

    public static ParityReference Load(string dir)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json")));
        var root = json.RootElement;
        var reference = new ParityReference(root.GetProperty("batch").GetInt32(), root.GetProperty("labels").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        var blob = File.ReadAllBytes(Path.Combine(dir, "reference.bin"));
        foreach (var entry in root.GetProperty("arrays").EnumerateObject())
        {
            var offset = entry.Value.GetProperty("offset").GetInt32();
            var count = entry.Value.GetProperty("count").GetInt32();
            var values = new float[count];
            Buffer.BlockCopy(blob, offset, values, 0, count * sizeof(float));
            reference.arrays[entry.Name] = values;
        }

        return reference;
    }
}
