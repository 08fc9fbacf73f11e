namespace StrapVit.Core.Certification;

/// <summary>
/// PatchCleanser's mask set on the token grid (Xiang et al., "PatchCleanser: Certifiably Robust Defense against
/// Adversarial Patches for Any Image Classifier", USENIX Security 2022, arXiv 2108.09135, section 3.2), built
/// per axis: a pixel patch of side p touches at most <see cref="PatchTokensRows"/> consecutive token rows (through
/// the tokens' receptive field, not their patches); windows of <c>m = that + stride − 1</c> tokens every
/// <c>stride</c> tokens, the last one flush with the grid's end, contain every run of that many tokens. A mask is
/// the product of a row window and a column window; every placement of the patch lies inside at least one mask
/// (checked exhaustively by the tests). Optionally the windows at each end of an axis cover more placements
/// (<see cref="RowBorderStride"/>, <see cref="ColBorderStride"/>): fewer, wider masks at the border, the same cover.
/// </summary>
public sealed class MaskSet
{
    private MaskPair[]? _pairs;

    private MaskSet(int patchSize, int gridRows, int gridCols, int stride, int rowBorderStride, int colBorderStride, int patchRows, int patchCols,
        (int Start, int Length)[] rows, (int Start, int Length)[] cols, int windowRows, int windowCols)
    {
        PatchSize = patchSize;
        GridRows = gridRows;
        GridCols = gridCols;
        Stride = stride;
        RowBorderStride = rowBorderStride;
        ColBorderStride = colBorderStride;
        PatchTokensRows = patchRows;
        PatchTokensCols = patchCols;
        WindowRows = windowRows;
        WindowCols = windowCols;
        RowStarts = rows.Select(r => r.Start).ToArray();
        ColStarts = cols.Select(c => c.Start).ToArray();
        RowLengths = rows.Select(r => r.Length).ToArray();
        ColLengths = cols.Select(c => c.Length).ToArray();
        Masks = rows.SelectMany(r => cols.Select(c => Window(r, c))).ToArray();
    }

    /// <summary>Side in pixels of the patches the set is built for.</summary>
    public int PatchSize { get; }

    public int GridRows { get; }

    public int GridCols { get; }

    /// <summary>Stride between masks, in tokens.</summary>
    public int Stride { get; }

    /// <summary>
    /// Stride of the top and bottom row windows: each covers this many of the patch's possible token runs, so it is
    /// <c>patch tokens + border stride − 1</c> tokens tall. Equal to <see cref="Stride"/> in PatchCleanser's uniform set.
    /// </summary>
    public int RowBorderStride { get; }

    /// <summary>Stride of the leftmost and rightmost column windows (as <see cref="RowBorderStride"/>, for columns).</summary>
    public int ColBorderStride { get; }

    /// <summary>Most consecutive token rows a patch can reach.</summary>
    public int PatchTokensRows { get; }

    /// <summary>Most consecutive token columns a patch can reach.</summary>
    public int PatchTokensCols { get; }

    /// <summary>Mask height in tokens (away from the border; see <see cref="RowLengths"/>).</summary>
    public int WindowRows { get; }

    /// <summary>Mask width in tokens (away from the border; see <see cref="ColLengths"/>).</summary>
    public int WindowCols { get; }

    /// <summary>First token row of each row window.</summary>
    public IReadOnlyList<int> RowStarts { get; }

    /// <summary>First token column of each column window.</summary>
    public IReadOnlyList<int> ColStarts { get; }

    /// <summary>Height in tokens of each row window.</summary>
    public IReadOnlyList<int> RowLengths { get; }

    /// <summary>Width in tokens of each column window.</summary>
    public IReadOnlyList<int> ColLengths { get; }

    /// <summary>Height of the tallest mask, in tokens.</summary>
    public int LargestRows => RowLengths.Max();

    /// <summary>Width of the widest mask, in tokens.</summary>
    public int LargestCols => ColLengths.Max();

    /// <summary>Each mask as the sorted patch-grid indices (row·cols + col) it hides.</summary>
    public IReadOnlyList<int[]> Masks { get; }

    public int Count => Masks.Count;

    /// <summary>The patch-grid cells a view hides: one mask (<c>First == Second</c>) or the union of two.</summary>
    public IReadOnlyCollection<int> Hidden(MaskPair view) =>
        view.First == view.Second ? Masks[view.First] : Masks[view.First].Union(Masks[view.Second]).ToArray();

    /// <summary>
    /// Every pair i &lt; j, those hiding the most tokens together (least overlap) first: the views likeliest to
    /// disagree, so the certificate check of an uncertified image stops early.
    /// </summary>
    public IReadOnlyList<MaskPair> PairsByHiddenTokens => _pairs ??= PatchCleanser.AllPairs(Count)
        .OrderByDescending(p => Hidden(p).Count)
        .ThenBy(p => p.First).ThenBy(p => p.Second)
        .ToArray();

