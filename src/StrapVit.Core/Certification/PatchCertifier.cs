using System.Collections.Concurrent;
using System.Diagnostics;
using StrapVit.Core.Diagnostics;

namespace StrapVit.Core.Certification;

/// <summary>A certified classification: the label, its certificate, and the one-mask votes per class.</summary>
/// <param name="Label">PatchCleanser's prediction.</param>
/// <param name="Votes">Per class, how many one-mask views predicted it.</param>
/// <param name="Report">The <c>defense</c> object.</param>
public sealed record CertifiedClassification(int Label, int[] Votes, CertifyReport Report);

/// <summary>
/// Certified mode over a split model: derives the tokens' receptive field from the embedding graph once, builds
/// (and caches) the mask set per patch size, embeds the image once and runs PatchCleanser's double masking over
/// <see cref="MaskedTokenClassifier"/>. Thread-safe.
/// </summary>
public sealed class PatchCertifier
{
    private readonly ConcurrentDictionary<(int Patch, int Stride, int RowBorder, int ColBorder), MaskSet> _masks = new();

    public PatchCertifier(MaskedTokenClassifier classifier, CertifyOptions options)
        : this(classifier, options, ReceptiveField.Derive(classifier.Model.EmbeddingGraph, classifier.Model.Manifest.PatchSize))
    {
    }

    public PatchCertifier(MaskedTokenClassifier classifier, CertifyOptions options, ReceptiveField field)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(options);
        Classifier = classifier;
        Options = options;
        Field = field;
    }

    public MaskedTokenClassifier Classifier { get; }

    public CertifyOptions Options { get; }

    public ReceptiveField Field { get; }

    /// <summary>The mask set for <paramref name="patchSize"/>-pixel patches at the configured strides.</summary>
    /// <exception cref="CertificationException">The masks do not fit the grid, or the worst case needs more than MaxForwards forwards.</exception>
    public MaskSet MasksFor(int patchSize) => MasksFor(patchSize, Options.MaskStride, Options.RowBorderStride, Options.ColBorderStride);

    /// <inheritdoc cref="MasksFor(int)"/>
    /// <param name="patchSize">Side of the patch in pixels.</param>
    /// <param name="stride">Stride between masks in tokens.</param>
    /// <param name="rowBorderStride">Stride of the top and bottom row of masks; 0 for <paramref name="stride"/>.</param>
    /// <param name="colBorderStride">Stride of the leftmost and rightmost column of masks; 0 for <paramref name="stride"/>.</param>
    public MaskSet MasksFor(int patchSize, int stride, int rowBorderStride = 0, int colBorderStride = 0)
    {
        if (patchSize < 1 || patchSize > Options.MaxPatchSize)
        {
            throw new CertificationException($"patch must be in [1, {Options.MaxPatchSize}] pixels (Certify:MaxPatchSize); got {patchSize}.");
        }

        var key = (patchSize, stride, MaskSet.EffectiveBorderStride(rowBorderStride, stride), MaskSet.EffectiveBorderStride(colBorderStride, stride));
        if (_masks.TryGetValue(key, out var cached))
        {
            return cached;
        }

        var m = Classifier.Model;
        var input = m.Manifest.Input;
        if (patchSize > Math.Min(input.Height, input.Width))
        {
            throw new CertificationException($"A {patchSize}-pixel patch does not fit the {input.Height}x{input.Width} input.");
        }

        MaskSet masks;
        try
        {
            masks = MaskSet.Create(Field, input.Height, input.Width, m.GridRows, m.GridCols, patchSize, stride, rowBorderStride, colBorderStride);
        }
        catch (ArgumentOutOfRangeException ex)
        {
            throw new CertificationException(ex.Message);
        }

        var worst = PatchCleanser.WorstCaseForwards(masks.Count);
        if (worst > Options.MaxForwards)
        {
            throw new CertificationException(
                $"A {patchSize}-pixel patch needs {masks.Count} masks of {masks.WindowRows}x{masks.WindowCols} tokens, up to {worst} masked forwards; Certify:MaxForwards is {Options.MaxForwards}.");
        }

        return _masks.GetOrAdd(key, masks);
    }

    /// <summary>Certifies one image <c>[C, H, W]</c> in [0, 1] pixel space against patches of side <paramref name="patchSize"/>.</summary>
    public CertifiedClassification Certify(ReadOnlySpan<float> pixels, int patchSize, CancellationToken cancellationToken = default) =>
        Certify(pixels, MasksFor(patchSize), cancellationToken);

    /// <summary>Certifies one image with a given mask set.</summary>
    public CertifiedClassification Certify(ReadOnlySpan<float> pixels, MaskSet masks, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(masks);
        using var activity = CoreActivities.Defense("certify", Classifier.MethodName, 1);
        var sw = Stopwatch.StartNew();
        var tokens = Classifier.Model.Embed(pixels, 1, cancellationToken);
        var views = new ImageViews(Classifier, tokens, masks, cancellationToken);
        var result = PatchCleanser.Run(views, masks.Count, views.PairsMostFragileFirst);
        var votes = new int[Classifier.Classes];
        foreach (var label in result.FirstRound)
        {
            votes[label]++;
        }

        var report = new CertifyReport(
            "certify",
            result.Certified,
            masks.PatchSize,
            Classifier.MethodName,
            new CertifyMaskInfo(masks.WindowRows, masks.WindowCols, masks.Stride, masks.Count, Math.Max(masks.PatchTokensRows, masks.PatchTokensCols),
                masks.RowBorderStride, masks.ColBorderStride, masks.LargestRows, masks.LargestCols),
            Field,
            result.Forwards,
            result.Case switch
            {
                CleanserCase.Agreement => "agreement",
                CleanserCase.SecondRound => "second-round",
                _ => "majority",
            },
            Math.Round(sw.Elapsed.TotalMilliseconds, 3));
        return new CertifiedClassification(result.Label, votes, report);
    }

    /// <summary>
    /// One embedded image seen through the mask set. It keeps each one-mask view's margin (top logit minus the next),
    /// so the certificate check can visit first the pairs of the two least confident masks: the views likeliest to
    /// disagree, where an uncertified image's check ends. The order changes the number of forwards, never the answer.
    /// </summary>
    private sealed class ImageViews(MaskedTokenClassifier classifier, float[] tokens, MaskSet masks, CancellationToken cancellationToken) : IMaskedPredictor
    {
        private readonly double[] _margins = new double[masks.Count];

        public int[] Predict(IReadOnlyList<MaskPair> views)
        {
            var hidden = views.Select(masks.Hidden).ToArray();
            var logits = classifier.Logits(tokens, hidden, cancellationToken);
            var k = classifier.Classes;
            var labels = new int[views.Count];
            for (var v = 0; v < views.Count; v++)
            {
                var row = logits.AsSpan(v * k, k);
                labels[v] = Numerics.Probabilities.ArgMax(row);
                if (views[v].First == views[v].Second) _margins[views[v].First] = Margin(row, labels[v]);
            }

            return labels;
        }

        /// <summary>Every pair, the smallest sum of one-mask margins first (ties: the most hidden tokens first).</summary>
        public MaskPair[] PairsMostFragileFirst() =>
            masks.PairsByHiddenTokens.OrderBy(p => _margins[p.First] + _margins[p.Second]).ToArray();

        private static double Margin(ReadOnlySpan<float> row, int top) => row[top] - row[Numerics.Probabilities.ArgMaxExcept(row, top)];
    }
}
