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

    [Theory]
    [InlineData(0, 0, "0,0 0,2 2,0")]
    [InlineData(22, 10, "22,10 22,8 22,12 20,10")]
    [InlineData(5, 7, "5,7 5,5 5,9 3,7 7,7")]
    [InlineData(1, 21, "1,21 1,19 1,22 0,21 3,21")]
    public void Location_moves_are_the_placement_then_each_direction_clamped_inside_the_image_without_repeats(int x, int y, string expected)
    {
        var moves = AdaptivePatchAttack.Moves(new PatchPlacement(x, y, 6), 2, 28, 28);

        Assert.Equal(expected, string.Join(" ", moves.Select(m => $"{m.X},{m.Y}")));
        Assert.All(moves, m => Assert.Equal(6, m.Size));
    }

    [Theory]
    [InlineData(1, 1, 2, 2)]
    [InlineData(3, 0, 0, 3)]
    [InlineData(2, 2, 2, 2)]
    public void Moving_a_patch_restores_the_pixels_it_uncovers_and_keeps_its_own_pixels_in_order(int fromX, int fromY, int toX, int toY)
    {
        const int C = 2, H = 5, W = 6, P = 2;
        var original = Enumerable.Range(0, C * H * W).Select(i => (float)i).ToArray();
        var image = (float[])original.Clone();
        float PatchValue(int ch, int dy, int dx) => 1000 + (100 * ch) + (10 * dy) + dx;
        for (var ch = 0; ch < C; ch++)
        {
            for (var dy = 0; dy < P; dy++)
            {
                for (var dx = 0; dx < P; dx++) image[(ch * H * W) + ((fromY + dy) * W) + fromX + dx] = PatchValue(ch, dy, dx);
            }
        }

        AdaptivePatchAttack.MovePatch(image, original, new PatchPlacement(fromX, fromY, P), new PatchPlacement(toX, toY, P), C, H, W);

        for (var ch = 0; ch < C; ch++)
        {
            for (var yy = 0; yy < H; yy++)
            {
                for (var xx = 0; xx < W; xx++)
                {
                    var inside = xx >= toX && xx < toX + P && yy >= toY && yy < toY + P;
                    var expected = inside ? PatchValue(ch, yy - toY, xx - toX) : (ch * H * W) + (yy * W) + xx;
                    Assert.Equal(expected, image[(ch * H * W) + (yy * W) + xx]);
                }
            }
        }
    }

    [Fact]
    public void The_location_optimised_attack_changes_only_the_patch_where_it_reports_it_and_keeps_it_on_the_8_bit_grid()
    {
        var options = new DefenseOptions { VerifyWindows = 2, VerifyPartners = 3 };
        var defense = new TokenPatchDefense(_tokens, _reference, options);
        var attack = new AdaptivePatchAttack(_tokens, _reference, options, _gradients, defense);
        var set = new EvaluationSet([.. Image(11), .. Image(12), .. Image(13)], [0, 1, 2], 3 * 32 * 32);
        for (var i = 0; i < set.Pixels.Length; i++) set.Pixels[i] = MathF.Round(set.Pixels[i] * 255) / 255;

        var settings = new AdaptiveAttackSettings(8, Steps: 8, Restarts: 1, EotSamples: 1, CheckEvery: 2, OcclusionViews: true, LocationStride: 3);
        var result = attack.Run(set, settings, seed: 4);
        var fixedPlaces = attack.Run(set, settings with { LocationStride = 0 }, seed: 4);

        // The same seed draws the same starting placements; moving the patch shows as a different final one.
        Assert.Contains(Enumerable.Range(0, 3), n => result.Placements[n] != fixedPlaces.Placements[n]);

        for (var n = 0; n < 3; n++)
        {
            var place = result.Placements[n];
            Assert.Equal(8, place.Size);
            Assert.InRange(place.X, 0, 24);
            Assert.InRange(place.Y, 0, 24);
            for (var i = 0; i < 3 * 32 * 32; i++)
            {
                int y = i % (32 * 32) / 32, x = i % 32;
                var value = result.Images.Pixels[(n * 3 * 32 * 32) + i];
                var inside = x >= place.X && x < place.X + 8 && y >= place.Y && y < place.Y + 8;
                if (!inside) Assert.Equal(set.Pixels[(n * 3 * 32 * 32) + i], value);
                else Assert.Equal(Math.Round(value * 255) / 255, value, 5);
            }
        }
    }

    [Fact]
    public void Location_optimisation_moves_patches_of_images_it_has_not_broken()
    {
        var options = new DefenseOptions { VerifyWindows = 0 };
        var defense = new TokenPatchDefense(_tokens, _reference, options);
        var attack = new AdaptivePatchAttack(_tokens, _reference, options, _gradients, defense);
        const int N = 6, Size = 3 * 32 * 32;
        var pixels = Enumerable.Range(20, N).SelectMany(Image).Select(v => MathF.Round(v * 255) / 255).ToArray();
        // Labels are the defense's own answers, so that each image starts right and a single step rarely breaks it.
        var labels = defense.Run(pixels, N, DefenseMode.Mitigate, Enumerable.Range(0, N).ToArray()).Select(r => Numerics.Probabilities.ArgMax(r.Logits)).ToArray();
        var set = new EvaluationSet(pixels, labels, Size);
        var settings = new AdaptiveAttackSettings(4, Steps: 2, Restarts: 1, EotSamples: 1, EvasionWeight: 0, CheckEvery: 1, LocationStride: 2);

        var moved = attack.Run(set, settings, seed: 9);
        var still = attack.Run(set, settings with { LocationStride = 0 }, seed: 9);

        var answers = defense.Run(moved.Images.Pixels, N, DefenseMode.Mitigate, Enumerable.Range(0, N).ToArray());
        var unbroken = Enumerable.Range(0, N).Where(n => Numerics.Probabilities.ArgMax(answers[n].Logits) == labels[n]).ToArray();
        Assert.NotEmpty(unbroken);
        Assert.Contains(unbroken, n => moved.Placements[n] != still.Placements[n]);
        // A move is by the stride along one axis per check: at most two checks, so at most 4 pixels in all.
        Assert.All(unbroken, n => Assert.InRange(Math.Abs(moved.Placements[n].X - still.Placements[n].X) + Math.Abs(moved.Placements[n].Y - still.Placements[n].Y), 0, 4));
    }

    public void Dispose()
    {
        _gradients.Dispose();
        _tokens.Dispose();
    }
}