    /// <summary>The mask set for <paramref name="patchSize"/>-pixel patches on an image of <paramref name="height"/> x <paramref name="width"/>.</summary>
    /// <param name="field">The tokens' receptive field.</param>
    /// <param name="height">Image height in pixels.</param>
    /// <param name="width">Image width in pixels.</param>
    /// <param name="gridRows">Token rows.</param>
    /// <param name="gridCols">Token columns.</param>
    /// <param name="patchSize">Side of the patch in pixels.</param>
    /// <param name="stride">Stride between masks in tokens.</param>
    /// <param name="rowBorderStride">
    /// Stride of the top and bottom row windows (0, or anything up to <paramref name="stride"/>: <paramref name="stride"/>, PatchCleanser's uniform set). A larger
    /// one merges the patch placements nearest the border into taller masks: fewer masks where hiding more costs least
    /// (an object sits mostly away from the border), fine ones in the middle.
    /// </param>
    /// <param name="colBorderStride">The same for the leftmost and rightmost column windows.</param>
    /// <exception cref="ArgumentOutOfRangeException">The patch does not fit the image, or a stride is out of range.</exception>
    /// <exception cref="CertificationException">A mask would be larger than the token grid.</exception>
    public static MaskSet Create(ReceptiveField field, int height, int width, int gridRows, int gridCols, int patchSize, int stride, int rowBorderStride = 0, int colBorderStride = 0)
    {
        ArgumentNullException.ThrowIfNull(field);
        if (patchSize < 1 || patchSize > Math.Min(height, width))
        {
            throw new ArgumentOutOfRangeException(nameof(patchSize), patchSize, $"A patch must be 1 to {Math.Min(height, width)} pixels.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(stride, 1);
        rowBorderStride = BorderStrideOrStride(rowBorderStride, stride, nameof(rowBorderStride));
        colBorderStride = BorderStrideOrStride(colBorderStride, stride, nameof(colBorderStride));

        var patchRows = MostTokensTouched(field.Rows, height, gridRows, patchSize);
        var patchCols = MostTokensTouched(field.Cols, width, gridCols, patchSize);
        var windowRows = patchRows + stride - 1;
        var windowCols = patchCols + stride - 1;
        if (windowRows > gridRows || windowCols > gridCols)
        {
            throw new CertificationException(
                $"A {patchSize}x{patchSize}-pixel patch reaches up to {patchRows}x{patchCols} tokens; with stride {stride} a mask would be {windowRows}x{windowCols} tokens, more than the {gridRows}x{gridCols} grid.");
        }

        if (patchRows + rowBorderStride - 1 > gridRows || patchCols + colBorderStride - 1 > gridCols)
        {
            throw new CertificationException(
                $"A {patchSize}x{patchSize}-pixel patch reaches up to {patchRows}x{patchCols} tokens; with border strides {rowBorderStride} (rows) and {colBorderStride} (columns) a border mask would be {patchRows + rowBorderStride - 1}x{patchCols + colBorderStride - 1} tokens, more than the {gridRows}x{gridCols} grid.");
        }

        return new MaskSet(patchSize, gridRows, gridCols, stride, rowBorderStride, colBorderStride, patchRows, patchCols,
            Windows(gridRows, patchRows, stride, rowBorderStride), Windows(gridCols, patchCols, stride, colBorderStride), windowRows, windowCols);
    }

    /// <summary>A border stride below the stride (0 included) is the stride: border masks are never finer than the rest.</summary>
    internal static int EffectiveBorderStride(int border, int stride) => Math.Max(border, stride);

    private static int BorderStrideOrStride(int border, int stride, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(border, name);
        return EffectiveBorderStride(border, stride);
    }

    /// <summary>
    /// One axis's windows (first token, length), so that every run of <paramref name="reach"/> consecutive tokens among
    /// <paramref name="n"/> lies inside one: the first and last cover <paramref name="borderStride"/> runs each, the
    /// runs between them get windows of <c>reach + stride − 1</c> every <paramref name="stride"/> tokens (the last flush
    /// with the end; one shorter window when fewer runs are left than a stride). With equal strides this is
    /// PatchCleanser's k = ceil((n − m) / s) + 1 windows.
    /// </summary>
    internal static (int Start, int Length)[] Windows(int n, int reach, int stride, int borderStride)
    {
        var runs = n - reach + 1;
        if (borderStride == stride)
        {
            var window = reach + stride - 1;
            return Starts(n, window, stride).Select(s => (s, window)).ToArray();
        }

        var border = reach + borderStride - 1;
        if (runs <= borderStride) return [(0, n)];
        if (runs <= 2 * borderStride) return [(0, border), (n - border, border)];
        var windows = new List<(int, int)> { (0, border) };
        // Runs borderStride .. runs - borderStride - 1 are left: tokens [borderStride, n - borderStride).
        var inner = n - (2 * borderStride);
        var width = reach + stride - 1;
        if (inner <= width)
        {
            windows.Add((borderStride, inner));
        }
        else
        {
            windows.AddRange(Starts(inner, width, stride).Select(s => (s + borderStride, width)));
        }

        windows.Add((n - border, border));
        return windows.ToArray();
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

    private int[] Window((int Start, int Length) row, (int Start, int Length) col)
    {
        var cells = new int[row.Length * col.Length];
        var i = 0;
        for (var r = row.Start; r < row.Start + row.Length; r++)
        {
            for (var c = col.Start; c < col.Start + col.Length; c++)
            {
                cells[i++] = (r * GridCols) + c;
            }
        }

        return cells;
    }
}

/// <summary>Certification cannot run as asked (mask larger than the grid, too many forwards, no usable masking).</summary>
public sealed class CertificationException(string message) : Exception(message);
