using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>
/// The bank search as an ONNX graph (what the service runs on a GPU), checked here on the CPU provider: the same scores
/// and neighbours as a brute-force search in double precision; and the service attaches it only where the model runs
/// on CUDA (the GPU side is checked by `device-parity` on a GPU machine, docs/BENCHMARKS.md).
/// </summary>
public sealed class BankSearchTests
{
    private static readonly OnnxSessionFactory CpuSessions = new(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance);

    [Theory]
    [InlineData(5, 200, 9, 4, 1)]
    [InlineData(64, 1024, 50, 3, 1)]   // the embedded model's shape: 49 patch tokens of 64 channels, 1,024 entries
    [InlineData(16, 40, 3, 1, 1)]
    [InlineData(8, 3, 4, 5, 0)]        // k larger than the bank: the 3 entries, in the first 3 of each token's 5 slots; no class token
    public void Graph_scores_and_neighbours_match_a_double_precision_brute_force(int dim, int entries, int positions, int neighbors, int first)
    {
        var bank = TokenBankTests.RandomBank(entries, positions, neighbors, seed: dim, dim: dim);
        var rng = new Random(7);
        var tokens = Enumerable.Range(0, positions * dim).Select(_ => (float)((rng.NextDouble() * 3) - 1.5)).ToArray();
        var scores = new double[positions];
        var nearest = Enumerable.Repeat(-7, positions * neighbors).ToArray();
        using var search = new BankSearch(bank, CpuSessions);
        var k = Math.Min(neighbors, entries);

        search.ScoreImage(tokens, first, scores, nearest);

        Assert.Equal(OnnxSessionFactory.Cpu, search.ExecutionProvider);
        Assert.Equal(k, search.K);
        if (first == 1) Assert.Equal(0, scores[0]); // the class token is not scored
        for (var t = first; t < positions; t++)
        {
            var (expected, expectedNearest) = TokenBankTests.Reference(bank, tokens.AsSpan(t * dim, dim), t);
            Assert.Equal(expected, scores[t], 1e-4 * Math.Max(1, scores[t]));
            Assert.Equal(expectedNearest, nearest.AsSpan(t * neighbors, k).ToArray());
            Assert.All(nearest.AsSpan((t * neighbors) + k, neighbors - k).ToArray(), v => Assert.Equal(-7, v)); // slots past k untouched
        }
    }

    [Fact]
    public void The_embedded_models_scores_through_the_graph_agree_with_the_cpu_kernel_and_a_bank_scores_through_its_search()
    {
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        var calibration = DefenseCalibration.Load(DefenseCalibration.CandidatePaths(package, null).First(File.Exists), package);
        var bank = calibration.Tokens!.Bank!;
        using var tokens = new TokenSpaceModel(package, CpuSessions);
        using var search = new BankSearch(bank, CpuSessions);
        var other = TokenBankTests.RandomBank(300, tokens.TokenCount, bank.Neighbors, seed: 5, dim: bank.Dim);
        using var otherSearch = new BankSearch(other, CpuSessions);
        var delegating = bank with { Search = otherSearch };
        var data = StrapVit.Core.Datasets.IdxDataset.Load(RepoPaths.Sample("fashion-mnist/test-1000-images-idx3-ubyte.gz"), RepoPaths.Sample("fashion-mnist/test-1000-labels-idx1-ubyte.gz"));
        for (var i = 0; i < 5; i++)
        {
            var embedded = tokens.Embed(data.Image(i).Data, 1);
            var (cpu, graph) = (new double[tokens.TokenCount], new double[tokens.TokenCount]);
            var (cpuNearest, graphNearest) = (new int[tokens.TokenCount * bank.Neighbors], new int[tokens.TokenCount * bank.Neighbors]);
            var (viaBank, otherCpu) = (new double[tokens.TokenCount], new double[tokens.TokenCount]);

            bank.ScoreImage(embedded, tokens.FirstPatchToken, cpu, cpuNearest);
            search.ScoreImage(embedded, tokens.FirstPatchToken, graph, graphNearest);
            delegating.ScoreImage(embedded, tokens.FirstPatchToken, viaBank);
            other.ScoreImage(embedded, tokens.FirstPatchToken, otherCpu);

            for (var t = tokens.FirstPatchToken; t < tokens.TokenCount; t++)
            {
                Assert.Equal(cpu[t], graph[t], 1e-4 * Math.Max(1, cpu[t]));
                Assert.Equal(otherCpu[t], viaBank[t], 1e-4 * Math.Max(1, otherCpu[t])); // the attached search answers, not the bank's own kernel
                Assert.NotEqual(cpu[t], viaBank[t]);
            }

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
