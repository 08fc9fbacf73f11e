namespace StrapVit.Core.Defense;

/// <summary>
/// The masking check behind <see cref="DefenseOptions.VerifyWindows"/>: PatchCleanser's double-masking rule (Xiang et
/// al., USENIX Security 2022) run on the detector's few strongest candidate windows instead of on every placement.
/// After neutralisation the image is classified once per candidate window with that window hidden (first round). If
/// every one-mask answer agrees with the defended answer, that answer stands. Otherwise a disagreeing window is
/// trusted only when hiding it together with each other candidate still gives its answer (second round): a patch
/// inside the window cannot vote in any of those views, while a clean image whose answer one occlusion happened to
/// flip rarely keeps the flipped answer under a second occlusion. The first window (strongest evidence first) that
/// passes gives the answer; if none does, the defended answer stands. With <see cref="DefenseOptions.VerifyMargin"/>
/// a second-round view counts as giving an answer only when it leads the runner-up by that margin; under
/// <see cref="VerifyRule.Veto"/> a view stops the window only when the defended answer comes within that margin of the
/// view's top logit.
/// </summary>
public static class WindowVerification
{
    /// <summary>
    /// The <paramref name="count"/> strongest <paramref name="windowRows"/> x <paramref name="windowCols"/> windows on a
    /// <paramref name="rows"/> x <paramref name="cols"/> grid by their sum of <paramref name="ratios"/> (score over
    /// threshold, row-major), strongest first; a window sharing more than half its cells with a stronger one is skipped,
    /// so the candidates are different places rather than one place shifted by a token. Each window is its grid cells.
    /// </summary>
    public static int[][] Candidates(ReadOnlySpan<double> ratios, int rows, int cols, int windowRows, int windowCols, int count)
    {
        if (ratios.Length != rows * cols) throw new ArgumentException($"Expected {rows * cols} ratios, got {ratios.Length}.", nameof(ratios));
        int h = Math.Clamp(windowRows, 1, rows), w = Math.Clamp(windowCols, 1, cols);
        var placements = new List<(double Sum, int Row, int Col)>();
        for (var r = 0; r + h <= rows; r++)
        {
            for (var c = 0; c + w <= cols; c++)
            {
                double sum = 0;
                for (var dr = 0; dr < h; dr++)
                {
                    for (var dc = 0; dc < w; dc++) sum += ratios[((r + dr) * cols) + c + dc];
                }

                placements.Add((sum, r, c));
            }
        }

        var chosen = new List<(int Row, int Col)>();
        foreach (var (_, row, col) in placements.OrderByDescending(p => p.Sum).ThenBy(p => p.Row).ThenBy(p => p.Col))
        {
            if (chosen.Count == count) break;
            if (chosen.Any(o => Overlap(o.Row, o.Col, row, col, h, w) * 2 > h * w)) continue;
            chosen.Add((row, col));
        }

        return chosen.Select(p => Cells(p.Row, p.Col, h, w, cols)).ToArray();
    }

    /// <summary>The first-round windows whose answer differs from <paramref name="defended"/>, in candidate order.</summary>
    public static int[] Disagreeing(int defended, IReadOnlyList<int> firstRound) =>
        Enumerable.Range(0, firstRound.Count).Where(m => firstRound[m] != defended).ToArray();

    /// <summary>
    /// The decision: the index of the first-round window whose answer is trusted, or -1 to keep <paramref name="defended"/>.
    /// Partner windows are numbered so that the first <c>firstRound.Count</c> are the first-round windows themselves;
    /// <paramref name="secondRound"/>(m, j) is the answer with window m and partner j both hidden, asked only for
    /// disagreeing m and every partner j != m.
    /// </summary>
    public static int Decide(int defended, IReadOnlyList<int> firstRound, int partners, Func<int, int, int> secondRound)
    {
        ArgumentNullException.ThrowIfNull(firstRound);
        ArgumentNullException.ThrowIfNull(secondRound);
        foreach (var m in Disagreeing(defended, firstRound))
        {
            var label = firstRound[m];
            var holds = true;
            for (var j = 0; j < partners && holds; j++)
            {
                if (j != m && secondRound(m, j) != label) holds = false;
            }

            if (holds) return m;
        }

        return -1;
    }

