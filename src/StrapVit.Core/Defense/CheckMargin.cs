using StrapVit.Core.Evaluation;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Defense;

/// <summary>
/// Sets the masking check's <see cref="DefenseOptions.VerifyMargin"/> for a stated clean replacement rate, the way the
/// detector's thresholds are set for a stated clean false-positive rate. How often the check replaces a clean answer
/// depends on the model: on held-out clean images the default check replaced 1.2% of the embedded model's answers,
/// 1.7% of fashion-vit-p4-masked's and 6.3% of fashion-vit-p7's (a 4x4 token grid, where one hidden token is 6% of the
/// image), and it was right on a sixth to a third of them. A margin calibrated per model on clean images caps that.
/// </summary>
public static class CheckMargin
{
    /// <summary>
    /// The margin for <paramref name="rate"/> (<see cref="For"/>) of the token defense with <paramref name="options"/>
    /// on <paramref name="clean"/> images (their labels are not read), and how many answers its check replaced there at
    /// that margin. Image i uses seed <c>seed + i</c>, as in <see cref="DefenseScoring.Defended"/>, which counts them.
    /// </summary>
    public static (double Margin, int Replaced) Calibrate(
        TokenSpaceModel model, TokenReference reference, DefenseOptions options, EvaluationSet clean, double rate, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(options);
        var counted = new Dictionary<double, int>();
        int ReplacedAt(double margin)
        {
            if (counted.TryGetValue(margin, out var known)) return known;
            var o = options.Clone();
            o.VerifyMargin = margin;
            return counted[margin] = DefenseScoring.Defended(new TokenPatchDefense(model, reference, o), clean, DefenseMode.Mitigate, seed).CheckRecovered ?? 0;
        }

        var margin = For(ReplacedAt, clean.Count, rate);
        return (margin, ReplacedAt(margin));
    }

    /// <summary>
    /// One-sided Clopper-Pearson upper bound, at <paramref name="confidence"/>, on the rate at which the check replaces
    /// clean answers, having replaced <paramref name="replaced"/> of <paramref name="images"/>: the largest rate p at which
    /// so few replacements still have probability at least 1 - confidence. A margin calibrated on 500 images to replace
    /// 5 (1%) is consistent with a true rate of up to 2.1%; on 4,000 images, 40 replaced bound it by 1.3%. Where the
    /// bound is far above the rate asked for, count on more clean images.
    /// </summary>
    public static double UpperBound(int replaced, int images, double confidence = 0.95)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(replaced);
        ArgumentOutOfRangeException.ThrowIfLessThan(images, replaced);
        if (!(confidence is > 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(confidence), confidence, "The confidence must be in (0, 1).");
        if (images == 0 || replaced == images) return 1;
        double low = replaced / (double)images, high = 1;
        for (var i = 0; i < 100; i++)
        {
            var mid = (low + high) / 2;
            if (BinomialCdf(replaced, images, mid) > 1 - confidence) low = mid;
            else high = mid;
        }

        return high;
    }

    /// <summary>P(X &lt;= k) for X ~ Binomial(n, p), summed in log space so that n in the thousands does not underflow.</summary>
    private static double BinomialCdf(int k, int n, double p)
    {
        if (p <= 0) return 1;
        if (p >= 1) return k >= n ? 1 : 0;
        double logP = Math.Log(p), logQ = Math.Log(1 - p), logChoose = 0, sum = 0;
        for (var i = 0; i <= k; i++)
        {
            if (i > 0) logChoose += Math.Log(n - i + 1) - Math.Log(i);
            sum += Math.Exp(logChoose + (i * logP) + ((n - i) * logQ));
        }

        return Math.Min(1, sum);
    }

    /// <summary>Largest margin tried.</summary>
    public const double Max = 1024;

    /// <summary>
    /// The smallest margin, to within <paramref name="precision"/> logits, at which the check replaces at most
    /// floor(<paramref name="rate"/> x <paramref name="images"/>) answers; 0 if it already does with no margin.
    /// <paramref name="replacedAt"/> runs the defense with the given margin over the clean images and counts the
    /// answers its check replaced. That count cannot grow with the margin (a larger margin only fails more
    /// second-round views, under either rule, and only refuses more completions; the first round does not depend on
    /// it), so bisection finds the boundary. The margin returned was itself counted and kept to the limit.
    /// </summary>
    /// <exception cref="InvalidOperationException">Even <see cref="Max"/> replaces more: some window passes with no
    /// partner to fail it (turn the check off for such a model).</exception>
    public static double For(Func<double, int> replacedAt, int images, double rate, double precision = 1e-3)
    {
        ArgumentNullException.ThrowIfNull(replacedAt);
        ArgumentOutOfRangeException.ThrowIfNegative(images);
        if (!(rate is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(rate), rate, "The clean replacement rate must be in [0, 1).");
        if (!(precision > 0)) throw new ArgumentOutOfRangeException(nameof(precision), precision, "The precision must be > 0.");
        var allowed = (int)Math.Floor((rate * images) + 1e-9);
        if (replacedAt(0) <= allowed) return 0;
        double low = 0, high = 1;
        while (replacedAt(high) > allowed)
        {
            if (high >= Max)
            {
                throw new InvalidOperationException(
                    $"No margin up to {Max} keeps the masking check to {allowed} replaced answers of {images}; turn the check off (Defense:VerifyWindows = 0) for this model.");
            }

            low = high;
            high = Math.Min(high * 2, Max);
        }

        while (high - low > precision)
        {
            var mid = (low + high) / 2;
            if (replacedAt(mid) > allowed) low = mid;
            else high = mid;
        }

        return high;
    }
}
