using StrapVit.Core.Attacks;
using StrapVit.Core.Gradients;

namespace StrapVit.Core.Tests.Attacks;

/// <summary>
/// Analytic differentiable models for attack tests: gradients in closed form, no ONNX Runtime. Both compute in
/// double and round to float, like a float32 graph would.
/// </summary>
internal abstract class FakeModel(int channels, int height, int width, int classes) : IDifferentiableClassifier
{
    public int Channels { get; } = channels;

    public int Height { get; } = height;

    public int Width { get; } = width;

    public int Classes { get; } = classes;

    public int Size => Channels * Height * Width;

    /// <summary>Gradient runs so far (cross-entropy and vjp).</summary>
    public int GradientCalls { get; private set; }

    public float[] Logits(ReadOnlySpan<float> pixels, int batch, CancellationToken cancellationToken)
    {
        var result = new float[batch * Classes];
        for (var n = 0; n < batch; n++)
        {
            var z = Forward(pixels.Slice(n * Size, Size));
            for (var k = 0; k < Classes; k++) result[(n * Classes) + k] = (float)z[k];
        }

        return result;
    }

    public GradientResult CrossEntropy(ReadOnlySpan<float> pixels, ReadOnlySpan<long> labels, int batch, CancellationToken cancellationToken)
    {
        GradientCalls++;
        var logits = Logits(pixels, batch, cancellationToken);
        var loss = new float[batch];
        var cot = new float[batch * Classes];
        for (var n = 0; n < batch; n++)
        {
            var row = logits.AsSpan(n * Classes, Classes);
            var max = double.NegativeInfinity;
            foreach (var v in row) max = Math.Max(max, v);
            double sum = 0;
            foreach (var v in row) sum += Math.Exp(v - max);
            loss[n] = (float)(Math.Log(sum) + max - row[(int)labels[n]]);
            for (var k = 0; k < Classes; k++)
            {
                cot[(n * Classes) + k] = (float)((Math.Exp(row[k] - max) / sum) - (k == labels[n] ? 1 : 0));
            }
        }

        return new GradientResult(batch, Classes, logits, loss, Backward(pixels, cot, batch));
    }

    public GradientResult Vjp(ReadOnlySpan<float> pixels, ReadOnlySpan<float> logitsGrad, int batch, CancellationToken cancellationToken)
    {
        GradientCalls++;
        return new GradientResult(batch, Classes, Logits(pixels, batch, cancellationToken), null, Backward(pixels, logitsGrad, batch));
    }

    protected abstract double[] Forward(ReadOnlySpan<float> x);

    /// <summary>Jᵀ·g for one sample.</summary>
    protected abstract double[] BackwardOne(ReadOnlySpan<float> x, ReadOnlySpan<float> g);

    private float[] Backward(ReadOnlySpan<float> pixels, ReadOnlySpan<float> cot, int batch)
    {
        var grad = new float[batch * Size];
        for (var n = 0; n < batch; n++)
        {
            var gx = BackwardOne(pixels.Slice(n * Size, Size), cot.Slice(n * Classes, Classes));
            for (var i = 0; i < Size; i++) grad[(n * Size) + i] = (float)gx[i];
        }

        return grad;
    }

    protected static double[,] RandomMatrix(Random random, int rows, int cols, double scale)
    {
        var m = new double[rows, cols];
        for (var r = 0; r < rows; r++)
        {
            for (var c = 0; c < cols; c++) m[r, c] = ((2 * random.NextDouble()) - 1) * scale;
        }

        return m;
    }

    /// <summary>Random images in [0.2, 0.8] (interior, so small attacks are not clipped).</summary>
    public float[] Images(int batch, int seed, float low = 0.2f, float high = 0.8f)
    {
        var random = new Random(seed);
        var x = new float[batch * Size];
        for (var i = 0; i < x.Length; i++) x[i] = low + ((high - low) * (float)random.NextDouble());
        return x;
    }
}

/// <summary>logits = W·x + b.</summary>
internal sealed class LinearModel : FakeModel
{
    public LinearModel(int channels = 1, int height = 6, int width = 6, int classes = 4, int seed = 1, double scale = 0.5)
        : base(channels, height, width, classes)
    {
        var random = new Random(seed);
        W = RandomMatrix(random, classes, Size, scale);
        B = new double[classes];
        for (var k = 0; k < classes; k++) B[k] = ((2 * random.NextDouble()) - 1) * scale;
    }

    public double[,] W { get; }

    public double[] B { get; }

    protected override double[] Forward(ReadOnlySpan<float> x)
    {
        var z = (double[])B.Clone();
        for (var k = 0; k < Classes; k++)
        {
            for (var i = 0; i < Size; i++) z[k] += W[k, i] * x[i];
        }

        return z;
    }

    protected override double[] BackwardOne(ReadOnlySpan<float> x, ReadOnlySpan<float> g)
    {
        var gx = new double[Size];
        for (var k = 0; k < Classes; k++)
        {
            for (var i = 0; i < Size; i++) gx[i] += W[k, i] * g[k];
        }

        return gx;
    }
}

/// <summary>logits = B·tanh(A·x + a) + b: curved, so multi-step attacks differ from one step.</summary>
internal sealed class TwoLayerModel : FakeModel
{
    private readonly double[,] a;
    private readonly double[] a0;
    private readonly double[,] b;
    private readonly double[] b0;
    private readonly int hidden;

    public TwoLayerModel(int channels = 3, int height = 5, int width = 5, int classes = 5, int hidden = 16, int seed = 2)
        : base(channels, height, width, classes)
    {
        var random = new Random(seed);
        this.hidden = hidden;
        a = RandomMatrix(random, hidden, Size, 1.5 / Math.Sqrt(Size));
        a0 = new double[hidden];
        for (var j = 0; j < hidden; j++) a0[j] = ((2 * random.NextDouble()) - 1) * 0.5;
        b = RandomMatrix(random, classes, hidden, 2.0);
        b0 = new double[classes];
    }

    private double[] Hidden(ReadOnlySpan<float> x)
    {
        var h = (double[])a0.Clone();
        for (var j = 0; j < hidden; j++)
        {
            for (var i = 0; i < Size; i++) h[j] += a[j, i] * x[i];
            h[j] = Math.Tanh(h[j]);
        }

        return h;
    }

    protected override double[] Forward(ReadOnlySpan<float> x)
    {
        var h = Hidden(x);
        var z = (double[])b0.Clone();
        for (var k = 0; k < Classes; k++)
        {
            for (var j = 0; j < hidden; j++) z[k] += b[k, j] * h[j];
        }

        return z;
    }

    protected override double[] BackwardOne(ReadOnlySpan<float> x, ReadOnlySpan<float> g)
    {
        var h = Hidden(x);
        var gh = new double[hidden];
        for (var j = 0; j < hidden; j++)
        {
            for (var k = 0; k < Classes; k++) gh[j] += b[k, j] * g[k];
            gh[j] *= 1 - (h[j] * h[j]);
        }

        var gx = new double[Size];
        for (var j = 0; j < hidden; j++)
        {
            for (var i = 0; i < Size; i++) gx[i] += a[j, i] * gh[j];
        }

        return gx;
    }
}
