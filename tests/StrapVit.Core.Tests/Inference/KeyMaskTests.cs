using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Inference;
using StrapVit.Core.Runtime;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Inference;

/// <summary>
/// Masked views as whole sequences with a key mask (<see cref="KeyMask"/>, <see cref="ViewMasking.KeyMask"/>) against
/// the same views with their hidden tokens cut from the sequence, on real images of the shipped models.
/// </summary>
public sealed class KeyMaskTests
{
    private static TokenSpaceModel Model(string dir, ViewMasking masking) =>
        new(ModelPackage.Load(dir), new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu, ViewMasking = masking, ViewParallelism = 1 }, NullLogger<OnnxSessionFactory>.Instance));

    /// <summary>The encoder runs <paramref name="action"/> makes (Core's "onnx encoder" spans under a span of its own).</summary>
    private static int EncoderRuns(Action action)
    {
        using var source = new ActivitySource("strapvit-key-mask-test");
        var runs = 0;
        var trace = default(ActivityTraceId);
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == source.Name || s.Name == CoreActivities.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            ActivityStarted = a =>
            {
                if (a.TraceId == trace && a.OperationName == "onnx encoder") Interlocked.Increment(ref runs);
            },
        };
        ActivitySource.AddActivityListener(listener);
        using (var parent = source.StartActivity("test"))
        {
            trace = parent!.TraceId;
            action();
        }

        return runs;
    }

    [Theory]
    [InlineData("fashion-vit-tiny")]
    [InlineData("fashion-vit-p7")]
    public void Views_with_a_key_mask_give_the_logits_of_their_dropped_sequences(string name)
    {
        var dir = Path.Combine(RepoPaths.Root, "models", name);
        using var dropping = Model(dir, ViewMasking.Drop);
        using var masking = Model(dir, ViewMasking.KeyMask);
        var tokens = dropping.Embed(ShippedTestImages.First(3), 3);
        var rng = new Random(11);
        var patches = dropping.TokenCount - 1;
        // 40 views of three images hiding 0 to a quarter of the patch tokens: many lengths, which drop in separate runs.
        var sources = Enumerable.Range(0, 40).Select(v => v % 3).ToArray();
        var hidden = sources.Select(_ => (IReadOnlyCollection<int>)Enumerable.Range(1, patches).OrderBy(_ => rng.Next()).Take(rng.Next((patches / 4) + 1)).ToHashSet()).ToArray();

        // Opening the key-masked encoder runs its probe: done before the runs are counted.
        Assert.True(masking.MasksKeys);
        float[] expected = [], actual = [], chunked = [];
        var droppedRuns = EncoderRuns(() => expected = dropping.EncodeHiding(tokens, sources, hidden, null, 256));
        var maskedRuns = EncoderRuns(() => actual = masking.EncodeHiding(tokens, sources, hidden, null, 256));
        // At most 7 views a run: 6 runs, each writing its own rows.
        var chunkedRuns = EncoderRuns(() => chunked = masking.EncodeHiding(tokens, sources, hidden, null, 7));

        Assert.False(dropping.MasksKeys);
        var lengths = hidden.Select(h => h.Count).Distinct().Count();
        Assert.True(lengths > 3);
        Assert.Equal(lengths, droppedRuns);
        Assert.Equal(1, maskedRuns);
        Assert.Equal(6, chunkedRuns);
        Assert.Equal(actual, chunked);
        // Each view alone, its kept tokens as one shorter sequence: the definition the batch is checked against.
        var classes = dropping.Manifest.Labels.Count;
        for (var v = 0; v < sources.Length; v++)
        {
            var kept = Enumerable.Range(0, dropping.TokenCount).Where(k => !hidden[v].Contains(k)).ToArray();
            var sequence = kept.SelectMany(k => tokens.AsSpan(((sources[v] * dropping.TokenCount) + k) * dropping.Dim, dropping.Dim).ToArray()).ToArray();
            var alone = dropping.Encode(sequence, 1, kept.Length);
            for (var c = 0; c < classes; c++)
            {
                Assert.True(Math.Abs(alone[c] - expected[(v * classes) + c]) <= 1e-4f, $"view {v} class {c}: dropped batch {expected[(v * classes) + c]} vs alone {alone[c]}");
                Assert.True(Math.Abs(alone[c] - actual[(v * classes) + c]) <= 1e-4f, $"view {v} class {c}: key mask {actual[(v * classes) + c]} vs alone {alone[c]}");
            }
        }
    }

    [Fact]
    public void The_pass_gives_every_fused_attention_the_mask_and_the_graph_one_more_input()
    {
        var graph = ForwardGraph.LoadNormalized(ModelPackage.Load(RepoPaths.DefaultModel));
        var split = TokenGraphSplitter.Split(graph, ModelPackage.Load(RepoPaths.DefaultModel).Manifest.Tokens!.Tensor).Encoder;
        Assert.False(KeyMask.CanApply(split));
        var inputs = split.Graph.Input.Count;
        Assert.Equal(6, AttentionFusion.Optimize(split));

        Assert.True(KeyMask.Apply(split));

        var attention = split.Graph.Node.Where(n => n.OpType == "Attention").ToList();
        var narrowed = split.Graph.Node.Single(n => n.OpType == "MultiHeadAttention");
        Assert.Equal(5, attention.Count);
        Assert.All(attention, n => Assert.Equal(KeyMask.InputName, n.Input[3]));
        Assert.Equal(KeyMask.InputName, narrowed.Input[4]);
        Assert.Equal(6, split.Graph.Node.Count(n => n.Input.Contains(KeyMask.InputName)));
        Assert.Equal(inputs + 1, split.Graph.Input.Count);
        Assert.Equal(global::Onnx.TensorProto.Types.DataType.Int32, (global::Onnx.TensorProto.Types.DataType)split.Graph.Input.Single(i => i.Name == KeyMask.InputName).Type.TensorType.ElemType);
    }

    [Fact]
    public void A_graph_that_keeps_one_attention_in_standard_ops_gets_no_mask()
    {
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        var split = TokenGraphSplitter.Split(ForwardGraph.LoadNormalized(package), package.Manifest.Tokens!.Tensor).Encoder;
        AttentionFusion.Optimize(split);
        // Put a Softmax back, as an attention the fusion did not recognise would leave one: it would see hidden tokens.
        split.Graph.Node.Add(new global::Onnx.NodeProto { OpType = "Softmax", Input = { "x" }, Output = { "y" }, Name = "unfused" });
        var before = split.Clone();

        Assert.False(KeyMask.Apply(split));
        Assert.Equal(before, split);
    }

    [Fact]
    public void Views_drop_their_tokens_unless_a_key_mask_is_configured()
    {
        using var standard = new TokenSpaceModel(ModelPackage.Load(RepoPaths.DefaultModel), new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance));
        using var configured = Model(RepoPaths.DefaultModel, ViewMasking.KeyMask);

        Assert.Equal(ViewMasking.Drop, new InferenceOptions().ViewMasking);
        Assert.False(standard.MasksKeys);
        Assert.True(configured.MasksKeys);
    }

    [Fact]
    public void Rows_that_hide_the_class_token_or_repeat_a_position_keep_the_dropped_sequences()
    {
        using var dropping = Model(RepoPaths.DefaultModel, ViewMasking.Drop);
        using var masking = Model(RepoPaths.DefaultModel, ViewMasking.KeyMask);
        var tokens = dropping.Embed(ShippedTestImages.First(1), 1);
        var all = Enumerable.Range(0, dropping.TokenCount).ToArray();
        // A sequence without the class token, and one that repeats token 5: no key mask can express either.
        int[][] kept = [all[1..], [.. all, 5], all[..^3]];

        var expected = dropping.EncodeKept(tokens, [0, 0, 0], kept, 256);
        var actual = masking.EncodeKept(tokens, [0, 0, 0], kept, 256);

        Assert.Equal(expected, actual);
    }

    [Fact]
    public void The_defense_answers_the_same_with_key_masked_views_in_one_run_as_with_dropped_ones()
    {
        ModelRuntime Runtime(ViewMasking masking) => new ModelRuntimeFactory(NullLoggerFactory.Instance).Create(ModelPackage.Load(RepoPaths.DefaultModel), new ModelRuntimeOptions
        {
            Inference = new InferenceOptions { Device = InferenceDevice.Cpu, ViewMasking = masking },
            CacheDirectory = Path.Combine(Path.GetTempPath(), "strapvit-key-mask-test"),
            Defense = new DefenseOptions(),
        });
        using var dropping = Runtime(ViewMasking.Drop);
        using var masking = Runtime(ViewMasking.KeyMask);
        // 24 test images and the same with a white 6x6 square (a crude patch: more flags, more disagreeing views).
        var clean = ShippedTestImages.First(24);
        var patched = (float[])clean.Clone();
        var rng = new Random(7);
        for (var i = 0; i < 24; i++)
        {
            int top = rng.Next(23), left = rng.Next(23);
            for (var r = 0; r < 6; r++) patched.AsSpan((i * 784) + ((top + r) * 28) + left, 6).Fill(1f);
        }

        var pixels = clean.Concat(patched).ToArray();
        var seeds = Enumerable.Range(0, 48).ToArray();
        Assert.True(masking.TokenModel!.MasksKeys);
        Assert.False(dropping.TokenModel!.MasksKeys);
        var expected = dropping.Defense!.Defense!.Run(pixels, 48, DefenseMode.Mitigate, seeds);
        var actual = masking.Defense!.Defense!.Run(pixels, 48, DefenseMode.Mitigate, seeds);
        // One image at a time too: the defended view and the first round share a run per image.
        var alone = new DefendedLogits[48];
        var maskedRuns = new int[48];
        var droppedRuns = new int[48];
        for (var i = 0; i < 48; i++)
        {
            var image = i;
            maskedRuns[i] = EncoderRuns(() => alone[image] = masking.Defense.Defense.Run(pixels.AsSpan(image * 784, 784), 1, DefenseMode.Mitigate, [image])[0]);
            droppedRuns[i] = EncoderRuns(() => dropping.Defense.Defense.Run(pixels.AsSpan(image * 784, 784), 1, DefenseMode.Mitigate, [image]));
        }

        Assert.Contains(expected, e => e.Report.Verification!.Outcome != "agreed");
        // Where the check agreed, one run with key masks; dropped, the defended view and each length of group view.
        var agreed = Enumerable.Range(0, 48).Where(i => expected[i].Report.Verification!.Outcome == "agreed").ToArray();
        Assert.NotEmpty(agreed);
        Assert.All(agreed, i => Assert.Equal(1, maskedRuns[i]));
        Assert.All(agreed, i => Assert.True(droppedRuns[i] >= 2, $"image {i}: {droppedRuns[i]} dropped runs"));
        Assert.True(maskedRuns.Sum() < droppedRuns.Sum());
        for (var i = 0; i < 48; i++)
        {
            foreach (var got in new[] { actual[i], alone[i] })
            {
                Assert.Equal(expected[i].Report.Verification!.Outcome, got.Report.Verification!.Outcome);
                Assert.Equal(expected[i].Report.Verification!.Forwards, got.Report.Verification!.Forwards);
                Assert.Equal(expected[i].Report.Verification!.Window, got.Report.Verification!.Window);
                for (var c = 0; c < expected[i].Logits.Length; c++)
                {
                    Assert.True(Math.Abs(expected[i].Logits[c] - got.Logits[c]) <= 1e-4f, $"image {i} class {c}: {got.Logits[c]} vs {expected[i].Logits[c]}");
                }
            }
        }
    }

    [Fact]
    public void Certified_mode_gives_the_same_answers_votes_and_certificates_with_key_masked_views()
    {
        using var dropping = Model(RepoPaths.DefaultModel, ViewMasking.Drop);
        using var masking = Model(RepoPaths.DefaultModel, ViewMasking.KeyMask);
        var expected = new PatchCertifier(new MaskedTokenClassifier(dropping, null), new CertifyOptions());
        var actual = new PatchCertifier(new MaskedTokenClassifier(masking, null), new CertifyOptions());
        var pixels = ShippedTestImages.First(8);
        Assert.True(masking.MasksKeys);

        var certified = 0;
        for (var i = 0; i < 8; i++)
        {
            foreach (var side in new[] { 4, 6 })
            {
                CertifiedClassification want = null!, got = null!;
                var droppedRuns = EncoderRuns(() => want = expected.Certify(pixels.AsSpan(i * 784, 784), side));
                // Each of certification's calls runs its views, which hide masks of several sizes, in one run per 256.
                var runs = EncoderRuns(() => got = actual.Certify(pixels.AsSpan(i * 784, 784), side));

                Assert.Equal(want.Label, got.Label);
                Assert.Equal(want.Votes, got.Votes);
                Assert.Equal(want.Report.Certified, got.Report.Certified);
                Assert.Equal(want.Report.Case, got.Report.Case);
                Assert.Equal(want.Report.Forwards, got.Report.Forwards);
                Assert.True(runs < droppedRuns, $"image {i}, {side}x{side}: {runs} key-masked runs against {droppedRuns} dropped, {want.Report.Forwards} views");
                if (got.Report.Certified) certified++;
            }
        }

        Assert.True(certified > 0);
    }
}
