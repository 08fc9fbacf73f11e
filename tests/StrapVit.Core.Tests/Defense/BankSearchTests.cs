using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>
/// The bank search as an ONNX graph (what a GPU runs): the same scores and neighbours as a brute-force search in double
/// precision, here on the CPU provider; and the service attaches it only where the model runs on CUDA.
/// </summary>
public sealed class BankSearchTests
{
    private static readonly OnnxSessionFactory CpuSessions = new(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance);

    private static TokenBank RandomBank(int dim, int entries, int positions, int neighbors, int seed)
    {
        var rng = new Random(seed);
        return new TokenBank
        {
            Dim = dim,
            Neighbors = neighbors,
            Offset = Enumerable.Range(0, positions).Select(_ => Enumerable.Range(0, dim).Select(_ => (float)rng.NextDouble()).ToArray()).ToArray(),
            Vectors = Enumerable.Range(0, entries * dim).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray(),
        };
    }

    [Theory]
    [InlineData(5, 200, 9, 4)]
    [InlineData(64, 1024, 50, 3)]   // the embedded model's shape: 49 patch tokens of 64 channels, 1,024 entries
    [InlineData(16, 40, 3, 1)]
    public void Graph_scores_and_neighbours_match_a_double_precision_brute_force(int dim, int entries, int positions, int neighbors)
    {
        var bank = RandomBank(dim, entries, positions, neighbors, seed: dim);
        var rng = new Random(7);
        var tokens = Enumerable.Range(0, positions * dim).Select(_ => (float)((rng.NextDouble() * 3) - 1.5)).ToArray();
        var scores = new double[positions];
        var nearest = new int[positions * neighbors];
        using var search = new BankSearch(bank, CpuSessions);

        search.ScoreImage(tokens, 1, scores, nearest);

        Assert.Equal(OnnxSessionFactory.Cpu, search.ExecutionProvider);
        Assert.Equal(0, scores[0]); // the class token is not scored
        for (var t = 1; t < positions; t++)
        {
            var distances = Enumerable.Range(0, entries).Select(j =>
            {
                double sq = 0;
                for (var c = 0; c < dim; c++)
                {
                    var diff = tokens[(t * dim) + c] - (double)bank.Offset[t][c] - bank.Vectors[(j * dim) + c];
                    sq += diff * diff;
                }

                return (Distance: Math.Sqrt(sq), Index: j);
            }).OrderBy(x => x.Distance).Take(neighbors).ToArray();
            Assert.Equal(distances.Average(x => x.Distance), scores[t], 1e-4 * Math.Max(1, scores[t]));
            Assert.Equal(distances.Select(x => x.Index).ToArray(), nearest.AsSpan(t * neighbors, neighbors).ToArray());
        }
    }

    [Fact]
    public void A_bank_with_a_search_scores_through_it_and_the_embedded_models_scores_agree_with_the_cpu_kernel()
    {
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        var calibration = DefenseCalibration.Load(DefenseCalibration.CandidatePaths(package, null).First(File.Exists), package);
        var bank = calibration.Tokens!.Bank!;
        using var tokens = new TokenSpaceModel(package, CpuSessions);
        using var search = new BankSearch(bank, CpuSessions);
        var withSearch = bank with { Search = search };
        var data = StrapVit.Core.Datasets.IdxDataset.Load(RepoPaths.Sample("fashion-mnist/test-1000-images-idx3-ubyte.gz"), RepoPaths.Sample("fashion-mnist/test-1000-labels-idx1-ubyte.gz"));
        for (var i = 0; i < 5; i++)
        {
            var embedded = tokens.Embed(data.Image(i).Data, 1);
            var (cpu, graph) = (new double[tokens.TokenCount], new double[tokens.TokenCount]);
            var (cpuNearest, graphNearest) = (new int[tokens.TokenCount * bank.Neighbors], new int[tokens.TokenCount * bank.Neighbors]);

            bank.ScoreImage(embedded, tokens.FirstPatchToken, cpu, cpuNearest);
            withSearch.ScoreImage(embedded, tokens.FirstPatchToken, graph, graphNearest);

            for (var t = tokens.FirstPatchToken; t < tokens.TokenCount; t++) Assert.Equal(cpu[t], graph[t], 1e-4 * Math.Max(1, cpu[t]));
            Assert.True(cpuNearest.Zip(graphNearest).Count(p => p.First != p.Second) <= cpuNearest.Length / 50, "neighbours differ beyond near-ties");
        }
    }

    [Fact]
    public void On_the_cpu_the_defense_keeps_the_calibrations_own_kernel()
    {
        using var runtime = new ModelRuntimeFactory(NullLoggerFactory.Instance).Create(ModelPackage.Load(RepoPaths.DefaultModel), new ModelRuntimeOptions
        {
            Inference = new InferenceOptions { Device = InferenceDevice.Cpu },
            CacheDirectory = Path.Combine(Path.GetTempPath(), "strapvit-bank-search-test"),
            Defense = new DefenseOptions(),
        });

        Assert.NotNull(runtime.Defense?.Defense);
        Assert.Null(runtime.Defense!.Search);
    }
}
