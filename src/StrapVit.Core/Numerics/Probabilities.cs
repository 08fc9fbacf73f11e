namespace StrapVit.Core.Numerics;

/// <summary>Softmax and ranking over logits rows.</summary>
public static class Probabilities
{
    /// <summary>Numerically stable softmax of one row of logits.</summary>
    public static float[] Softmax(ReadOnlySpan<float> logits)
    {
        var max = float.NegativeInfinity;
        foreach (var v in logits)
        {
            max = MathF.Max(max, v);
        }

        var result = new float[logits.Length];
        double sum = 0;
        for (var i = 0; i < logits.Length; i++)
        {
            result[i] = MathF.Exp(logits[i] - max);
            sum += result[i];
        }

        for (var i = 0; i < result.Length; i++)
        {
            result[i] = (float)(result[i] / sum);
        }

        return result;
    }

    /// <summary>Index of the largest value other than the one at <paramref name="except"/> (the first on ties; −1 when there is none): the strongest rival of a class.</summary>
    public static int ArgMaxExcept(ReadOnlySpan<float> values, int except)
    {
        var best = -1;
        for (var i = 0; i < values.Length; i++)
        {
            if (i != except && (best < 0 || values[i] > values[best]))
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>Index of the largest value (the first on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>Indices of the <paramref name="k"/> largest values, largest first.</summary>
    public static int[] TopK(ReadOnlySpan<float> values, int k)
    {
        var idx = Enumerable.Range(0, values.Length).ToArray();
        var copy = values.ToArray();
        Array.Sort(idx, (a, b) => copy[b].CompareTo(copy[a]) is var c && c != 0 ? c : a.CompareTo(b));
        return idx[..Math.Min(k, idx.Length)];
    }
}
