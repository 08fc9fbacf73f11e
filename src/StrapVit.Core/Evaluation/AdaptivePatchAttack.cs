using StrapVit.Core.Attacks;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Evaluation;

/// <summary>Knobs of <see cref="AdaptivePatchAttack"/>.</summary>
/// <param name="PatchSize">Side of the square patch in pixels.</param>
/// <param name="Steps">Signed-gradient steps per restart (no early stop on the loss).</param>
/// <param name="Restarts">Fresh random placements and patch initialisations; an image counts as broken if any restart breaks it.</param>
/// <param name="EotSamples">Draws of the defense's randomness averaged per step (1 suffices when the defense is deterministic).</param>
/// <param name="EvasionWeight">λ: weight of the detector-evasion term against the margin loss.</param>
/// <param name="EvasionMargin">γ: the evasion term pushes every token's score-to-threshold ratio below this.</param>
/// <param name="StraightThrough">Pass the gradient through neutralised tokens as if they had not been touched (else: exact, zero for replaced tokens).</param>
/// <param name="CheckEvery">Steps between checks of the current 8-bit image against the real defense (fresh seeds).</param>
/// <param name="OcclusionViews">
/// Also aim at the masking check: add the margin of every view with one check-sized window that overlaps the patch
/// hidden, so that hiding any part of the patch a check window can hide still leaves the same wrong answer. A
/// straight-through approximation like the rest of the attack: the views hide the window only, where the real check
/// also hides the flagged tokens. Needs an encoder that takes a shorter sequence.
/// </param>
/// <param name="OcclusionGroup">
/// Windows hidden together in each occlusion view, for a check whose first round hides its windows in groups
/// (<see cref="DefenseOptions.VerifyGroup"/>): each view hides one window over the patch and, with it, the strongest
/// windows of the current step's detector ranking that share no token with it or with each other, as the check's
/// group would. Hiding more clean tokens leaves the rest of the patch more say, so an attacker aims at these views too.
/// </param>
/// <param name="LocationStride">
/// Location optimisation (Rao et al. 2020, "Adversarial Training against Location-Optimized Adversarial Patches"): at
/// every check the patch, as it is, is also tried this many pixels up, down, left and right, and moves to the placement
/// the real defense answers worst (the largest margin of a wrong class over the true one) when that is worse than where
/// it is. A candidate placement the defense already answers wrongly breaks the image there. 0 keeps each restart's
/// random placement.
/// </param>
public sealed record AdaptiveAttackSettings(
    int PatchSize, int Steps = 500, int Restarts = 2, int EotSamples = 16, double EvasionWeight = 1.0, double EvasionMargin = 0.9,
    bool StraightThrough = true, int CheckEvery = 10, bool OcclusionViews = false, int OcclusionGroup = 1, int LocationStride = 0);

