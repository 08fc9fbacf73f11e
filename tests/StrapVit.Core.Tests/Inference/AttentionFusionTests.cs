using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Inference;

/// <summary>
/// The fused attention against the standard-op graph it replaces: the same logits on real images, for every shipped
/// model the pattern matches, and blocks that differ from the pattern left alone.
/// </summary>
public sealed class AttentionFusionTests
{
    private static readonly InferenceOptions Standard = new() { Device = InferenceDevice.Cpu, FuseAttention = false, ShareWeights = false };
    private static readonly InferenceOptions Fused = new() { Device = InferenceDevice.Cpu, FuseAttention = true, ShareWeights = false };

    private static VitClassifier Classifier(string dir, InferenceOptions options) =>
        new(ModelPackage.Load(dir), new OnnxSessionFactory(options, NullLogger<OnnxSessionFactory>.Instance), options);

    [Theory]
    [InlineData("fashion-vit-tiny", 6)]
    [InlineData("fashion-vit-tiny-stem", 6)]
    [InlineData("fashion-vit-p7", 6)]
    public void Every_block_of_a_shipped_model_fuses_and_the_logits_stay_those_of_the_standard_ops(string model, int blocks)
    {
        var dir = Path.Combine(RepoPaths.Root, "models", model);
        using var standard = Classifier(dir, Standard);
        using var fused = Classifier(dir, Fused);
        var pixels = ShippedTestImages.First(32);

        var expected = standard.Logits(pixels, 32);
        var actual = fused.Logits(pixels, 32);

        Assert.Equal(0, standard.FusedAttentionBlocks);
        Assert.Equal(blocks, fused.FusedAttentionBlocks);
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4f, $"logit {i}: {actual[i]} vs {expected[i]}");
    }

    [Fact]
    public void The_fused_graph_has_one_attention_operator_per_block_and_none_of_the_ops_it_replaced()
    {
        var graph = ForwardGraph.LoadNormalized(ModelPackage.Load(RepoPaths.DefaultModel));
        var before = graph.Graph.Node.GroupBy(n => n.OpType).ToDictionary(g => g.Key, g => g.Count());

        var fused = AttentionFusion.Fuse(graph);

        var after = graph.Graph.Node.GroupBy(n => n.OpType).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(6, fused);
        Assert.Equal(6, graph.Graph.Node.Count(n => n.OpType == "Attention" && n.Domain == AttentionFusion.MicrosoftDomain));
        Assert.Equal(6, before["Softmax"]);
        Assert.False(after.ContainsKey("Softmax"));
        Assert.Equal(before["Transpose"] - (3 * 6), after.GetValueOrDefault("Transpose"));
        // Per block the q/k/v projection, the scores and the mixing leave; the output projection and the MLP stay.
        Assert.Equal(before["MatMul"] - (3 * 6), after["MatMul"]);
        Assert.Contains(graph.OpsetImport, o => o.Domain == AttentionFusion.MicrosoftDomain);
    }

    [Fact]
    public void A_block_that_differs_from_the_pattern_keeps_its_standard_ops_and_the_rest_still_fuse()
    {
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        var graph = ForwardGraph.LoadNormalized(package);
        // Block 3's softmax over another axis is no longer the attention the fused operator computes.
        var softmax = graph.Graph.Node.Where(n => n.OpType == "Softmax").ElementAt(3);
        softmax.Attribute.Clear();
        softmax.Attribute.Add(new global::Onnx.AttributeProto { Name = "axis", Type = global::Onnx.AttributeProto.Types.AttributeType.Int, I = 2 });

        Assert.Equal(5, AttentionFusion.Fuse(graph));
        Assert.Single(graph.Graph.Node, n => n.OpType == "Softmax");
    }

    [Fact]
    public void Blocks_whose_bias_and_weights_come_through_identity_nodes_fuse_and_the_logits_stay()
    {
        // As an exporter writes a parameter that equals another's (fresh zero biases): one initializer, shared through
        // Identity nodes. Here blocks 1 and 2 read their qkv bias and block 2 its qkv weights that way.
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        var standard = ForwardGraph.LoadNormalized(package);
        var adds = standard.Graph.Node.Where(n => n.OpType == "Add" && n.Name.Contains("/attn/qkv/", StringComparison.Ordinal)).ToList();
        var products = standard.Graph.Node.Where(n => n.OpType == "MatMul" && n.Name.Contains("/attn/qkv/", StringComparison.Ordinal)).ToList();
        Assert.Equal(6, adds.Count);
        Assert.Equal(6, products.Count);
        var initializers = standard.Graph.Initializer.Select(i => i.Name).ToHashSet();
        void ThroughIdentity(global::Onnx.NodeProto node, int slot)
        {
            var source = node.Input[slot];
            Assert.Contains(source, initializers);
            var alias = $"{source}_through_identity";
            standard.Graph.Node.Insert(standard.Graph.Node.IndexOf(node), new global::Onnx.NodeProto { OpType = "Identity", Name = alias, Input = { source }, Output = { alias } });
            node.Input[slot] = alias;
        }

        ThroughIdentity(adds[1], adds[1].Input.ToList().FindIndex(initializers.Contains));
        ThroughIdentity(adds[2], adds[2].Input.ToList().FindIndex(initializers.Contains));
        ThroughIdentity(products[2], 1);
        var fused = standard.Clone();

        Assert.Equal(6, AttentionFusion.Fuse(fused));
        Assert.DoesNotContain(fused.Graph.Node, n => n.OpType == "Identity" && n.Name.EndsWith("_through_identity", StringComparison.Ordinal));
        Assert.All(fused.Graph.Node.Where(AttentionFusion.IsFused), n => Assert.True(initializers.Contains(n.Input[1]) && initializers.Contains(n.Input[2])));

        var pixels = ShippedTestImages.First(4);
        float[] Run(global::Onnx.ModelProto graph)
        {
            using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(graph));
            var tensor = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(pixels, [4, 1, 28, 28]);
            using var result = session.Run([Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor(ForwardGraph.PixelInput, tensor)]);
            return result[0].AsTensor<float>().ToArray();
        }

        var expected = Run(standard);
        var actual = Run(fused);
        for (var i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4f, $"logit {i}: {actual[i]} vs {expected[i]}");
    }

    [Fact]
    public void The_last_block_runs_for_the_class_token_only_and_every_other_block_still_for_all_tokens()
    {
        var graph = ForwardGraph.LoadNormalized(ModelPackage.Load(RepoPaths.DefaultModel));
        AttentionFusion.Fuse(graph);
        var mlpBefore = graph.Graph.Node.Count(n => n.OpType == "Erf");

        Assert.True(ClassTokenReadout.Apply(graph));

        // One attention left with a single (class-token) query; the five others still full; one MLP per block still.
        Assert.Equal(5, graph.Graph.Node.Count(n => n.OpType == "Attention"));
        Assert.Single(graph.Graph.Node, n => n.OpType == "MultiHeadAttention" && n.Domain == AttentionFusion.MicrosoftDomain);
        Assert.Equal(mlpBefore, graph.Graph.Node.Count(n => n.OpType == "Erf"));
        // The class token is selected before the last attention's query projection, no longer after the final norm.
        var query = graph.Graph.Node.Single(n => n.OpType == "Gather" && n.Output[0].EndsWith("_query_in", StringComparison.Ordinal));
        var mha = graph.Graph.Node.Single(n => n.OpType == "MultiHeadAttention");
        Assert.True(graph.Graph.Node.IndexOf(query) < graph.Graph.Node.IndexOf(mha));
        Assert.DoesNotContain(graph.Graph.Node, n => n.OpType == "Gather" && n.Input[0] == "/norm/LayerNormalization_output_0");
    }

    [Fact]
    public void A_graph_with_no_class_token_readout_is_not_narrowed()
    {
        var graph = ForwardGraph.LoadNormalized(ModelPackage.Load(RepoPaths.DefaultModel));
        AttentionFusion.Fuse(graph);
        // Read the answer from token 1 instead: not the class token, nothing to narrow.
        var readout = graph.Graph.Node.Last(n => n.OpType == "Gather");
        graph.Graph.Initializer.Add(new global::Onnx.TensorProto { Name = "index_one", DataType = (int)global::Onnx.TensorProto.Types.DataType.Int64, Int64Data = { 1 } });
        readout.Input[1] = "index_one";
        var before = graph.Clone();

        Assert.False(ClassTokenReadout.Apply(graph));
        Assert.Equal(before, graph);
    }

    [Fact]
    public void Without_a_fused_attention_the_token_wise_tail_is_narrowed_alone_and_the_logits_stay()
    {
        // torchvision's layout does not fuse; its last MLP and norms still run for one row (its output projection is a Gemm
        // before a reshape, which ends the region).
        var package = ModelPackage.Load(RepoPaths.Fixture("gradients", "torchvision_op17"));
        var standard = ForwardGraph.LoadNormalized(package);
        var narrowed = standard.Clone();

        Assert.True(ClassTokenReadout.Apply(narrowed));
        Assert.DoesNotContain(narrowed.Graph.Node, n => n.OpType == "MultiHeadAttention");
        Assert.True(narrowed.Graph.Node.Count(n => n.Name.EndsWith("_strapvit_cls", StringComparison.Ordinal) && n.OpType == "MatMul") >= 2);

        var input = package.Manifest.Input;
        var rng = new Random(3);
        var pixels = Enumerable.Range(0, 2 * input.Size).Select(_ => (float)rng.NextDouble()).ToArray();
        float[] Run(global::Onnx.ModelProto graph)
        {
            using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(graph));
            var tensor = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(pixels, [2, input.Channels, input.Height, input.Width]);
            using var result = session.Run([Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor(ForwardGraph.PixelInput, tensor)]);
            return result[0].AsTensor<float>().ToArray();
        }

        var expected = Run(standard);
        var actual = Run(narrowed);
        for (var i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4f, $"logit {i}: {actual[i]} vs {expected[i]}");
    }

    [Fact]
    public void The_gradient_builder_differentiates_the_narrowed_tail()
    {
        var forward = ForwardGraph.LoadNormalized(ModelPackage.Load(RepoPaths.DefaultModel));

        var gradient = new StrapVit.Core.Gradients.GradientGraphBuilder().Build(forward, StrapVit.Core.Gradients.GradientObjective.CrossEntropy);

        Assert.Contains(gradient.Graph.Node, n => n.Name.EndsWith("_strapvit_cls", StringComparison.Ordinal));
        Assert.DoesNotContain(forward.Graph.Node, n => n.Name.EndsWith("_strapvit_cls", StringComparison.Ordinal));
        // The last attention runs for the class token's query only (standard ops: the builder differentiates them),
        // so five softmaxes of [N, H, T, T] and one of [N, H, 1, T] remain in the forward part.
        Assert.Single(gradient.Graph.Node, n => n.OpType == "Gather" && n.Name.EndsWith("_q0", StringComparison.Ordinal) && OnnxAxis(n) == 2);
        Assert.Equal(5, gradient.Graph.Node.Count(n => n.OpType == "Softmax" && n.Name.StartsWith("/blocks.", StringComparison.Ordinal)));
        Assert.Single(gradient.Graph.Node, n => n.OpType == "Softmax" && n.Name.StartsWith("strapvit_cls_", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("torchvision_op17")]
    [InlineData("c3_cls_hf_op15")]
    [InlineData("c1_mean_relu_op17")]
    public void Graphs_of_other_layouts_are_left_unchanged(string fixture)
    {
        // torchvision's nn.MultiheadAttention and Hugging Face's separate q/k/v projections export other op chains.
        var graph = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(RepoPaths.Fixture("gradients", fixture, "model.onnx")));
        var before = graph.Clone();

        Assert.Equal(0, AttentionFusion.Fuse(graph));
        Assert.Equal(before, graph);
    }

    [Fact]
    public void Masked_views_split_over_parallel_single_threaded_runs_give_the_logits_of_one_run()
    {
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        var serialOptions = new InferenceOptions { Device = InferenceDevice.Cpu, ViewParallelism = 1 };
        var parallelOptions = new InferenceOptions { Device = InferenceDevice.Cpu, ViewParallelism = 3 };
        using var serial = new TokenSpaceModel(package, new OnnxSessionFactory(serialOptions, NullLogger<OnnxSessionFactory>.Instance));
        using var parallel = new TokenSpaceModel(package, new OnnxSessionFactory(parallelOptions, NullLogger<OnnxSessionFactory>.Instance));
        var tokens = serial.Embed(ShippedTestImages.First(2), 2);
        var rng = new Random(5);
        // 150 views of two images, hiding 0-8 tokens each: several lengths, runs of up to 32 views, three workers.
        var sources = Enumerable.Range(0, 150).Select(v => v % 2).ToArray();
        var hidden = sources.Select(_ => (IReadOnlyCollection<int>)Enumerable.Range(1, 49).OrderBy(_ => rng.Next()).Take(rng.Next(9)).ToHashSet()).ToArray();

        var one = serial.EncodeHiding(tokens, sources, hidden, null, 256);
        var split = parallel.EncodeHiding(tokens, sources, hidden, null, 256);

        Assert.Equal(1, serial.ViewParallelism);
        Assert.Equal(3, parallel.ViewParallelism);
        Assert.Equal(one.Length, split.Length);
        for (var i = 0; i < one.Length; i++) Assert.True(Math.Abs(one[i] - split[i]) <= 1e-4f, $"logit {i}: {split[i]} vs {one[i]}");
    }

    [Theory]
    [InlineData(0, OnnxSessionFactory.Cpu, 64, -1)]
    [InlineData(0, OnnxSessionFactory.Cpu, 768, 1)]
    [InlineData(3, OnnxSessionFactory.Cpu, 768, 3)]
    [InlineData(0, OnnxSessionFactory.Cuda, 64, 1)]
    [InlineData(4, OnnxSessionFactory.Cuda, 64, 1)]
    public void Views_run_in_parallel_on_cpu_for_narrow_encoders_unless_configured(int configured, string provider, int dim, int expected)
    {
        var chosen = TokenSpaceModel.ChooseViewParallelism(configured, provider, dim);

        Assert.Equal(expected == -1 ? Environment.ProcessorCount : expected, chosen);
    }

    private static long OnnxAxis(global::Onnx.NodeProto n) => n.Attribute.Single(a => a.Name == "axis").I;

    /// <summary>The default model's forward graph (fused or not) with <c>Add(final norm, op(c))</c> spliced in before the readout; c is [1, D].</summary>
    private static global::Onnx.ModelProto WithRankTwoOperand(string op, bool fuse = true)
    {
        var graph = ForwardGraph.LoadNormalized(ModelPackage.Load(RepoPaths.DefaultModel));
        if (fuse) AttentionFusion.Fuse(graph);
        var readout = graph.Graph.Node.Last(n => n.OpType == "Gather");
        var c = new global::Onnx.TensorProto { Name = "test_c", DataType = (int)global::Onnx.TensorProto.Types.DataType.Float, Dims = { 1, 64 } };
        c.FloatData.AddRange(Enumerable.Range(0, 64).Select(i => i * 0.01f));
        var d = c.Clone();
        d.Name = "test_d";
        graph.Graph.Initializer.AddRange([c, d]);
        var made = new global::Onnx.NodeProto { OpType = op, Name = "test_made", Input = { "test_c" }, Output = { "test_made_out" } };
        if (op == "Cast") made.Attribute.Add(new global::Onnx.AttributeProto { Name = "to", Type = global::Onnx.AttributeProto.Types.AttributeType.Int, I = 1 });
        else made.Input.Add("test_d");
        var add = new global::Onnx.NodeProto { OpType = "Add", Name = "test_add", Input = { readout.Input[0], "test_made_out" }, Output = { "test_added" } };
        var at = graph.Graph.Node.IndexOf(readout);
        graph.Graph.Node.Insert(at, add);
        graph.Graph.Node.Insert(at, made);
        readout.Input[0] = "test_added";
        return graph;
    }

    [Fact]
    public void A_computed_operand_that_is_not_a_token_tensor_stops_the_readout()
    {
        // Add(x, Cast(c)) with c [1, D]: its class-token row would be taken on the wrong axis.
        var graph = WithRankTwoOperand("Cast");
        var before = graph.Clone();

        Assert.False(ClassTokenReadout.Apply(graph));
        Assert.Equal(before, graph);
    }

    [Fact]
    public void An_attention_operator_the_pass_did_not_create_is_not_narrowed()
    {
        var graph = ForwardGraph.LoadNormalized(ModelPackage.Load(RepoPaths.DefaultModel));
        AttentionFusion.Fuse(graph);
        // A com.microsoft.Attention of the model's own may carry attributes (a causal mask, other widths) the narrowing ignores.
        graph.Graph.Node.Last(n => n.OpType == "Attention").Name = "exported_attention";
        var before = graph.Clone();

        Assert.False(ClassTokenReadout.Apply(graph));
        Assert.Equal(before, graph);
    }

    [Fact]
    public void The_gradient_builder_keeps_the_whole_graph_when_a_row_would_come_from_a_tensor_of_another_rank()
    {
        // Add(c, d) of two [1, D] constants passes the pass's own check (an Add makes token tensors), so only the
        // builder's shapes can tell: it must differentiate the graph unnarrowed.
        var graph = WithRankTwoOperand("Add", fuse: false);
        var narrowedAlone = graph.Clone();
        Assert.True(ClassTokenReadout.Apply(narrowedAlone));

        var gradient = new StrapVit.Core.Gradients.GradientGraphBuilder().Build(graph, StrapVit.Core.Gradients.GradientObjective.CrossEntropy);

        Assert.DoesNotContain(gradient.Graph.Node, n => n.Name.Contains("strapvit_cls", StringComparison.Ordinal));
    }
}
