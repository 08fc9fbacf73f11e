using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Benchmarks;

/// <summary>
/// <c>encoder-profile &lt;model-dir&gt; [batch] [tokens] [runs] [threads]</c>: ONNX Runtime's own profile of the token
/// encoder (the graph certified mode and the masking check run) on one input shape: time per op type, summed over
/// the runs, and wall time per run (with one thread, also the same views as two concurrent runs). For finding where a
/// masked forward spends its time. <c>STRAPVIT_FUSE=1</c> profiles the graph as the service runs it (fused attention,
/// class-token readout) and prints its largest logit difference from the standard ops; <c>STRAPVIT_DUMP_ENCODER=1</c>
/// lists the encoder's nodes instead.
/// </summary>
public static class EncoderProfile
{
    public static void Run(string dir, int batch, int tokens, int runs, int threads)
    {
        var package = ModelPackage.Load(dir);
        var forward = ForwardGraph.LoadNormalized(package);
        var split = TokenGraphSplitter.Split(forward, package.Manifest.Tokens!.Tensor);
        int dim;
        using (var embed = new InferenceSession(split.Embedding.ToByteArray()))
        {
            var input = package.Manifest.Input;
            using var output = embed.Run([NamedOnnxValue.CreateFromTensor(embed.InputMetadata.Keys.First(), new DenseTensor<float>(new float[input.Size], [1, input.Channels, input.Height, input.Width]))]);
            dim = output[0].AsTensor<float>().Dimensions[^1];
        }

        if (Environment.GetEnvironmentVariable("STRAPVIT_FUSE") == "1")
        {
            var reference = split.Encoder.Clone();
            Console.WriteLine($"fused {AttentionFusion.Optimize(split.Encoder)} attention blocks; ops now: {string.Join(", ", split.Encoder.Graph.Node.GroupBy(n => n.OpType).Select(g => $"{g.Key} {g.Count()}"))}");
            using var a = new InferenceSession(reference.ToByteArray());
            using var b = new InferenceSession(split.Encoder.ToByteArray());
            var probe = new float[3 * tokens * dim];
            var rng = new Random(1);
            for (var i = 0; i < probe.Length; i++) probe[i] = (float)((rng.NextDouble() * 2) - 1);
            var feed = new[] { NamedOnnxValue.CreateFromTensor(a.InputMetadata.Keys.First(), new DenseTensor<float>(probe, [3, tokens, dim])) };
            using var ra = a.Run(feed);
            using var rb = b.Run(feed);
            var x = ra[0].AsTensor<float>().ToArray();
            var y = rb[0].AsTensor<float>().ToArray();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"max |logit difference| fused vs standard ops: {x.Zip(y, (p, r) => Math.Abs(p - r)).Max():G3}"));
        }

        if (Environment.GetEnvironmentVariable("STRAPVIT_DUMP_ENCODER") == "1")
        {
            foreach (var n in split.Encoder.Graph.Node) Console.WriteLine($"{n.OpType} [{string.Join(",", n.Input)}] -> [{string.Join(",", n.Output)}] {string.Join(" ", n.Attribute.Select(a => a.Name + "=" + (a.Ints.Count > 0 ? string.Join("/", a.Ints) : a.I.ToString(CultureInfo.InvariantCulture)) + (a.F != 0 ? a.F.ToString(CultureInfo.InvariantCulture) : "")))}");
            foreach (var i in split.Encoder.Graph.Initializer.Where(i => i.Dims.Count <= 1 && i.Dims.Aggregate(1L, (a, b) => a * b) <= 8)) Console.WriteLine($"init {i.Name} dims [{string.Join(",", i.Dims)}] ints [{string.Join(",", i.Int64Data)}] raw {i.RawData.Length}");
            return;
        }

        var prefix = Path.Combine(Path.GetTempPath(), $"strapvit-encoder-profile-{Environment.ProcessId}");
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads };
        so.OptimizedModelFilePath = prefix + ".optimized.onnx";
        using (var plain = new InferenceSession(split.Encoder.ToByteArray(), so))
        {
            var data = new float[batch * tokens * dim];
            var rng = new Random(0);
            for (var i = 0; i < data.Length; i++) data[i] = (float)((rng.NextDouble() * 2) - 1);
            var input = new[] { NamedOnnxValue.CreateFromTensor(plain.InputMetadata.Keys.First(), new DenseTensor<float>(data, [batch, tokens, dim])) };
            using (plain.Run(input)) { }
            var sw = Stopwatch.StartNew();
            for (var r = 0; r < runs; r++)
            {
                using (plain.Run(input)) { }
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"batch {batch} x {tokens} tokens, {threads} thread(s): {sw.Elapsed.TotalMilliseconds / runs:F2} ms/run, {sw.Elapsed.TotalMilliseconds / runs / batch * 1000:F1} us/view"));
            if (threads == 1)
            {
                // The same views as two halves run at once on this one-thread session.
                var half = batch / 2;
                var halves = new[] { 0, 1 }.Select(h => new[] { NamedOnnxValue.CreateFromTensor(plain.InputMetadata.Keys.First(), new DenseTensor<float>(data.AsMemory(h * half * tokens * dim, half * tokens * dim), [half, tokens, dim])) }).ToArray();
                sw.Restart();
                for (var r = 0; r < runs; r++)
                {
                    Parallel.For(0, 2, h => { using (plain.Run(halves[h])) { } });
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"two concurrent halves of {half}: {sw.Elapsed.TotalMilliseconds / runs:F2} ms/run, {sw.Elapsed.TotalMilliseconds / runs / batch * 1000:F1} us/view"));
                using var second = new InferenceSession(split.Encoder.ToByteArray(), so);
                using (second.Run(halves[1])) { }
                sw.Restart();
                for (var r = 0; r < runs; r++)
                {
                    Parallel.For(0, 2, h => { using ((h == 0 ? plain : second).Run(halves[h])) { } });
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"two concurrent halves on two sessions: {sw.Elapsed.TotalMilliseconds / runs:F2} ms/run, {sw.Elapsed.TotalMilliseconds / runs / batch * 1000:F1} us/view"));
            }
        }

        var optimized = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(prefix + ".optimized.onnx"));
        Console.WriteLine("optimized graph: " + string.Join(", ", optimized.Graph.Node.GroupBy(n => n.OpType).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} {g.Count()}")));
        so.OptimizedModelFilePath = string.Empty;
        so.EnableProfiling = true;
        so.ProfileOutputPathPrefix = prefix;
        using var session = new InferenceSession(split.Encoder.ToByteArray(), so);
        {
            var input = new[] { NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.First(), new DenseTensor<float>(new float[batch * tokens * dim], [batch, tokens, dim])) };
            for (var r = 0; r < runs; r++)
            {
                using (session.Run(input)) { }
            }
        }

        var file = session.EndProfiling();
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var byOp = new Dictionary<string, (double Us, int Count)>();
        foreach (var e in json.RootElement.EnumerateArray())
        {
            if (e.GetProperty("cat").GetString() != "Node" || !e.TryGetProperty("args", out var a) || !a.TryGetProperty("op_name", out var op)) continue;
            var name = e.GetProperty("name").GetString() ?? string.Empty;
            if (!name.EndsWith("_kernel_time", StringComparison.Ordinal)) continue;
            var key = op.GetString() ?? "?";
            var cur = byOp.GetValueOrDefault(key);
            byOp[key] = (cur.Us + e.GetProperty("dur").GetDouble(), cur.Count + 1);
        }

        var total = byOp.Values.Sum(v => v.Us);
        foreach (var (op, (us, count)) in byOp.OrderByDescending(kv => kv.Value.Us))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{op,-28} {us / runs / 1000,8:F3} ms/run {100 * us / total,5:F1}%  {count / runs} nodes"));
        }

        File.Delete(file);
        File.Delete(prefix + ".optimized.onnx");
    }
}