/// <summary>
/// The strongest per-image patch attack we can build against the token defense: it knows the detector and the
/// neutralisation. Per step it maximises the Carlini-Wagner margin <c>max_{j≠y} z_j − z_y</c> of the defended logits
/// (averaged over <see cref="AdaptiveAttackSettings.EotSamples"/> draws of the defense's randomness: expectation over
/// transformation, Athalye et al. 2018) and subtracts λ·Σ_t relu(s_t/τ_t − γ), a differentiable detector-evasion
/// term that pushes every token's score below the flagging threshold (scores are distances to fixed nearest clean
/// bank entries, or the JSD; the discrete selection is passed straight through, so a neutralised patch token still
/// receives the gradient it would have if it evaded). Signed steps of 4/255, then 2/255, then 1/255 keep the patch on
/// the 8-bit grid. Every <see cref="AdaptiveAttackSettings.CheckEvery"/> steps the 8-bit image is classified by the
/// real defense with fresh seeds; an image that is misclassified there is broken and kept as it is.
/// </summary>
public sealed class AdaptivePatchAttack(
    TokenSpaceModel model, TokenReference reference, DefenseOptions options, TokenGradients gradients, TokenPatchDefense defense)
{
    private const int Chunk = 100;

    /// <summary>Attacks every image of <paramref name="set"/>; returns the adversarial images and the share broken against the defense.</summary>
    public PatchedSet Run(EvaluationSet set, AdaptiveAttackSettings settings, int seed, CancellationToken ct = default)
    {
        var pixels = (float[])set.Pixels.Clone();
        var placements = new PatchPlacement[set.Count];
        var broken = new bool[set.Count];
        for (var start = 0; start < set.Count; start += Chunk)
        {
            var n = Math.Min(Chunk, set.Count - start);
            var indices = Enumerable.Range(start, n).ToArray();
            for (var r = 0; r < settings.Restarts; r++)
            {
                var open = indices.Where(i => !broken[i]).ToArray();
                if (open.Length == 0) break;
                RunRestart(set, open, settings, seed + (1000 * r) + start, pixels, placements, broken, ct);
            }
        }

        return new PatchedSet(settings.PatchSize, set.WithPixels(pixels), placements, broken.Count(b => b) / (double)set.Count);
    }

    private void RunRestart(
        EvaluationSet set, int[] images, AdaptiveAttackSettings settings, int seed, float[] output, PatchPlacement[] placements, bool[] broken,
        CancellationToken ct)
    {
        int c = model.Manifest.Input.Channels, h = model.Manifest.Input.Height, w = model.Manifest.Input.Width, size = set.SampleSize;
        int t = model.TokenCount, d = model.Dim, first = model.FirstPatchToken, classes = model.Manifest.Labels.Count, p = settings.PatchSize;
        var random = new Random(seed);
        var n = images.Length;
        var x = new float[n * size];
        var places = new PatchPlacement[n];
        for (var a = 0; a < n; a++)
        {
            set.Image(images[a]).CopyTo(x.AsSpan(a * size, size));
            places[a] = new PatchPlacement(random.Next(0, w - p + 1), random.Next(0, h - p + 1), p);
            foreach (var i in PatchAttack.MaskIndices(places[a], c, h, w))
            {
                x[(a * size) + i] = random.Next(256) / 255f;
            }
        }

        var labels = images.Select(i => set.Labels[i]).ToArray();
        var active = Enumerable.Range(0, n).ToList();
        var deterministic = options.Neutralization is Neutralization.Mean or Neutralization.Drop
            || (options.Neutralization is Neutralization.Bank or Neutralization.Hybrid or Neutralization.HybridDrop && options.BankChoices == 1);
        var draws = deterministic ? 1 : settings.EotSamples;
        var thresholds = reference.ThresholdsFor(options.Score);
        var grid = new TokenGrid(d, first, model.GridRows, model.GridCols, model.Manifest.PatchSize);
        var candidates = Enumerable.Range(first, t - first).ToArray();
        if (settings.OcclusionViews && !model.AcceptsShorterSequences)
        {
            throw new InvalidOperationException("Occlusion views need an encoder that takes a shorter sequence; this model's does not.");
        }

        // Single-window views are fixed for the restart unless the patch moves (Check renews them); grouped ones follow the detector.
        var occlusionViews = settings.OcclusionViews && settings.OcclusionGroup <= 1 ? places.Select(p => ViewsOver(p, [], 1)).ToArray() : null;
        for (var step = 0; step < settings.Steps && active.Count > 0; step++)
        {
            ct.ThrowIfCancellationRequested();
            var m = active.Count;
            var batch = new float[m * size];
            for (var a = 0; a < m; a++) x.AsSpan(active[a] * size, size).CopyTo(batch.AsSpan(a * size, size));
            var clean = model.Embed(batch, m, ct);
            var tokenGrad = new float[clean.Length];

            // Detection does not depend on the draw: score and flag once, then neutralise once per draw, and run all
            // draws of all images through the encoder as one batch.
            var detections = new Detection[m];
            var allScores = new double[m][];
            for (var a = 0; a < m; a++)
            {
                allScores[a] = new double[t];
                detections[a] = TokenPatchDefense.Detect(clean.AsSpan(a * t * d, t * d), grid, reference, options, candidates, allScores[a]);
            }

            var rows = m * draws;
            var defended = new float[rows * t * d];
            var plans = new MitigationStep[rows][][];
            for (var e = 0; e < draws; e++)
            {
                for (var a = 0; a < m; a++)
                {
                    var r = (e * m) + a;
                    clean.AsSpan(a * t * d, t * d).CopyTo(defended.AsSpan(r * t * d, t * d));
                    plans[r] = TokenPatchDefense.Neutralize(defended.AsSpan(r * t * d, t * d), grid, reference, options, detections[a], new Random(random.Next()));
                }
            }

            var dropped = Enumerable.Range(0, rows).Select(r => TokenPatchDefense.DroppedOf(detections[r % m].Flagged, plans[r])).ToArray();
            var logits = dropped.Any(x => x.Count > 0) ? model.EncodeDropping(defended, rows, dropped, ct) : model.Encode(defended, rows, ct);
            var cotangent = new float[rows * classes];
            var targets = new int[m];
            for (var r = 0; r < rows; r++)
            {
                var y = labels[active[r % m]];
                var other = Numerics.Probabilities.ArgMaxExcept(logits.AsSpan(r * classes, classes), y);

                cotangent[(r * classes) + other] = 1;
                cotangent[(r * classes) + y] = -1;
                if (r < m) targets[r] = other;
            }

            var g = gradients.Encoder.Vjp(defended, cotangent, rows, ct).PixelGrad;
            for (var r = 0; r < rows; r++)
            {
                var a = r % m;
                var flagged = detections[a].Flagged;
                for (var j = 0; j < flagged.Length; j++)
                {
                    var offset = ((r * t) + flagged[j]) * d;
                    var replaced = plans[r][j].Any(s => s.Op is TokenMitigation.ReplaceMean or TokenMitigation.ReplaceBank or TokenMitigation.Drop);
                    if (replaced && settings.StraightThrough) continue;
                    TokenMitigation.Backward(clean.AsSpan(((a * t) + flagged[j]) * d, d), reference.Center[flagged[j]], reference.Norm[flagged[j]], plans[r][j], g.AsSpan(offset, d));
                }

                var target = tokenGrad.AsSpan(a * t * d, t * d);
                var source = g.AsSpan(r * t * d, t * d);
                for (var i = 0; i < target.Length; i++) target[i] += source[i] / draws;
            }

            if (settings.OcclusionViews)
            {
                var views = occlusionViews ?? GroupedKept(places, active, allScores, candidates, settings.OcclusionGroup);
                AddOcclusionViews(clean, active, views, labels, targets, tokenGrad, ct);
            }

            if (settings.EvasionWeight > 0)
            {
                AddEvasion(clean, m, tokenGrad, thresholds, settings, detections, allScores);
            }

            var pixelGrad = gradients.Embedding.Vjp(batch, tokenGrad, m, ct).PixelGrad;
            var stepSize = (step < settings.Steps * 0.4 ? 4 : step < settings.Steps * 0.7 ? 2 : 1) / 255f;
            for (var a = 0; a < m; a++)
            {
                var s = active[a];
                foreach (var i in PatchAttack.MaskIndices(places[s], c, h, w))
                {
                    var gi = pixelGrad[(a * size) + i];
                    x[(s * size) + i] = Math.Clamp(x[(s * size) + i] + (stepSize * MathF.Sign(gi)), 0f, 1f);
                }
            }

            if ((step + 1) % settings.CheckEvery == 0 || step == settings.Steps - 1)
            {
                active = Check(set, x, active, images, labels, settings.LocationStride, seed + step, output, placements, places, broken, occlusionViews);
            }
        }

        // Images never broken keep their last patched version.
        foreach (var a in active)
        {
            Attack.Quantize(x.AsSpan(a * size, size)).CopyTo(output.AsSpan(images[a] * size, size));
            placements[images[a]] = places[a];
        }
    }

    /// <summary>
    /// Classifies the current 8-bit images with the real defense (fresh seeds): broken ones are stored and leave the
    /// active list. With location optimisation (<paramref name="stride"/> &gt; 0, <see cref="AdaptiveAttackSettings.LocationStride"/>)
    /// each image is also classified with its patch moved by <paramref name="stride"/> pixels in each of the four
    /// directions (inside the image). The placement with the largest margin z_wrong − z_true counts: an image it breaks
    /// is stored broken there; otherwise the patch moves there if that beats its current placement. Single-window
    /// occlusion views follow the move.
    /// </summary>
    private List<int> Check(EvaluationSet set, float[] x, List<int> active, int[] images, int[] labels, int stride, int seed,
        float[] output, PatchPlacement[] placements, PatchPlacement[] places, bool[] broken, int[][][]? occlusionViews)
    {
        int c = model.Manifest.Input.Channels, h = model.Manifest.Input.Height, w = model.Manifest.Input.Width, size = set.SampleSize;
        var candidates = active.Select(s => Moves(places[s], stride, w, h)).ToArray();
        var rows = candidates.Sum(m => m.Count);
        var batch = new float[rows * size];
        var row = 0;
        for (var a = 0; a < active.Count; a++)
        {
            var s = active[a];
            var current = Attack.Quantize(x.AsSpan(s * size, size));
            foreach (var to in candidates[a])
            {
                var target = batch.AsSpan(row++ * size, size);
                current.CopyTo(target);
                MovePatch(target, set.Image(images[s]), places[s], to, c, h, w);
            }
        }

        var results = defense.Run(batch, rows, DefenseMode.Mitigate, Enumerable.Range(0, rows).Select(r => unchecked((seed * 7919) + r)).ToArray());
        var still = new List<int>(active.Count);
        row = 0;
        for (var a = 0; a < active.Count; a++)
        {
            var s = active[a];
            var best = 0;
            var margins = new double[candidates[a].Count];
            for (var k = 0; k < margins.Length; k++)
            {
                var logits = results[row + k].Logits;
                margins[k] = (double)logits[Numerics.Probabilities.ArgMaxExcept(logits, labels[s])] - logits[labels[s]];
                if (margins[k] > margins[best]) best = k;
            }

            if (Numerics.Probabilities.ArgMax(results[row + best].Logits) != labels[s])
            {
                broken[images[s]] = true;
                places[s] = candidates[a][best];
                batch.AsSpan((row + best) * size, size).CopyTo(output.AsSpan(images[s] * size, size));
                placements[images[s]] = places[s];
            }
            else
            {
                if (best != 0)
                {
                    MovePatch(x.AsSpan(s * size, size), set.Image(images[s]), places[s], candidates[a][best], c, h, w);
                    places[s] = candidates[a][best];
                    if (occlusionViews is not null) occlusionViews[s] = ViewsOver(places[s], [], 1);
                }

                still.Add(s);
            }

            row += margins.Length;
        }

        return still;
    }

    /// <summary>
    /// <paramref name="start"/> first, then <paramref name="start"/> moved <paramref name="stride"/> pixels up, down, left
    /// and right, each clamped inside a <paramref name="width"/> x <paramref name="height"/> image; placements that clamp
    /// back onto one already listed are left out.
    /// </summary>
    internal static List<PatchPlacement> Moves(PatchPlacement start, int stride, int width, int height)
    {
        var moves = new List<PatchPlacement> { start };
        foreach (var (dx, dy) in new[] { (0, -stride), (0, stride), (-stride, 0), (stride, 0) })
        {
            var to = start with
            {
                X = Math.Clamp(start.X + dx, 0, width - start.Size),
                Y = Math.Clamp(start.Y + dy, 0, height - start.Size),
            };
            if (!moves.Contains(to)) moves.Add(to);
        }

        return moves;
    }

    /// <summary>
    /// Moves the patch of <paramref name="image"/> (channels x height x width) from <paramref name="start"/> to
    /// <paramref name="to"/>: the uncovered pixels get <paramref name="original"/>'s values back, and the patch's pixels
    /// keep their place relative to its corner.
    /// </summary>
    internal static void MovePatch(Span<float> image, ReadOnlySpan<float> original, PatchPlacement start, PatchPlacement to, int channels, int height, int width)
    {
        if (start == to) return;
        var p = start.Size;
        var patch = new float[channels * p * p];
        for (var ch = 0; ch < channels; ch++)
        {
            for (var y = 0; y < p; y++)
            {
                var at = (ch * height * width) + ((start.Y + y) * width) + start.X;
                image.Slice(at, p).CopyTo(patch.AsSpan(((ch * p) + y) * p, p));
                original.Slice(at, p).CopyTo(image.Slice(at, p));
            }
        }

        for (var ch = 0; ch < channels; ch++)
        {
            for (var y = 0; y < p; y++)
            {
                patch.AsSpan(((ch * p) + y) * p, p).CopyTo(image.Slice((ch * height * width) + ((to.Y + y) * width) + to.X, p));
            }
        }
    }

    /// <summary>
    /// Adds, for each active image, the mean over its occlusion views of ∂(z_target − z_y)/∂tokens: one view per
    /// check-sized window (<see cref="TokenPatchDefense.VerifySide"/>) that overlaps the patch's tokens
    /// (<see cref="OcclusionWindows"/>), that window dropped from the sequence; the target is the first draw's
    /// strongest wrong class of the defended view, so that every view is pushed to the same wrong answer (a check
    /// whose views all agree keeps it). <paramref name="keptViews"/>[s] are the views of the restart's image s (<see cref="ViewsOver"/>).
    /// </summary>
    private void AddOcclusionViews(float[] clean, List<int> active, int[][][] keptViews, int[] labels, int[] targets, float[] tokenGrad, CancellationToken ct)
    {
        int t = model.TokenCount, d = model.Dim, classes = model.Manifest.Labels.Count;
        var views = new List<(int Image, int[] Kept)>();
        var perImage = new int[active.Count];
        for (var a = 0; a < active.Count; a++)
        {
            foreach (var kept in keptViews[active[a]]) views.Add((a, kept));
            perImage[a] = keptViews[active[a]].Length;
        }

        if (views.Count == 0) return;
        const int ViewChunk = 256;
        foreach (var sameLength in views.GroupBy(v => v.Kept.Length))
        {
            var length = sameLength.Key;
            var runner = gradients.EncoderFor(length);
            foreach (var chunk in sameLength.Chunk(ViewChunk))
            {
                var n = chunk.Length;
                var input = new float[n * length * d];
                var cotangent = new float[n * classes];
                for (var v = 0; v < n; v++)
                {
                    var (a, kept) = chunk[v];
                    for (var j = 0; j < length; j++) Array.Copy(clean, ((a * t) + kept[j]) * d, input, ((v * length) + j) * d, d);
                    cotangent[(v * classes) + targets[a]] = 1;
                    cotangent[(v * classes) + labels[active[a]]] = -1;
                }

                var g = runner.Vjp(input, cotangent, n, ct).PixelGrad;
                for (var v = 0; v < n; v++)
                {
                    var (a, kept) = chunk[v];
                    var weight = 1f / perImage[a];
                    for (var j = 0; j < length; j++)
                    {
                        var into = tokenGrad.AsSpan(((a * t) + kept[j]) * d, d);
                        var from = g.AsSpan(((v * length) + j) * d, d);
                        for (var k = 0; k < d; k++) into[k] += weight * from[k];
                    }
                }
            }
        }
    }

    /// <summary>
    /// The grouped occlusion views of this step (<see cref="AdaptiveAttackSettings.OcclusionGroup"/>), indexed by the
    /// restart's image like the single-window ones (entries for <paramref name="active"/> images only): for each
    /// check-sized window over the patch, the tokens kept when it is hidden together with the
    /// <paramref name="group"/> − 1 strongest windows of the image's current detector ranking
    /// (<see cref="WindowVerification.Candidates"/>) that share no token with it or with each other.
    /// </summary>
    private int[][][] GroupedKept(PatchPlacement[] patches, List<int> active, double[][] allScores, int[] candidates, int group)
    {
        int side = defense.VerifySide, rows = model.GridRows, cols = model.GridCols;
        var thresholds = reference.ThresholdsFor(options.Score);
        var kept = new int[patches.Length][][];
        for (var a = 0; a < active.Count; a++)
        {
            var ratios = TokenSelection.Ratios(allScores[a], thresholds, candidates, options.ThresholdScale);
            var ranking = WindowVerification.Candidates(ratios, rows, cols, side, side, rows * cols);
            kept[active[a]] = ViewsOver(patches[active[a]], ranking, group);
        }

        return kept;
    }

    /// <summary>
    /// The token indices each occlusion view of <paramref name="patch"/> keeps, in order: one view per check-sized
    /// window that overlaps the patch (<see cref="OcclusionWindows"/>), hidden with up to <paramref name="group"/> − 1
    /// windows of <paramref name="ranking"/> (<see cref="GroupedView"/>; none for single-window views).
    /// </summary>
    private int[][] ViewsOver(PatchPlacement patch, IReadOnlyList<int[]> ranking, int group)
    {
        int side = defense.VerifySide, cols = model.GridCols;
        return OcclusionWindows(patch, model.Manifest.PatchSize, model.GridRows, cols, side)
            .Select(w => GroupedView(WindowVerification.Cells(w.Row, w.Col, side, side, cols), ranking, group, model.TokenCount, model.FirstPatchToken))
            .ToArray();
    }

    /// <summary>
    /// The tokens (class token included, in order) an occlusion view keeps when it hides <paramref name="window"/> (patch-grid
    /// cells) and, with it, the first windows of <paramref name="ranking"/> that share no cell with it or with each other,
    /// up to <paramref name="group"/> windows in all.
    /// </summary>
    internal static int[] GroupedView(int[] window, IReadOnlyList<int[]> ranking, int group, int tokens, int first)
    {
        var hidden = window.ToHashSet();
        var added = 1;
        foreach (var other in ranking)
        {
            if (added >= group) break;
            if (other.Any(hidden.Contains)) continue;
            hidden.UnionWith(other);
            added++;
        }

        return Enumerable.Range(0, tokens).Where(k => k < first || !hidden.Contains(k - first)).ToArray();
    }

    /// <summary>
    /// Top-left cells (row, column) of every <paramref name="side"/> x <paramref name="side"/> window inside a
    /// <paramref name="gridRows"/> x <paramref name="gridCols"/> grid of <paramref name="tokenSize"/>-pixel tokens that
    /// shares a token with <paramref name="patch"/>, row-major.
    /// </summary>
    internal static List<(int Row, int Col)> OcclusionWindows(PatchPlacement patch, int tokenSize, int gridRows, int gridCols, int side)
    {
        int r0 = patch.Y / tokenSize, r1 = Math.Min(gridRows - 1, (patch.Y + patch.Size - 1) / tokenSize);
        int c0 = patch.X / tokenSize, c1 = Math.Min(gridCols - 1, (patch.X + patch.Size - 1) / tokenSize);
        var windows = new List<(int Row, int Col)>();
        for (var r = Math.Max(0, r0 - side + 1); r <= Math.Min(r1, gridRows - side); r++)
        {
            for (var c = Math.Max(0, c0 - side + 1); c <= Math.Min(c1, gridCols - side); c++) windows.Add((r, c));
        }

        return windows;
    }

    /// <summary>Adds −λ/τ_t · ∂s_t/∂z_t for every token whose ratio s_t/τ_t exceeds γ (gradient ascent on the objective).</summary>
    private void AddEvasion(float[] clean, int m, float[] tokenGrad, float[] thresholds, AdaptiveAttackSettings settings, Detection[] detections, double[][] allScores)
    {
        int t = model.TokenCount, d = model.Dim, first = model.FirstPatchToken;
        var gradient = new float[d];
        for (var a = 0; a < m; a++)
        {
            var image = clean.AsSpan(a * t * d, t * d);
            var nearest = detections[a].Nearest;
            var scores = allScores[a];
            for (var k = first; k < t; k++)
            {
                var threshold = Math.Max(thresholds[k] * options.ThresholdScale, 1e-12);
                if (scores[k] / threshold <= settings.EvasionMargin) continue;
                var z = image.Slice(k * d, d);
                if (nearest is not null)
                {
                    var kk = reference.Bank!.Neighbors;
                    reference.Bank.ScoreGradient(z, k, nearest.AsSpan(k * kk, kk), gradient);
                }
                else
                {
                    JsdGradient(reference, z, k, scores[k], gradient);
                }

                var scale = (float)(settings.EvasionWeight / threshold);
                for (var c = 0; c < d; c++) tokenGrad[(((a * t) + k) * d) + c] -= scale * gradient[c];
            }
        }
    }

    /// <summary>
    /// ∂ sqrt(JSD(softmax(z/T) ‖ q)) / ∂z. With m = (p+q)/2, ∂JSD/∂p_c = ½ ln(p_c/m_c); through the softmax,
    /// ∂/∂z_i = (p_i/T)(g_i − Σ_c p_c g_c); the square root divides by 2·s.
    /// </summary>
    internal static void JsdGradient(TokenReference reference, ReadOnlySpan<float> z, int position, double score, Span<float> gradient)
    {
        var d = z.Length;
        var p = new double[d];
        JensenShannon.Softmax(z, reference.Temperature, p);
        var q = reference.Distribution[position];
        double mean = 0;
        var g = new double[d];
        for (var c = 0; c < d; c++)
        {
            var mid = (p[c] + q[c]) / 2;
            g[c] = p[c] > 0 ? 0.5 * Math.Log(p[c] / mid) : 0;
            mean += p[c] * g[c];
        }

        var outer = score > 1e-12 ? 1 / (2 * score) : 0;
        for (var c = 0; c < d; c++)
        {
            gradient[c] = (float)(outer * p[c] / reference.Temperature * (g[c] - mean));
        }
    }
}
