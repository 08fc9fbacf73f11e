using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>The split at the tokens tensor and the token defense on a package the defaults were not tuned on.</summary>
public sealed class TokenSplitTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly ModelPackage _package = ModelPackage.Load(RepoPaths.Fixture("models", "rgb-vit-32"));
    private readonly OnnxSessionFactory _sessions = new(Cpu, NullLogger<OnnxSessionFactory>.Instance);
    private readonly VitClassifier _classifier;
    private readonly TokenSpaceModel _tokens;

    public TokenSplitTests()
    {
        _classifier = new VitClassifier(_package, _sessions, Cpu);
        _tokens = new TokenSpaceModel(_package, _sessions);
    }

    private static float[] RandomImages(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n * 3 * 32 * 32).Select(_ => (float)rng.NextDouble()).ToArray();
    }

    [Fact]
    public void Encoder_of_embedding_equals_the_full_model()
    {
        var pixels = RandomImages(3, 1);

        var full = _classifier.Logits(pixels, 3);
        var split = _tokens.Encode(_tokens.Embed(pixels, 3), 3);

        Assert.Equal(full.Length, split.Length);
        for (var i = 0; i < full.Length; i++)
        {
            Assert.Equal(full[i], split[i], 4);
        }
    }

    [Fact]
    public void Token_grid_follows_the_manifest()
    {
        Assert.Equal(17, _tokens.TokenCount);
        Assert.Equal(1, _tokens.FirstPatchToken);
        Assert.Equal((4, 4), (_tokens.GridRows, _tokens.GridCols));
        Assert.True(_tokens.Dim > 0);
    }

    [Fact]
    public void A_tokens_tensor_that_does_not_exist_is_a_clear_error()
    {
        var ex = Assert.Throws<ModelPackageException>(() =>
            Onnx.TokenGraphSplitter.Split(Onnx.ForwardGraph.LoadNormalized(_package), "no_such_tensor"));
        Assert.Contains("no_such_tensor", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Calibrated_defense_flags_a_planted_patch_and_is_reproducible()
    {
        // Clean images here: smooth gradients; the "patch": a high-contrast checkerboard in one patch cell.
        var clean = Enumerable.Range(0, 40).Select(i => Smooth(i)).ToList();
        var calibration = DefenseCalibration.Compute(_package, _tokens, clean, temperature: 1.0, histogramBins: 16, quantile: 0.99);
        var defense = new TokenPatchDefense(_tokens, calibration.Tokens!, new DefenseOptions { MinTokens = 1 });
        // Plant the patch on a clean image the references know, so only the patch is out of distribution.
        var patched = Smooth(0);
        for (var c = 0; c < 3; c++)
        {
            for (var y = 8; y < 16; y++)
            {
                for (var x = 16; x < 24; x++)
                {
                    patched.Data[(((c * 32) + y) * 32) + x] = (x + y + c) % 2;
                }
            }
        }

        var a = defense.Run(patched.Data, 1, DefenseMode.Mitigate, [5])[0];
        var b = defense.Run(patched.Data, 1, DefenseMode.Mitigate, [5])[0];

        var top = a.Report.FlaggedTokens[0];
        Assert.Equal((1, 2), (top.Row, top.Col));
        Assert.True(top.Score > top.Threshold);
        Assert.Equal(a.Logits, b.Logits);
        Assert.Equal(16, a.Scores.Length);
        var pixel = new PixelPatchDefense(_classifier, calibration.Pixels, new DefenseOptions { MinTokens = 1 });
        var p = pixel.Run(patched.Data, 1, DefenseMode.Detect, [5])[0];
        Assert.Equal((1, 2), (p.Report.FlaggedTokens[0].Row, p.Report.FlaggedTokens[0].Col));
    }

    [Fact]
    public void A_per_position_bank_keeps_each_positions_own_clean_contents_and_flags_the_planted_patch()
    {
        var clean = Enumerable.Range(0, 40).Select(i => Smooth(i)).ToList();
        var settings = new BankSettings(Size: 160, PerPosition: true);   // 160 / 16 positions: 10 entries each
        var bank = DefenseCalibration.Compute(_package, _tokens, clean, 1.0, 16, 0.99, settings).Tokens!.Bank!;

        int t = _tokens.TokenCount, d = _tokens.Dim;
        Assert.Equal([0, 0, .. Enumerable.Range(1, 16).Select(p => 10 * p)], bank.PositionStarts!);
        // Every entry of position p is the content (token minus a blank image's token) of some clean image at p.
        var blank = _tokens.Embed(new float[3 * 32 * 32], 1);
        var all = _tokens.Embed(clean.SelectMany(image => image.Data).ToArray(), clean.Count);
        for (var p = 1; p < t; p++)
        {
            for (var j = bank.PositionStarts![p]; j < bank.PositionStarts[p + 1]; j++)
            {
                var entry = bank.Vectors.AsSpan(j * d, d).ToArray();
                Assert.Contains(Enumerable.Range(0, clean.Count), i =>
                    Enumerable.Range(0, d).All(c => Math.Abs(all[(((i * t) + p) * d) + c] - blank[(p * d) + c] - entry[c]) < 1e-5));
            }
        }

        var patched = Smooth(0);
        for (var c = 0; c < 3; c++)
        {
            for (var y = 8; y < 16; y++)
            {
                for (var x = 16; x < 24; x++) patched.Data[(((c * 32) + y) * 32) + x] = (x + y + c) % 2;
            }
        }

        var reference = DefenseCalibration.Compute(_package, _tokens, clean, 1.0, 16, 0.99, settings).Tokens!;
        var report = new TokenPatchDefense(_tokens, reference, new DefenseOptions()).Run(patched.Data, 1, DefenseMode.Detect, [5])[0].Report;
        var top = report.FlaggedTokens.MaxBy(f => f.Score / f.Threshold)!;
        Assert.Equal((1, 2), (top.Row, top.Col));
        Assert.True(top.Score > top.Threshold);
    }

    private static ImageTensor Smooth(int seed)
    {
        var rng = new Random(seed);
        double a = rng.NextDouble(), b = rng.NextDouble(), c = rng.NextDouble() * 0.5;
        var data = new float[3 * 32 * 32];
        for (var ch = 0; ch < 3; ch++)
        {
            for (var y = 0; y < 32; y++)
            {
                for (var x = 0; x < 32; x++)
                {
                    data[(((ch * 32) + y) * 32) + x] = (float)Math.Clamp(c + (0.3 * a * x / 32) + (0.3 * b * y / 32) + (0.05 * ch), 0, 1);
                }
            }
        }

        return new ImageTensor(data, 3, 32, 32);
    }

    public void Dispose()
    {
        _tokens.Dispose();
        _classifier.Dispose();
    }
}
