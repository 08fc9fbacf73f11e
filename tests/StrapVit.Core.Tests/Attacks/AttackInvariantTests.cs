using StrapVit.Core.Attacks;

namespace StrapVit.Core.Tests.Attacks;

/// <summary>The contract every attack keeps, checked table-driven on analytic models.</summary>
public sealed class AttackInvariantTests
{
    private const float Eps = 8f / 255f;

    public static TheoryData<string> AllAttacks => ["fgsm", "pgd-linf", "pgd-l2", "pgd-restarts-early", "deepfool", "patch", "patch-at"];

    /// <summary>An attack by table name, with budget <paramref name="eps"/> where it has one.</summary>
    private static Attack Make(string name, float eps = Eps) => name switch
    {
        "fgsm" => new Fgsm(eps),
        "pgd-linf" => new Pgd(PerturbationNorm.Linf, eps, eps / 4, steps: 5),
        "pgd-l2" => new Pgd(PerturbationNorm.L2, eps * 10, eps * 2.5f, steps: 5),
        "pgd-restarts-early" => new Pgd(PerturbationNorm.Linf, eps, eps / 4, steps: 5, restarts: 3, earlyStop: true),
        "deepfool" => new DeepFool(maxIterations: 10, candidates: 3),
        "patch" => new PatchAttack(2, steps: 5),
        "patch-at" => new PatchAttack(2, x: 1, y: 2, steps: 5),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    private static IEnumerable<(FakeModel Model, float[] Images, int Batch)> Models()
    {
        var linear = new LinearModel();
        yield return (linear, linear.Images(3, 10), 3);
        var two = new TwoLayerModel();
        yield return (two, two.Images(2, 11, 0f, 1f), 2);
    }

    [Theory]
    [MemberData(nameof(AllAttacks))]
    public void Stays_in_range_within_budget_and_reports_true_norms(string name)
    {
        foreach (var (model, images, batch) in Models())
        {
            foreach (var goal in new[] { AttackGoal.Untargeted(), AttackGoal.Targeted(Enumerable.Repeat(1, batch).ToArray()) })
            {
                var attack = Make(name);
                var result = attack.Run(model, images, batch, goal, seed: 5);
                Assert.All(result.Adversarial, v => Assert.InRange(v, 0f, 1f));
                for (var s = 0; s < batch; s++)
                {
                    var x = images.AsSpan(s * model.Size, model.Size);
                    var adv = result.AdversarialOf(s);
                    var sample = result.Samples[s];
                    Assert.Equal(PerturbationNorm.Linf.Distance(x, adv), sample.Linf, 6);
                    Assert.Equal(PerturbationNorm.L2.Distance(x, adv), sample.L2, 5);
                    if (attack is BoundedAttack bounded)
                    {
                        var d = bounded.Norm.Distance(x, adv);
                        Assert.True(d <= bounded.Epsilon * (1 + 1e-5f), $"{name}: ‖δ‖ = {d} > ε = {bounded.Epsilon}");
                    }

                    if (attack is PatchAttack patch)
                    {
                        var place = Assert.IsType<PatchPlacement>(sample.Patch);
                        var inside = PatchAttack.MaskIndices(place, model.Channels, model.Height, model.Width).ToHashSet();
                        for (var i = 0; i < model.Size; i++)
                        {
                            if (!inside.Contains(i)) Assert.Equal(x[i], adv[i]);
                        }

                        if (patch.X is { } px) Assert.Equal((px, patch.Y!.Value), (place.X, place.Y));
                    }

                    Assert.Equal(result.QuantizedOf(s).ToArray(), Attack.Quantize(adv));
                }
            }
        }
    }

    [Theory]
    [InlineData("fgsm")]
    [InlineData("pgd-linf")]
    [InlineData("pgd-l2")]
    [InlineData("pgd-restarts-early")]
    public void Zero_budget_is_the_identity(string name)
    {
        foreach (var (model, images, batch) in Models())
        {
            var result = Make(name, 0f).Run(model, images, batch, AttackGoal.Untargeted(), seed: 1);
            Assert.Equal(images, result.Adversarial);
            Assert.All(result.Samples, s => Assert.Equal((0f, 0f), (s.Linf, s.L2)));
        }
    }

    [Fact]
    public void Attacks_without_budget_are_the_identity_when_they_do_nothing()
    {
        foreach (var (model, images, batch) in Models())
        {
            Assert.Equal(images, new DeepFool(maxIterations: 0).Run(model, images, batch, AttackGoal.Untargeted(), 1).Adversarial);
            Assert.Equal(images, new PatchAttack(0).Run(model, images, batch, AttackGoal.Untargeted(), 1).Adversarial);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void One_PGD_step_without_random_start_is_FGSM(bool targeted)
    {
        foreach (var (model, images, batch) in Models())
        {
            var goal = targeted ? AttackGoal.Targeted(Enumerable.Repeat(2, batch).ToArray()) : AttackGoal.Untargeted();
            var fgsm = new Fgsm(Eps).Run(model, images, batch, goal, seed: 1);
            var pgd = new Pgd(PerturbationNorm.Linf, Eps, Eps, steps: 1, randomStart: false).Run(model, images, batch, goal, seed: 2);
            Assert.Equal(fgsm.Adversarial, pgd.Adversarial);
            Assert.Equal(fgsm.Samples.Select(s => s.Success), pgd.Samples.Select(s => s.Success));
        }
    }

    [Theory]
    [MemberData(nameof(AllAttacks))]
    public void The_same_seed_gives_the_same_result(string name)
    {
        var model = new TwoLayerModel();
        var images = model.Images(2, 3, 0f, 1f);
        var a = Make(name).Run(model, images, 2, AttackGoal.Untargeted(), seed: 42);
        var b = Make(name).Run(model, images, 2, AttackGoal.Untargeted(), seed: 42);
        Assert.Equal(a.Adversarial, b.Adversarial);
        Assert.Equal(a.Samples, b.Samples);
        Assert.Equal(42, a.Seed);
    }

    [Theory]
    [InlineData("pgd-linf")]
    [InlineData("pgd-l2")]
    [InlineData("patch")]
    public void Random_choices_follow_the_seed(string name)
    {
        var model = new TwoLayerModel();
        var images = model.Images(2, 3, 0f, 1f);
        var a = Make(name).Run(model, images, 2, AttackGoal.Untargeted(), seed: 1);
        var b = Make(name).Run(model, images, 2, AttackGoal.Untargeted(), seed: 2);
        Assert.NotEqual(a.Adversarial, b.Adversarial);
    }

    [Fact]
    public void Untargeted_label_defaults_to_the_clean_prediction()
    {
        var model = new LinearModel();
        var images = model.Images(3, 10);
        var clean = model.Logits(images, 3, default);
        var result = new Fgsm(0f).Run(model, images, 3, AttackGoal.Untargeted(), 1);
        for (var s = 0; s < 3; s++)
        {
            Assert.Equal(Numerics.Probabilities.ArgMax(clean.AsSpan(s * 4, 4)), result.Samples[s].GoalClass);
            Assert.Equal(result.Samples[s].CleanClass, result.Samples[s].GoalClass);
            Assert.False(result.Samples[s].Success);
        }
    }

    [Fact]
    public void A_given_label_that_is_not_predicted_is_already_a_success()
    {
        var model = new LinearModel();
        var images = model.Images(1, 10);
        var predicted = Numerics.Probabilities.ArgMax(model.Logits(images, 1, default));
        var other = (predicted + 1) % model.Classes;
        var result = new Fgsm(0f).Run(model, images, 1, AttackGoal.Untargeted([other]), 1);
        Assert.True(result.Samples[0].Success);
        Assert.True(result.Samples[0].SuccessQuantized || result.Samples[0].QuantizedClass == other);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PGD_with_a_large_budget_reaches_its_goal_on_a_linear_model(bool targeted)
    {
        var model = new LinearModel();
        var images = model.Images(3, 10);
        var goal = targeted ? AttackGoal.Targeted([0, 1, 2]) : AttackGoal.Untargeted();
        var result = new Pgd(PerturbationNorm.Linf, 0.3f, 0.05f, steps: 20).Run(model, images, 3, goal, seed: 3);
        Assert.All(result.Samples, s => Assert.True(s.Success && s.SuccessQuantized, $"{s}"));
        if (targeted) Assert.Equal([0, 1, 2], result.Samples.Select(s => s.AdversarialClass));
    }

    [Fact]
    public void Early_stop_spends_fewer_steps_and_still_succeeds()
    {
        var model = new LinearModel();
        var images = model.Images(3, 10);
        var full = new Pgd(PerturbationNorm.Linf, 0.3f, 0.05f, steps: 20, randomStart: false).Run(model, images, 3, AttackGoal.Untargeted(), 1);
        var early = new Pgd(PerturbationNorm.Linf, 0.3f, 0.05f, steps: 20, randomStart: false, earlyStop: true).Run(model, images, 3, AttackGoal.Untargeted(), 1);
        Assert.All(full.Samples, s => Assert.Equal(20, s.Iterations));
        Assert.All(early.Samples, s => Assert.True(s.Success && s.Iterations < 20, $"{s}"));
    }

    [Fact]
    public void Restarts_run_batched_and_keep_a_successful_restart()
    {
        var model = new TwoLayerModel();
        var images = model.Images(4, 8, 0f, 1f);
        var one = new Pgd(PerturbationNorm.Linf, 0.06f, 0.02f, steps: 3).Run(model, images, 4, AttackGoal.Untargeted(), 7);
        var many = new Pgd(PerturbationNorm.Linf, 0.06f, 0.02f, steps: 3, restarts: 5).Run(model, images, 4, AttackGoal.Untargeted(), 7);
        Assert.True(many.Samples.Count(s => s.Success) >= one.Samples.Count(s => s.Success));
    }

    [Fact]
    public void DeepFool_flips_a_linear_model_with_the_minimal_L2_times_one_plus_overshoot()
    {
        // Small weights keep the minimal perturbation inside [0, 1], so clipping does not interfere.
        var model = new LinearModel(channels: 1, height: 5, width: 5, classes: 4, seed: 9, scale: 0.3);
        var images = model.Images(4, 12, 0.3f, 0.7f);
        const float overshoot = 0.02f;
        var result = new DeepFool(overshoot, maxIterations: 50, candidates: 4).Run(model, images, 4, AttackGoal.Untargeted(), 1);
        for (var s = 0; s < 4; s++)
        {
            var x = images.AsSpan(s * model.Size, model.Size);
            var z = model.Logits(x, 1, default);
            var o = Numerics.Probabilities.ArgMax(z);
            var minimal = double.PositiveInfinity;
            double chosen = 0;
            for (var k = 0; k < model.Classes; k++)
            {
                if (k == o) continue;
                double n2 = 0;
                for (var i = 0; i < model.Size; i++) n2 += Math.Pow(model.W[k, i] - model.W[o, i], 2);
                var d = Math.Abs(z[k] - z[o]) / Math.Sqrt(n2);
                if (d < minimal) (minimal, chosen) = (d, (Math.Abs(z[k] - z[o]) + 1e-4) / Math.Sqrt(n2));
            }

            var sample = result.Samples[s];
            Assert.True(sample.Success, $"sample {s} did not flip");
            Assert.Equal(1, sample.Iterations);
            Assert.Equal(chosen * (1 + overshoot), sample.L2, 1e-4 * chosen + 1e-6);
        }
    }

    [Fact]
    public void Targeted_DeepFool_heads_for_the_target()
    {
        var model = new LinearModel(channels: 1, height: 5, width: 5, classes: 4, seed: 9, scale: 0.3);
        var images = model.Images(2, 12, 0.3f, 0.7f);
        var targets = Enumerable.Range(0, 2).Select(s => (Numerics.Probabilities.ArgMax(model.Logits(images.AsSpan(s * 25, 25), 1, default)) + 1) % 4).ToArray();
        var result = new DeepFool(0.02f, 50, 4).Run(model, images, 2, AttackGoal.Targeted(targets), 1);
        Assert.Equal(targets, result.Samples.Select(s => s.AdversarialClass));
    }

    [Fact]
    public void Patch_reaches_a_target_on_a_linear_model_changing_only_its_square()
    {
        var model = new LinearModel(channels: 1, height: 6, width: 6, classes: 4, seed: 3, scale: 1.0);
        var images = model.Images(2, 4);
        var result = new PatchAttack(3, steps: 100, stepSize: 8f / 255f).Run(model, images, 2, AttackGoal.Targeted([1, 1]), 9);
        Assert.All(result.Samples, s => Assert.True(s.Success && s.SuccessQuantized, $"{s}"));
    }

    [Fact]
    public void Cancellation_stops_the_attack()
    {
        var model = new LinearModel();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => new Pgd().Run(model, model.Images(1, 1), 1, AttackGoal.Untargeted(), 1, cts.Token));
    }

    [Fact]
    public void Images_outside_pixel_space_are_refused()
    {
        var model = new LinearModel();
        var images = model.Images(1, 1);
        images[3] = 1.5f;
        Assert.Throws<ArgumentException>(() => new Fgsm().Run(model, images, 1, AttackGoal.Untargeted(), 1));
    }

    [Fact]
    public void A_patch_that_does_not_fit_names_its_parameter()
    {
        var model = new LinearModel();
        var ex = Assert.Throws<AttackParameterException>(() => new PatchAttack(3, x: 4, y: 0).Run(model, model.Images(1, 1), 1, AttackGoal.Untargeted(), 1));
        Assert.Equal("x", ex.Parameter);
        Assert.Equal("patchSize", Assert.Throws<AttackParameterException>(() => new PatchAttack(7).Run(model, model.Images(1, 1), 1, AttackGoal.Untargeted(), 1)).Parameter);
    }
}
