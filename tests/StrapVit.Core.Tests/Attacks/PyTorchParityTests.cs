using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Attacks;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;
using Xunit.Abstractions;

namespace StrapVit.Core.Tests.Attacks;

/// <summary>
/// The C# attacks on the service's own gradient graph against independent PyTorch references
/// (tools/attacks/make_fixtures.py) on a ViT no other test uses. FGSM and PGD must give the same float image within
/// 1e-4; the fixture's images are drawn so that every sign-taking step sees |g_i| ≥ 1e-4·max|g| in float64, far
/// above float32 noise, so sign(g) cannot legitimately differ. DeepFool must flip every label with an L2 within 10%
/// of the reference's.
/// </summary>
public sealed class PyTorchParityTests : IClassFixture<PyTorchParityTests.Fixture>
{
    private readonly Fixture fixture;
    private readonly ITestOutputHelper output;

    public PyTorchParityTests(Fixture fixture, ITestOutputHelper output) => (this.fixture, this.output) = (fixture, output);

    public static TheoryData<int> Cases => [0, 1, 2, 3, 4];

    [Theory]
    [MemberData(nameof(Cases))]
    public void FGSM_and_PGD_match_the_reference_within_1e_4(int index)
    {
        var c = fixture.Cases[index];
        var result = Make(c).Run(fixture.Model, c.Images, c.Batch, c.Goal, seed: 0);
        var maxError = result.Adversarial.Zip(c.Expected, (a, b) => Math.Abs(a - b)).Max();
        output.WriteLine($"{c.Attack} {c.Params}: max |C# - torch| = {maxError:E2}");
        Assert.True(maxError <= 1e-4, $"{c.Attack} {c.Params}: max |C# - torch| = {maxError:E2}");
        Assert.Equal(c.Success, result.Samples.Select(s => s.Success));
    }

    [Fact]
    public void DeepFool_flips_with_an_L2_within_10_percent_of_the_reference()
    {
        var c = fixture.Cases.Single(x => x.Attack == "deepfool");
        var p = c.Params;
        var attack = new DeepFool(p.GetProperty("overshoot").GetSingle(), p.GetProperty("maxIterations").GetInt32(), p.GetProperty("candidates").GetInt32());
        var result = attack.Run(fixture.Model, c.Images, c.Batch, c.Goal, seed: 0);
        for (var s = 0; s < c.Batch; s++)
        {
            Assert.True(result.Samples[s].Success, $"sample {s} did not flip");
            var ratio = result.Samples[s].L2 / c.L2[s];
            output.WriteLine($"deepfool sample {s}: L2 {result.Samples[s].L2:F5} vs torch {c.L2[s]:F5} (ratio {ratio:F5}), {result.Samples[s].Iterations} iterations");
            Assert.InRange(ratio, 0.9, 1.1);
        }
    }

    private static Attack Make(Case c)
    {
        var p = c.Params;
        var eps = p.GetProperty("epsilon").GetSingle();
        if (c.Attack == "fgsm") return new Fgsm(eps);
        Assert.True(PerturbationNorm.TryParse(p.GetProperty("norm").GetString(), out var norm));
        return new Pgd(norm, eps, p.GetProperty("stepSize").GetSingle(), p.GetProperty("steps").GetInt32(), randomStart: false);
    }

    public sealed record Case(string Attack, JsonElement Params, AttackGoal Goal, int Batch, float[] Images, float[] Expected, bool[] Success, double[] L2);

    public sealed class Fixture : IDisposable
    {
        private readonly GradientRunner runner;

        public Fixture()
        {
            var root = RepoPaths.Fixture("attacks");
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "reference.json")));
            var package = ModelPackage.Load(Path.Combine(root, doc.RootElement.GetProperty("package").GetString()!));
            var sessions = new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu, IntraOpThreads = 1 }, NullLogger<OnnxSessionFactory>.Instance);
            runner = GradientRunner.Create(package, new GradientGraphs(null, NullLogger<GradientGraphs>.Instance), sessions);
            Model = new OnnxDifferentiableClassifier(runner);
            Cases = [.. doc.RootElement.GetProperty("cases").EnumerateArray().Select(e =>
            {
                var classes = e.GetProperty("classes").EnumerateArray().Select(v => v.GetInt32()).ToArray();
                return new Case(
                    e.GetProperty("attack").GetString()!,
                    e.GetProperty("params").Clone(),
                    e.GetProperty("targeted").GetBoolean() ? AttackGoal.Targeted(classes) : AttackGoal.Untargeted(classes),
                    classes.Length,
                    [.. e.GetProperty("images").EnumerateArray().Select(v => v.GetSingle())],
                    [.. e.GetProperty("expected").EnumerateArray().Select(v => v.GetSingle())],
                    [.. e.GetProperty("success").EnumerateArray().Select(v => v.GetBoolean())],
                    [.. e.GetProperty("l2").EnumerateArray().Select(v => v.GetDouble())]);
            })];
        }

        public IDifferentiableClassifier Model { get; }

        public IReadOnlyList<Case> Cases { get; }

        public void Dispose() => runner.Dispose();
    }
}
