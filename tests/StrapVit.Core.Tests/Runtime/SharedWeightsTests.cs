using Microsoft.Extensions.Logging.Abstractions;
using Onnx;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;
using StrapVit.Core.Tests.Gradients;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Runtime;

/// <summary>
/// Sessions over one shared copy of the weights (the runtime's) compute what the self-contained graphs compute:
/// forward logits, the token split, and both gradient objectives, on every fixture architecture.
/// </summary>
public sealed class SharedWeightsTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu, IntraOpThreads = 1 };
    private readonly DirectoryInfo cache = Directory.CreateTempSubdirectory("strapvit-shared-");

    public static TheoryData<string> Packages()
    {
        var data = new TheoryData<string>(GradientTestData.Variants.Select(GradientTestData.FixtureDir));
        data.Add(RepoPaths.Fixture("models", "rgb-vit-32"));
        data.Add(RepoPaths.DefaultModel);
        return data;
    }

    [Theory]
    [MemberData(nameof(Packages))]
    public void Shared_weight_sessions_give_the_outputs_of_the_self_contained_graphs(string packageDir)
    {
        var package = ModelPackage.Load(packageDir);
        using var shared = Load(package, share: true);
        using var own = Load(package, share: false);
        Assert.NotNull(shared.Weights);
        Assert.True(shared.Weights!.Count > 0);
        Assert.Null(own.Weights);

        const int batch = 3;
        var rng = new Random(7);
        var size = package.Manifest.Input.Size;
        var pixels = Enumerable.Range(0, batch * size).Select(_ => (float)rng.NextDouble()).ToArray();
        var labels = Enumerable.Range(0, batch).Select(i => (long)(i % package.Manifest.Labels.Count)).ToArray();
        var cotangent = Enumerable.Range(0, batch * package.Manifest.Labels.Count).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();

        AssertClose(own.Classifier.Logits(pixels, batch), shared.Classifier.Logits(pixels, batch));

        var (sg, og) = (shared.LoadGradients(), own.LoadGradients());
        var (sce, oce) = (sg.CrossEntropy(pixels, labels, batch), og.CrossEntropy(pixels, labels, batch));
        AssertClose(oce.Logits, sce.Logits);
        AssertClose(oce.Loss!, sce.Loss!);
        AssertClose(oce.PixelGrad, sce.PixelGrad);
        var (svjp, ovjp) = (sg.Vjp(pixels, cotangent, batch), og.Vjp(pixels, cotangent, batch));
        AssertClose(ovjp.Logits, svjp.Logits);
        AssertClose(ovjp.PixelGrad, svjp.PixelGrad);

        if (own.TokenModel is { } ownTokens)
        {
            var tokens = ownTokens.Embed(pixels, batch);
            AssertClose(tokens, shared.TokenModel!.Embed(pixels, batch));
            AssertClose(ownTokens.Encode(tokens, batch), shared.TokenModel.Encode(tokens, batch));
        }
    }

    [Fact]
    public void The_weights_are_held_once_and_the_cached_gradient_graphs_refer_to_them()
    {
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        using var runtime = Load(package, share: true);
        runtime.LoadGradients();
        var weights = runtime.Weights!;
        var forward = Onnx.ForwardGraph.LoadNormalized(package);
        var sharedNames = forward.Graph.Initializer.Where(i => i.Dims.Aggregate(1L, (a, d) => a * d) * 4 >= SharedWeights.MinBytes)
            .Select(i => i.Name).ToHashSet();

        Assert.Equal(Path.Combine(cache.FullName, $"{package.Sha256}.weights.v{SharedWeights.Version}.bin"), weights.FilePath);
        Assert.Equal(weights.Bytes, new FileInfo(weights.FilePath).Length);
        foreach (var objective in Enum.GetValues<GradientObjective>())
        {
            var path = Path.Combine(cache.FullName, GradientGraphs.SharedCacheFileName(package.Sha256, objective));
            var graph = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
            var external = graph.Graph.Initializer.Where(i => i.DataLocation == TensorProto.Types.DataLocation.External).ToList();
            Assert.Equal(weights.Count, external.Count);
            Assert.All(external, i => Assert.True(i.RawData.IsEmpty && sharedNames.Contains(i.Name), i.Name));
            Assert.True(weights.Covers(graph));
        }

        // A second runtime reads the same weights file and the cached graphs, and still agrees with the first.
        var written = File.GetLastWriteTimeUtc(weights.FilePath);
        using var again = Load(package, share: true);
        var pixels = new float[package.Manifest.Input.Size];
        AssertClose(runtime.LoadGradients().Vjp(pixels, new float[10], 1).PixelGrad, again.LoadGradients().Vjp(pixels, new float[10], 1).PixelGrad);
        Assert.Equal(written, File.GetLastWriteTimeUtc(again.Weights!.FilePath));
    }

    [Fact]
    public void A_damaged_cached_gradient_graph_is_rebuilt()
    {
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        var path = Path.Combine(cache.FullName, GradientGraphs.SharedCacheFileName(package.Sha256, GradientObjective.CrossEntropy));
        File.WriteAllText(path, "not an onnx model");

        using var runtime = Load(package, share: true);
        var pixels = new float[package.Manifest.Input.Size];
        var result = runtime.LoadGradients().CrossEntropy(pixels, [3], 1);

        Assert.True(result.Loss![0] > 0);
        Assert.True(runtime.Weights!.Covers(ModelProto.Parser.ParseFrom(File.ReadAllBytes(path))));
    }

    [Fact]
    public void A_cancelled_token_stops_a_run_with_OperationCanceledException()
    {
        using var runtime = Load(ModelPackage.Load(RepoPaths.DefaultModel), share: true);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var pixels = new float[runtime.Package.Manifest.Input.Size];

        Assert.Throws<OperationCanceledException>(() => runtime.Classifier.Logits(pixels, 1, cts.Token));
        Assert.Throws<OperationCanceledException>(() => runtime.LoadGradients().CrossEntropy(pixels, [0], 1, cts.Token));
        Assert.Equal(10, runtime.Classifier.Logits(pixels, 1).Length);
    }

    public void Dispose() => cache.Delete(recursive: true);

    private ModelRuntime Load(ModelPackage package, bool share) =>
        new ModelRuntimeFactory(NullLoggerFactory.Instance).Create(package, new ModelRuntimeOptions
        {
            Inference = new InferenceOptions { Device = Cpu.Device, IntraOpThreads = Cpu.IntraOpThreads, ShareWeights = share },
            CacheDirectory = Path.Combine(cache.FullName, share ? "" : "own"),
            TokenSplit = true,
        });

    private static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        Assert.True(GradientTestData.RelativeError(actual, expected) < 1e-5, $"relative error {GradientTestData.RelativeError(actual, expected):E2}");
    }
}
