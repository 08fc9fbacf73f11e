namespace StrapVit.Core.Certification;

/// <summary>
/// PatchCleanser's mask set on the token grid (Xiang et al., "PatchCleanser: Certifiably Robust Defense against
/// Adversarial Patches for Any Image Classifier", USENIX Security 2022, arXiv 2108.09135, section 3.2), built
/// per axis: a pixel patch of side p touches at most <see cref="PatchTokensRows"/> consecutive token rows (through
/// the tokens' receptive field, not their patches); windows of <c>m = that + stride − 1</c> tokens every
/// <c>stride</c> tokens, the last one flush with the grid's end, contain every run of that many tokens. A mask is
/// the product of a row window and a column window; every placement of the patch lies inside at least one mask
/// (checked exhaustively by the tests).
/// </summary>
public sealed class MaskSet
{
    private MaskPair[]? _pairs;

    private MaskSet(int patchSize, int gridRows, int gridCols, int stride, int patchRows, int patchCols, int[] rowStarts, int[] colStarts, int windowRows, int windowCols)
    {
        PatchSize = patchSize;
        GridRows = gridRows;
        GridCols = gridCols;
        Stride = stride;
        PatchTokensRows = patchRows;
        PatchTokensCols = patchCols;
        WindowRows = windowRows;
        WindowCols = windowCols;
        RowStarts = rowStarts;
        ColStarts = colStarts;
        Masks = rowStarts.SelectMany(r => colStarts.Select(c => Window(r, c))).ToArray();
    }

    /// <summary>Side in pixels of the patches the set is built for.</summary>
    public int PatchSize { get; }

    public int GridRows { get; }

    public int GridCols { get; }

    /// <summary>Stride between masks, in tokens.</summary>
    public int Stride { get; }

    /// <summary>Most consecutive token rows a patch can reach.</summary>
    public int PatchTokensRows { get; }

    /// <summary>Most consecutive token columns a patch can reach.</summary>
    public int PatchTokensCols { get; }

    /// <summary>Mask height in tokens.</summary>
    public int WindowRows { get; }

    /// <summary>Mask width in tokens.</summary>
    public int WindowCols { get; }

    public IReadOnlyList<int> RowStarts { get; }

    public IReadOnlyList<int> ColStarts { get; }

    /// <summary>Each mask as the sorted patch-grid indices (row·cols + col) it hides.</summary>
    public IReadOnlyList<int[]> Masks { get; }

    public int Count => Masks.Count;

    /// <summary>
    /// Every pair i &lt; j, those hiding the most tokens together (least overlap) first: the views likeliest to
    /// disagree, so the certificate check of an uncertified image stops early.
    /// </summary>
    public IReadOnlyList<MaskPair> PairsByHiddenTokens => _pairs ??= PatchCleanser.AllPairs(Count)
        .OrderByDescending(p => Masks[p.First].Union(Masks[p.Second]).Count())
        .ThenBy(p => p.First).ThenBy(p => p.Second)
        .ToArray();

    /// <summary>The mask set for <paramref name="patchSize"/>-pixel patches on an image of <paramref name="height"/> x <paramref name="width"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The patch does not fit the image, or the stride is below 1.</exception>
    /// <exception cref="CertificationException">A mask would be larger than the token grid.</exception>
    public static MaskSet Create(ReceptiveField field, int height, int width, int gridRows, int gridCols, int patchSize, int stride)
    {
        ArgumentNullException.ThrowIfNull(field);
        if (patchSize < 1 || patchSize > Math.Min(height, width))
        {
            throw new ArgumentOutOfRangeException(nameof(patchSize), patchSize, $"A patch must be 1 to {Math.Min(height, width)} pixels.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(stride, 1);
        var patchRows = MostTokensTouched(field.Rows, height, gridRows, patchSize);
        var patchCols = MostTokensTouched(field.Cols, width, gridCols, patchSize);
        var windowRows = patchRows + stride - 1;
        var windowCols = patchCols + stride - 1;
        if (windowRows > gridRows || windowCols > gridCols)
        {
            throw new CertificationException(
                $"A {patchSize}x{patchSize}-pixel patch reaches up to {patchRows}x{patchCols} tokens; with stride {stride} a mask would be {windowRows}x{windowCols} tokens, more than the {gridRows}x{gridCols} grid.");
        }

        return new MaskSet(patchSize, gridRows, gridCols, stride, patchRows, patchCols,
            Starts(gridRows, windowRows, stride), Starts(gridCols, windowCols, stride), windowRows, windowCols);
    }

    /// <summary>The most consecutive tokens of one axis a <paramref name="patch"/>-pixel run can touch, over every placement inside the image.</summary>
    public static int MostTokensTouched(AxisReceptiveField axis, int pixels, int tokens, int patch)
    {
        ArgumentNullException.ThrowIfNull(axis);
        var most = 0;
        for (var start = 0; start + patch <= pixels; start++)
        {
            var (first, last) = axis.TokensTouching(start, start + patch - 1, tokens);
            most = Math.Max(most, last - first + 1);
        }

        return most;
    }

    /// <summary>Window starts 0, s, 2s, ... and one flush with the end: k = ceil((n − m) / s) + 1 windows.</summary>
    private static int[] Starts(int n, int window, int stride)
    {
        var starts = new List<int>();
        for (var s = 0; s + window < n; s += stride)
        {
            starts.Add(s);
        }

        starts.Add(n - window);
        return starts.ToArray();
    }

    private int[] Window(int row, int col)
    {
        var cells = new int[WindowRows * WindowCols];
        var i = 0;
        for (var r = row; r < row + WindowRows; r++)
        {
            for (var c = col; c < col + WindowCols; c++)
            {
                cells[i++] = (r * GridCols) + c;
            }
        }

        return cells;
    }
}

/// <summary>Certification cannot run as asked (mask larger than the grid, too many forwards, no usable masking).</summary>
public sealed class CertificationException(string message) : Exception(message);
