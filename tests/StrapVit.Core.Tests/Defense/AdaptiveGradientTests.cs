using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Attacks;
using StrapVit.Core.Defense;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Gradients;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>The adaptive attacker's gradient through the split model and the drawn token transforms.</summary>
public sealed class AdaptiveGradientTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly ModelPackage _package = ModelPackage.Load(RepoPaths.Fixture("models", "rgb-vit-32"));
    private readonly OnnxSessionFactory _sessions = new(Cpu, NullLogger<OnnxSessionFactory>.Instance);
    private readonly TokenSpaceModel _tokens;
    private readonly TokenGradients _gradients;
    private readonly TokenReference _reference;

    public AdaptiveGradientTests()
    {
        _tokens = new TokenSpaceModel(_package, _sessions);
        _gradients = TokenGradients.Create(_package, _tokens, _sessions);
        var rng = new Random(2);
        var clean = Enumerable.Range(0, 12)
            .Select(_ => new ImageTensor(Enumerable.Range(0, 3 * 32 * 32).Select(_ => (float)rng.NextDouble()).ToArray(), 3, 32, 32))
            .ToList();
        _reference = DefenseCalibration.Compute(_package, _tokens, clean, 1.0, 16, 0.99).Tokens!;
    }

    private static float[] Image(int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, 3 * 32 * 32).Select(_ => (float)rng.NextDouble()).ToArray();
    }

    [Fact]
    public void With_nothing_flagged_the_gradient_is_the_plain_models()
    {
        var options = new DefenseOptions { MinTokens = 0, ThresholdScale = 1e6 };
        var eot = new EotTokenDefenseClassifier(_tokens, _reference, options, _gradients, samples: 1, seed: 1);
        var graphs = new GradientGraphs(null, NullLogger<GradientGraphs>.Instance);
        using var plain = GradientRunner.Create(_package, graphs, _sessions);
        var x = Image(9);

        var a = eot.CrossEntropy(x, [2], 1, default);
        var b = plain.CrossEntropy(x, [2], 1);

        Assert.Equal(b.Loss![0], a.Loss![0], 4);
        var scale = b.PixelGrad.Max(v => Math.Abs(v));
        for (var i = 0; i < x.Length; i++)
        {
            Assert.True(Math.Abs(a.PixelGrad[i] - b.PixelGrad[i]) <= 1e-4 * scale, $"pixel {i}: {a.PixelGrad[i]} vs {b.PixelGrad[i]}");
        }
    }

    [Fact]
    public void Through_drawn_transforms_the_gradient_matches_finite_differences()
    {
        // The paper's neutralisation (random composite transforms), whose backward the attacker differentiates exactly.
        var options = new DefenseOptions().PaperFaithful();
        options.MinTokens = 6;
        var x = Image(4);
        var rng = new Random(8);
        var v = Enumerable.Range(0, x.Length).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();

        // The same seed replays the same draw, so the defended function is fixed for the check.
        EotTokenDefenseClassifier Fresh() => new(_tokens, _reference, options, _gradients, samples: 1, seed: 3);
        var analytic = Fresh().CrossEntropy(x, [1], 1, default).PixelGrad.Zip(v, (g, d) => (double)g * d).Sum();
        double Loss(float h) => Fresh().CrossEntropy(x.Select((xi, i) => xi + (h * v[i])).ToArray(), [1], 1, default).Loss![0];
        const float H = 1e-3f;
        var numeric = (Loss(H) - Loss(-H)) / (2 * H);

        Assert.True(Math.Abs(analytic - numeric) <= 0.02 * Math.Max(Math.Abs(numeric), 1e-3), $"analytic {analytic}, numeric {numeric}");
    }

    [Fact]
    public void The_encoder_for_a_shorter_view_gives_the_dropped_views_logits_and_its_gradient_matches_finite_differences()
    {
        Assert.True(_tokens.AcceptsShorterSequences);
        int t = _tokens.TokenCount, d = _tokens.Dim, first = _tokens.FirstPatchToken;
        var tokens = _tokens.Embed(Image(5), 1);
        var hidden = new HashSet<int> { first, first + 1, first + _tokens.GridCols, first + _tokens.GridCols + 1 };
        var kept = Enumerable.Range(0, t).Where(k => !hidden.Contains(k)).ToArray();
        float[] View(float[] source)
        {
            var view = new float[kept.Length * d];
            for (var j = 0; j < kept.Length; j++) Array.Copy(source, kept[j] * d, view, j * d, d);
            return view;
        }

        var classes = _package.Manifest.Labels.Count;
        var cotangent = new float[classes];
        cotangent[1] = 1;
        cotangent[0] = -1;
        var runner = _gradients.EncoderFor(kept.Length);
        Assert.Same(runner, _gradients.EncoderFor(kept.Length));
        var result = runner.Vjp(View(tokens), cotangent, 1);

        // The forward path that serves masked views drops the same tokens: the same logits.
        var served = _tokens.EncodeHiding(tokens, [0], [hidden], null, 256);
        for (var c = 0; c < classes; c++) Assert.Equal(served[c], result.Logits[c], 4);

        // d(z_1 - z_0) along a random direction of the kept tokens, against central differences of the served view.
        var rng = new Random(6);
        var direction = tokens.Select((_, i) => hidden.Contains(i / d) ? 0f : (float)((rng.NextDouble() * 2) - 1)).ToArray();
        var analytic = View(direction).Zip(result.PixelGrad, (v, g) => (double)v * g).Sum();
        double Margin(float h)
        {
            var logits = _tokens.EncodeHiding(tokens.Select((z, i) => z + (h * direction[i])).ToArray(), [0], [hidden], null, 256);
            return logits[1] - logits[0];
        }

        const float H = 1e-2f;
        var numeric = (Margin(H) - Margin(-H)) / (2 * H);
        Assert.True(Math.Abs(analytic - numeric) <= 0.02 * Math.Max(Math.Abs(numeric), 1e-3), $"analytic {analytic}, numeric {numeric}");
    }

    [Theory]
    [InlineData(0, 0, 6, 2, "0,0 0,1 1,0 1,1")]            // corner: the patch covers tokens (0..1, 0..1) of 4 px
    [InlineData(0, 0, 4, 2, "0,0")]                        // one token: only the window at the corner holds it
    [InlineData(9, 5, 6, 2, "0,1 0,2 0,3 1,1 1,2 1,3 2,1 2,2 2,3")]   // token rows 1..2 (y 5..10), columns 2..3 (x 9..14)
    [InlineData(12, 12, 6, 2, "2,2 2,3 2,4 3,2 3,3 3,4 4,2 4,3 4,4")]   // centre: tokens 3..4 each way
    [InlineData(22, 22, 6, 2, "4,4 4,5 5,4 5,5")]         // bottom-right: tokens 5..6, windows must stay inside 7x7
    [InlineData(12, 12, 6, 3, "1,1 1,2 1,3 1,4 2,1 2,2 2,3 2,4 3,1 3,2 3,3 3,4 4,1 4,2 4,3 4,4")]
    public void The_occlusion_windows_are_every_window_inside_the_grid_that_shares_a_token_with_the_patch(int x, int y, int size, int side, string expected)
    {
        var windows = AdaptivePatchAttack.OcclusionWindows(new PatchPlacement(x, y, size), 4, 7, 7, side);
        Assert.Equal(expected, string.Join(' ', windows.Select(w => $"{w.Row},{w.Col}")));

        // Independently, by brute force over every placement of the window.
        var brute = new List<(int, int)>();
        for (var r = 0; r + side <= 7; r++)
        {
            for (var c = 0; c + side <= 7; c++)
            {
                var shares = false;
                for (var tr = r; tr < r + side; tr++)
                {
                    for (var tc = c; tc < c + side; tc++) shares |= tc * 4 < x + size && x < (tc + 1) * 4 && tr * 4 < y + size && y < (tr + 1) * 4;
                }

                if (shares) brute.Add((r, c));
            }
        }

        Assert.Equal(brute, windows.Select(w => (w.Row, w.Col)));
    }

    [Fact]
    public void A_grouped_occlusion_view_hides_its_window_and_the_strongest_windows_apart_from_it_and_each_other()
    {
        // A 4x4 grid of patch tokens after one class token; 2x2 windows as cell lists, strongest first.
        int[] Window(int row, int col) => [(row * 4) + col, (row * 4) + col + 1, ((row + 1) * 4) + col, ((row + 1) * 4) + col + 1];
        int[][] ranking = [Window(0, 1), Window(2, 2), Window(1, 2), Window(2, 0), Window(0, 0)];

        // Window (0, 1) overlaps the hidden (0, 0); (2, 2) is apart; (1, 2) overlaps (2, 2); (2, 0) is apart: group of 3.
        var kept = AdaptivePatchAttack.GroupedView(Window(0, 0), ranking, 3, 17, 1);
        var hidden = Enumerable.Range(1, 16).Except(kept).Select(k => k - 1).Order().ToArray();
        Assert.Equal(new[] { 0, 1, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15 }, hidden);
        Assert.Equal(0, kept[0]);   // the class token stays, first

        // A group of one hides the window alone; a group larger than the apart windows hides all it can.
        Assert.Equal(new[] { 0, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }, AdaptivePatchAttack.GroupedView(Window(0, 0), ranking, 1, 17, 1));
        Assert.Equal(5, AdaptivePatchAttack.GroupedView(Window(0, 0), ranking, 9, 17, 1).Length);
    }

    [Fact]
    public void The_attack_aimed_at_a_grouped_check_runs_and_changes_only_the_patch()
    {
        var options = new DefenseOptions { VerifyWindows = 4, VerifyPartners = 4, VerifyGroup = 2 };
        var defense = new TokenPatchDefense(_tokens, _reference, options);
        var attack = new AdaptivePatchAttack(_tokens, _reference, options, _gradients, defense);
        var set = new EvaluationSet([.. Image(11), .. Image(12)], [0, 1], 3 * 32 * 32);
        for (var i = 0; i < set.Pixels.Length; i++) set.Pixels[i] = MathF.Round(set.Pixels[i] * 255) / 255;

        var result = attack.Run(set, new AdaptiveAttackSettings(8, Steps: 4, Restarts: 1, EotSamples: 1, CheckEvery: 2, OcclusionViews: true, OcclusionGroup: 2), seed: 5);

        for (var n = 0; n < 2; n++)
        {
            var place = result.Placements[n];
            var changed = Enumerable.Range(0, 3 * 32 * 32).Where(i => result.Images.Pixels[(n * 3 * 32 * 32) + i] != set.Pixels[(n * 3 * 32 * 32) + i])
                .Select(i => (Y: i % (32 * 32) / 32, X: i % 32)).ToArray();
            Assert.NotEmpty(changed);
            Assert.All(changed, p => Assert.True(p.X >= place.X && p.X < place.X + 8 && p.Y >= place.Y && p.Y < place.Y + 8));
        }
    }

    [Fact]
    public void The_attack_aimed_at_the_check_changes_only_the_patch_and_keeps_it_on_the_8_bit_grid()
    {
        var options = new DefenseOptions { VerifyWindows = 2, VerifyPartners = 3 };
        var defense = new TokenPatchDefense(_tokens, _reference, options);
        var attack = new AdaptivePatchAttack(_tokens, _reference, options, _gradients, defense);
        // 8-bit images, so that the attack's rounding to the 8-bit grid leaves everything outside the patch as it was.
        var set = new EvaluationSet([.. Image(11), .. Image(12)], [0, 1], 3 * 32 * 32);
        for (var i = 0; i < set.Pixels.Length; i++) set.Pixels[i] = MathF.Round(set.Pixels[i] * 255) / 255;

        var result = attack.Run(set, new AdaptiveAttackSettings(8, Steps: 6, Restarts: 1, EotSamples: 1, CheckEvery: 3, OcclusionViews: true), seed: 4);

        for (var n = 0; n < 2; n++)
        {
            var place = result.Placements[n];
            Assert.Equal(8, place.Size);
            for (var c = 0; c < 3; c++)
            {
                for (var y = 0; y < 32; y++)
                {
                    for (var x = 0; x < 32; x++)
                    {
                        var i = (n * 3 * 32 * 32) + (c * 32 * 32) + (y * 32) + x;
                        var inside = x >= place.X && x < place.X + 8 && y >= place.Y && y < place.Y + 8;
                        var value = result.Images.Pixels[i];
                        if (!inside) Assert.Equal(set.Pixels[i], value);
                        else Assert.Equal(Math.Round(value * 255) / 255, value, 5);
                    }
                }
            }
        }
    }

    public void Dispose()
    {
        _gradients.Dispose();
        _tokens.Dispose();
    }
}
