using StrapVit.Core.Attacks;
using StrapVit.Core.Attacks.Universal;

namespace StrapVit.Core.Tests.Attacks;

public sealed class UniversalPatchTests
{
    [Fact]
    public void At_scale_1_without_rotation_the_paste_is_an_exact_copy_of_the_square()
    {
        const int c = 2, h = 7, w = 9, s = 3;
        var image = Enumerable.Range(0, c * h * w).Select(i => i / 1000f).ToArray();
        var patch = Enumerable.Range(0, c * s * s).Select(i => 0.5f + (i / 100f)).ToArray();
        var pasted = (float[])image.Clone();
        PatchTransform.Apply(pasted, c, h, w, patch, s, new PatchPose(4 + 1.5f, 2 + 1.5f, 1f, 0f));
        var changed = PatchAttack.MaskIndices(new PatchPlacement(4, 2, s), c, h, w).ToHashSet();
        for (var i = 0; i < image.Length; i++)
        {
            if (!changed.Contains(i))
            {
                Assert.Equal(image[i], pasted[i]);
                continue;
            }

            int ch = i / (h * w), y = i % (h * w) / w, x = i % w;
            Assert.Equal(patch[(ch * s * s) + ((y - 2) * s) + (x - 4)], pasted[i], 6);
        }
    }

    [Theory]
    [InlineData(0.3f, 0.8f)]
    [InlineData(-0.39f, 1f)]
    [InlineData(0.1f, 0.5f)]
    public void Backward_is_the_adjoint_of_the_paste(float angle, float scale)
    {
        const int c = 3, h = 10, w = 10, s = 4;
        var random = new Random(5);
        var patch = Enumerable.Range(0, c * s * s).Select(_ => (float)random.NextDouble()).ToArray();
        var g = Enumerable.Range(0, c * h * w).Select(_ => (float)((2 * random.NextDouble()) - 1)).ToArray();
        var pose = new PatchPose(5.2f, 4.7f, scale, angle);

        // The paste is affine in the patch: A(p) = M p + (image off the patch). With a zero image, A(p) = M p.
        var pasted = new float[c * h * w];
        PatchTransform.Apply(pasted, c, h, w, patch, s, pose);
        var back = new float[patch.Length];
        PatchTransform.Backward(g, c, h, w, back, s, pose);
        var lhs = pasted.Zip(g, (a, b) => (double)a * b).Sum();
        var rhs = patch.Zip(back, (a, b) => (double)a * b).Sum();
        Assert.Equal(lhs, rhs, 4);
        Assert.Contains(pasted, v => v != 0);
    }

    [Fact]
    public void Random_poses_keep_the_patch_inside_the_image()
    {
        var random = new Random(1);
        for (var i = 0; i < 200; i++)
        {
            var pose = PatchTransform.RandomPose(random, 6, 28, 28, 22.5f * MathF.PI / 180, 0.5f, 1f);
            var half = 6 * pose.Scale / 2 * (MathF.Abs(MathF.Cos(pose.Angle)) + MathF.Abs(MathF.Sin(pose.Angle)));
            Assert.InRange(pose.CenterX - half, -1e-4f, 28f);
            Assert.InRange(pose.CenterX + half, 0f, 28 + 1e-4f);
            Assert.InRange(pose.CenterY - half, -1e-4f, 28f);
            Assert.InRange(MathF.Abs(pose.Angle), 0f, 22.5f * MathF.PI / 180 + 1e-6f);
        }
    }

    [Fact]
    public void Training_on_a_linear_model_reaches_the_target_on_held_out_images_and_the_seed_reproduces_it()
    {
        var model = new LinearModel(channels: 1, height: 8, width: 8, classes: 3, seed: 4, scale: 0.5);
        var train = model.Images(40, 1, 0f, 1f);
        var held = model.Images(40, 2, 0f, 1f);
        var trainer = new UniversalPatchTrainer(new UniversalPatchSettings(4, 2, Steps: 30, BatchSize: 8, StepSize: 0.1f));
        var reports = new List<UniversalPatchProgress>();
        var result = trainer.Train(model, train, 40, seed: 3, new SyncProgress(reports.Add));
        Assert.Equal(30, reports.Count);
        Assert.Equal(Enumerable.Range(1, 30), reports.Select(r => r.Step));
        Assert.All(result.Patch, v => Assert.InRange(v, 0f, 1f));
        var evaluation = trainer.Evaluate(model, result.Patch, held, 40, null, seed: 9);
        var gray = trainer.Evaluate(model, Enumerable.Repeat(0.5f, 16).ToArray(), held, 40, null, seed: 9);
        Assert.True(evaluation.Evaluated > 0);
        Assert.True(evaluation.SuccessRate >= 0.5 && evaluation.SuccessRate > gray.SuccessRate + 0.3,
            $"held-out success {evaluation.SuccessRate} (a gray patch: {gray.SuccessRate})");

        var again = trainer.Train(model, train, 40, seed: 3);
        Assert.Equal(result.Patch, again.Patch);
    }

    [Fact]
    public void Bad_settings_name_their_parameter()
    {
        var model = new LinearModel();
        var ex = Assert.Throws<AttackParameterException>(() => new UniversalPatchTrainer(new UniversalPatchSettings(7, 0)).Train(model, model.Images(1, 1), 1, 1));
        Assert.Equal("patchSize", ex.Parameter);
        ex = Assert.Throws<AttackParameterException>(() => new UniversalPatchTrainer(new UniversalPatchSettings(2, 9)).Train(model, model.Images(1, 1), 1, 1));
        Assert.Equal("targetClass", ex.Parameter);
    }

    private sealed class SyncProgress(Action<UniversalPatchProgress> report) : IProgress<UniversalPatchProgress>
    {
        public void Report(UniversalPatchProgress value) => report(value);
    }
}
