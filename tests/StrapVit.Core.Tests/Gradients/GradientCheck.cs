using Google.Protobuf;
using Onnx;
using StrapVit.Core.Gradients;

namespace StrapVit.Core.Tests.Gradients;

/// <summary>Directional central differences of a scalar objective against the builder's vjp graph.</summary>
internal static class GradientCheck
{
    /// <summary>
    /// For random directions v: ⟨Jᵀw, v⟩ from the vjp graph against (f(x+hv) − f(x−hv)) / 2h with f = ⟨logits, w⟩,
    /// both from the forward model. Returns the worst |analytic − numeric| / max(|numeric|, floor).
    /// </summary>
    public static double WorstDirectionalError(ModelProto forward, long[] sampleDims, int batch, int directions, float step, int seed)
    {
        var vjpModel = new GradientGraphBuilder().Build(forward, GradientObjective.Vjp);
        using var fwd = TinyGraph.CpuSession(forward);
        using var vjp = GradientRunner.Create(new GradientGraphBuilder().Build(forward, GradientObjective.CrossEntropy).ToByteArray(),
            vjpModel.ToByteArray(), GradientTestData.CpuSessions);
        var rng = new Random(seed);
        var size = (int)(batch * sampleDims.Aggregate(1L, (a, b) => a * b));
        long[] shape = [batch, .. sampleDims];
        var x = Enumerable.Range(0, size).Select(_ => (float)rng.NextDouble()).ToArray();
        var w = Enumerable.Range(0, batch * vjp.Classes).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var grad = vjp.Vjp(x, w, batch).PixelGrad;
        var worst = 0.0;
        for (var d = 0; d < directions; d++)
        {
            var v = Enumerable.Range(0, size).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            var analytic = Dot(grad, v);
            var plus = Dot(TinyGraph.RunForward(fwd, Shift(x, v, step), shape), w);
            var minus = Dot(TinyGraph.RunForward(fwd, Shift(x, v, -step), shape), w);
            var numeric = (plus - minus) / (2 * step);
            worst = Math.Max(worst, Math.Abs(analytic - numeric) / Math.Max(Math.Abs(numeric), 1e-2));
        }

        return worst;
    }

    public static float[] Shift(float[] x, float[] v, float h) => x.Select((xi, i) => xi + (h * v[i])).ToArray();

    public static double Dot(float[] a, float[] b) => a.Select((ai, i) => (double)ai * b[i]).Sum();
}