    /// <summary>Whether some cell of <paramref name="window"/> is one of <paramref name="cells"/> or 8-adjacent to one (its <see cref="TokenSelection.Ring"/>), on a <paramref name="rows"/> x <paramref name="cols"/> grid (row-major indices).</summary>
    public static bool Touches(IReadOnlyCollection<int> window, IEnumerable<int> cells, int rows, int cols) =>
        window.Concat(TokenSelection.Ring(window, rows, cols)).Intersect(cells).Any();

    private static int Overlap(int r1, int c1, int r2, int c2, int h, int w) =>
        Math.Max(0, Math.Min(r1, r2) + h - Math.Max(r1, r2)) * Math.Max(0, Math.Min(c1, c2) + w - Math.Max(c1, c2));

    /// <summary>Patch-grid indices (row-major) of the <paramref name="h"/> x <paramref name="w"/> window at (<paramref name="row"/>, <paramref name="col"/>) on a grid of <paramref name="cols"/> columns.</summary>
    internal static int[] Cells(int row, int col, int h, int w, int cols)
    {
        var cells = new int[h * w];
        var i = 0;
        for (var r = row; r < row + h; r++)
        {
            for (var c = col; c < col + w; c++) cells[i++] = (r * cols) + c;
        }

        return cells;
    }
}

/// <summary>What the masking check did for one image (the <c>verification</c> object of a defended classification).</summary>
/// <param name="Windows">Windows of the first round, hidden one at a time or a group at a time (group).</param>
/// <param name="Partners">Windows a disagreeing one is hidden together with (second round), the first-round ones included.</param>
/// <param name="WindowRows">Window height in tokens.</param>
/// <param name="WindowCols">Window width in tokens.</param>
/// <param name="Forwards">Masked encoder runs for this image: one per group, one per window of a group whose view changed the answer, and the second round's, which stops a window at its first partner view that answers otherwise.</param>
/// <param name="Outcome"><c>agreed</c> (every one-mask answer matched), <c>recovered</c> (a window's answer passed the second round and replaced the defended one), <c>kept</c> (disagreement, no window passed) or <c>completed</c> (no window passed, and with <see cref="DefenseOptions.VerifyComplete"/> the first disagreeing window next to a token over threshold gave its answer by the margin on its own).</param>
/// <param name="Window">Patch-grid indices (row-major) of the window whose answer was taken, or null.</param>
public sealed record VerificationReport(int Windows, int Partners, int WindowRows, int WindowCols, int Forwards, string Outcome, IReadOnlyList<int>? Window)
{
    /// <summary>First-round windows hidden together in one view (Defense:VerifyGroup); a group whose view changed the answer was asked again window by window.</summary>
    public int Group { get; init; } = 1;

    /// <summary>Logit margin by which every second-round view had to give a window's answer for it to pass (Defense:VerifyMargin, or the calibration's for its clean replacement rate; 0: PatchCleanser's rule). Under the veto rule: how close to a view's top logit the defended answer's may come before that view stops the window.</summary>
    public double Margin { get; init; }

    /// <summary>The second round's rule (Defense:VerifyRule): "unanimous" (every pair view gives the window's answer by the margin) or "veto" (no pair view gives the defended answer within it).</summary>
    public string Rule { get; init; } = "unanimous";

    /// <summary>
    /// The first-round windows (patch-grid indices, row-major) in candidate order, what each one's view answered, and
    /// whether it was hidden alone (a window of a group whose view kept the defended answer answers that, from the group's
    /// view). For the evaluation's losses; not serialised.
    /// </summary>
    internal IReadOnlyList<(int[] Cells, int Answer, bool Alone)>? FirstRound { get; init; }
}
