using System.Diagnostics;
using StrapVit.Core.Diagnostics;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Defense;

/// <summary>The patch-token grid of a split model: token width, index of the first patch token, rows and columns.</summary>
internal readonly record struct TokenGrid(int Dim, int First, int Rows, int Cols, int TokenSize = 1);

/// <summary>What the detector found in one image: flagged tokens (most anomalous first), how many were over threshold, each token's nearest bank entries (<c>[T*k]</c>, bank score only) and the flagged tokens over threshold.</summary>
internal sealed record Detection(int[] Flagged, int Above, int[]? Nearest, HashSet<int> OverThreshold);

/// <summary>
/// STRAP-ViT in token space (Chattopadhyay et al., arXiv 2603.12688): embed the image, score each patch token by its
/// Jensen-Shannon distance to the clean reference at its position, flag "threshold, at least K", replace each
/// flagged token by a randomized composite transform of it, and run the encoder on the result. Benign tokens pass
/// unchanged; the class token is never scored or changed.
/// </summary>
public sealed class TokenPatchDefense(TokenSpaceModel model, TokenReference reference, DefenseOptions options) : IPatchDefense
{
    public string Variant => "token";

    public DefendedLogits[] Run(ReadOnlySpan<float> pixels, int batch, DefenseMode mode, IReadOnlyList<int> seeds, CancellationToken cancellationToken = default)
    {
        if (mode == DefenseMode.Off)
        {
            throw new ArgumentException("Run the plain classifier when the defense is off.", nameof(mode));
        }

        using var activity = CoreActivities.Defense(mode == DefenseMode.Detect ? "detect" : "mitigate", Variant, batch);
        var sw = Stopwatch.StartNew();
        int t = model.TokenCount, d = model.Dim, first = model.FirstPatchToken;
        if (reference.TokenCount != t || reference.Dim != d)
        {
            throw new InvalidOperationException($"The calibration is for {reference.TokenCount}x{reference.Dim} tokens, the model has {t}x{d}.");
        }

        var tokens = model.Embed(pixels, batch, cancellationToken);
        var candidates = Enumerable.Range(first, t - first).ToArray();
        var scores = new double[t];
        var thresholds = reference.ThresholdsFor(options.Score)[first..].Select(v => v * options.ThresholdScale).ToArray();
        var pending = new (FlaggedToken[] Flagged, int Above, AppliedTransform[] Applied, double[] Scores)[batch];
        var dropped = new IReadOnlyCollection<int>[batch];
        var check = mode == DefenseMode.Mitigate && options.VerifyWindows > 0;
        var ratios = new double[batch][];
        var over = new int[batch][];
        var grid = new TokenGrid(d, first, model.GridRows, model.GridCols, model.Manifest.PatchSize);
        for (var i = 0; i < batch; i++)
        {
            var image = tokens.AsSpan(i * t * d, t * d);
            var (flagged, above, steps) = FlagAndTransform(image, grid, reference, options, candidates, scores,
                mode == DefenseMode.Mitigate ? new Random(seeds[i]) : null);
            dropped[i] = DroppedOf(flagged, steps);
            var applied = flagged.Take(steps.Length)
                .Select((k, j) => new AppliedTransform(k - first, steps[j].Select(step => step.Op).ToArray())).ToArray();
            pending[i] = (flagged.Select(k => Flag(k, scores[k])).ToArray(), above, applied, scores[first..].ToArray());
            if (check)
            {
                ratios[i] = TokenSelection.Ratios(scores, reference.ThresholdsFor(options.Score), candidates, options.ThresholdScale);
                over[i] = flagged[..above];   // most anomalous first: the tokens over threshold lead
            }
        }

        // The check's first round depends on the token ratios alone, so it is planned before any encoder run.
        var plan = check ? PlanFirstRound(batch, dropped, ratios) : null;
        float[] logits, groupLogits = [];
        if (plan is not null && model.MasksKeys && model.AcceptsShorterSequences)
        {
            // With a key mask, sequences of every length share a run: the defended views and the check's first round go
            // in one (on CUDA a run costs about the same for one view or a few, docs/BENCHMARKS.md session 22).
            var all = EncodeHiding(tokens, [.. dropped.Select((h, i) => (i, h.ToArray())), .. plan.Views], cancellationToken);
            var split = batch * model.Manifest.Labels.Count;
            (logits, groupLogits) = (all[..split], all[split..]);
        }
        else
        {
            logits = dropped.Any(x => x.Count > 0) ? model.EncodeDropping(tokens, batch, dropped, cancellationToken) : model.Encode(tokens, batch, cancellationToken);
            if (plan is not null) groupLogits = EncodeHiding(tokens, plan.Views, cancellationToken);
        }

        var verification = plan is null ? null : Verify(tokens, batch, dropped, over, logits, plan, groupLogits, cancellationToken);
        var perImageMs = sw.Elapsed.TotalMilliseconds / batch;
        var k2 = logits.Length / batch;
        var modeName = mode == DefenseMode.Detect ? "detect" : "mitigate";
        activity?.SetTag(CoreActivities.DefenseFlaggedTokens, pending.Sum(p => p.Flagged.Length));
        return pending.Select((p, i) => new DefendedLogits(
            logits.AsSpan(i * k2, k2).ToArray(),
            new DefenseReport(modeName, Variant, p.Flagged, p.Above, options.ThresholdScale, options.MinTokens, p.Applied, seeds[i], perImageMs)
            {
                Score = options.Score == TokenScore.Knn ? "knn" : "jsd",
                Window = options.WindowTokens(model.Manifest.PatchSize),
                Neutralization = Name(options.Neutralization),
                Verification = verification?[i],
            },
            p.Scores,
            thresholds)).ToArray();
    }

    /// <summary>The masking check's first round: each image's candidate windows (partners), how many it checks, and its groups' views.</summary>
    private sealed record FirstRoundPlan(int[][][] Partners, int[] Rounds, List<(int Image, int[] Windows)> Groups, List<(int Image, int[] Hidden)> Views);

    /// <summary>
    /// Plans the first round from the token ratios alone (the defended answer is not needed), so that its views can
    /// share a run with the defended views themselves.
    /// </summary>
    private FirstRoundPlan PlanFirstRound(int batch, IReadOnlyCollection<int>[] dropped, double[][] ratios)
    {
        int first = model.FirstPatchToken, side = VerifySide;
        int count = options.VerifyWindows, partnerCount = Math.Max(count, options.VerifyPartners), group = Math.Max(1, options.VerifyGroup);
        var plan = new FirstRoundPlan(new int[batch][][], new int[batch], [], []);
        for (var i = 0; i < batch; i++)
        {
            // The first-round windows are the strongest few of the partners (same order, same suppression).
            var partners = plan.Partners[i] = WindowVerification.Candidates(ratios[i], model.GridRows, model.GridCols, side, side, partnerCount)
                .Select(w => w.Select(c => c + first).ToArray()).ToArray();
            plan.Rounds[i] = Math.Min(count, partners.Length);
            foreach (var windows in Enumerable.Range(0, plan.Rounds[i]).Chunk(group))
            {
                plan.Groups.Add((i, windows));
                plan.Views.Add((i, Hide(dropped[i], windows.Select(m => partners[m]).ToArray())));
            }
        }

        return plan;
    }

    /// <summary>The side in tokens of the windows the masking check hides (<see cref="DefenseOptions.VerifyWindowTokens"/>), at most the grid's.</summary>
    internal int VerifySide => Math.Min(Math.Min(model.GridRows, model.GridCols), options.VerifyWindowTokens(model.Manifest.PatchSize));

    /// <summary>
    /// The masking check (<see cref="WindowVerification"/>) on the neutralised <paramref name="tokens"/>: replaces an
    /// image's row of <paramref name="logits"/> by the answer of the window that passes, and reports each image.
    /// Each round of the whole batch runs as one masked encoder batch. With <see cref="DefenseOptions.VerifyGroup"/>
    /// above 1 the first round hides its windows that many at a time; only a group whose view disagrees with the
    /// defended answer is asked again window by window, so the decision is taken on one-window answers as before.
    /// </summary>
    private VerificationReport[] Verify(float[] tokens, int batch, IReadOnlyCollection<int>[] dropped, int[][] over, float[] logits, FirstRoundPlan plan,
        float[] groupLogits, CancellationToken cancellationToken)
    {
        int first = model.FirstPatchToken, classes = logits.Length / batch, side = VerifySide, group = Math.Max(1, options.VerifyGroup);
        var (partners, rounds, groupsOf) = (plan.Partners, plan.Rounds, plan.Groups);
        var defended = Enumerable.Range(0, batch).Select(i => Numerics.Probabilities.ArgMax(logits.AsSpan(i * classes, classes))).ToArray();

        // One-window answers: a group of one is its window's view; a group that agrees answers for its windows;
        // a group that disagrees is asked window by window.
        var firstRound = Enumerable.Range(0, batch).Select(i => Enumerable.Repeat(defended[i], rounds[i]).ToArray()).ToArray();
        var oneWindow = new Dictionary<(int Image, int M), (float[] Logits, int Row)>();
        var singleViews = new List<(int Image, int[] Hidden)>();
        var singles = new List<(int Image, int M)>();
        var forwards = new int[batch];
        for (var g = 0; g < groupsOf.Count; g++)
        {
            var (i, windows) = groupsOf[g];
            forwards[i]++;
            var answer = Numerics.Probabilities.ArgMax(groupLogits.AsSpan(g * classes, classes));
            if (windows.Length == 1)
            {
                firstRound[i][windows[0]] = answer;
                oneWindow[(i, windows[0])] = (groupLogits, g);
            }
            else if (answer != defended[i])
            {
                foreach (var m in windows)
                {
                    singles.Add((i, m));
                    singleViews.Add((i, Hide(dropped[i], partners[i][m])));
                }
            }
        }

        var singleLogits = singleViews.Count > 0 ? EncodeHiding(tokens, singleViews, cancellationToken) : [];
        for (var v = 0; v < singles.Count; v++)
        {
            var (i, m) = singles[v];
            forwards[i]++;
            firstRound[i][m] = Numerics.Probabilities.ArgMax(singleLogits.AsSpan(v * classes, classes));
            oneWindow[(i, m)] = (singleLogits, v);
        }

        var secondRound = SecondRound(tokens, batch, dropped, partners, defended, firstRound, forwards, cancellationToken);

        var reports = new VerificationReport[batch];
        for (var i = 0; i < batch; i++)
        {
            var image = i;
            var chosen = WindowVerification.Decide(defended[i], firstRound[i], partners[i].Length, (m, j) => secondRound[(image, m, j)]);
            var outcome = chosen >= 0 ? "recovered" : firstRound[i].All(l => l == defended[i]) ? "agreed" : "kept";
            if (outcome == "kept" && options.VerifyComplete && (over[i].Length > 0 || options.VerifyCompleteUnflagged))
            {
                chosen = Completing(defended[i], firstRound[i], partners[i], over[i], (m, answer) =>
                {
                    var (source, row) = oneWindow[(image, m)];
                    return Answer(source.AsSpan(row * classes, classes), options.VerifyMargin ?? 0) == answer;
                });
                if (chosen >= 0) outcome = "completed";
            }
            if (chosen >= 0)
            {
                var (source, row) = oneWindow[(i, chosen)];
                source.AsSpan(row * classes, classes).CopyTo(logits.AsSpan(i * classes, classes));
            }

            reports[i] = new VerificationReport(rounds[i], partners[i].Length, side, side, forwards[i], outcome,
                chosen >= 0 ? partners[i][chosen].Select(k => k - first).ToArray() : null)
            {
                Group = group,
                Margin = options.VerifyMargin ?? 0,
                Rule = options.VerifyRule == VerifyRule.Veto ? "veto" : "unanimous",
                FirstRound = Enumerable.Range(0, rounds[i]).Select(m => (partners[i][m].Select(k => k - first).ToArray(), firstRound[i][m], oneWindow.ContainsKey((image, m)))).ToArray(),
            };
        }

        return reports;
    }

    /// <summary>
    /// <see cref="DefenseOptions.VerifyComplete"/>: a patch the flagged window covers only in part leaves its rest next to
    /// a token over threshold. The first disagreeing window (candidate order) that touches one of <paramref name="over"/>
    /// (token indices) and whose own view gives its answer clearly (<paramref name="clear"/>), or -1.
    /// </summary>
    private int Completing(int defended, int[] firstRound, int[][] partners, int[] over, Func<int, int, bool> clear)
    {
        var first = model.FirstPatchToken;
        // With nothing over threshold (Defense:VerifyCompleteUnflagged), any disagreeing window may complete.
        return WindowVerification.Disagreeing(defended, firstRound).FirstOrDefault(m =>
            (over.Length == 0
                || WindowVerification.Touches(partners[m].Select(k => k - first).ToArray(), over.Select(k => k - first), model.GridRows, model.GridCols))
            && clear(m, firstRound[m]), -1);
    }

    /// <summary>
    /// The second round's answers, asked in stages of 2, 4, 8, ... partners per disagreeing window, in partner order:
    /// a window leaves at its first partner view with another answer, and an image leaves once its first window still
    /// standing (in candidate order) has held with every partner. Every view that <see cref="WindowVerification.Decide"/>
    /// reads is asked; beyond them only the rest of a window's last stage, and the stages of later windows asked
    /// alongside an earlier one still undecided. Each stage of the whole batch runs as one masked encoder batch. Adds
    /// each image's views to <paramref name="forwards"/>.
    /// </summary>
    private Dictionary<(int Image, int M, int J), int> SecondRound(float[] tokens, int batch, IReadOnlyCollection<int>[] dropped, int[][][] partners,
        int[] defended, int[][] firstRound, int[] forwards, CancellationToken cancellationToken)
    {
        var answers = new Dictionary<(int Image, int M, int J), int>();
        var windows = Enumerable.Range(0, batch).Select(i => WindowVerification.Disagreeing(defended[i], firstRound[i]).ToList()).ToArray();
        var next = new Dictionary<(int Image, int M), int>();
        var failed = new HashSet<(int Image, int M)>();
        var classes = model.Manifest.Labels.Count;
        for (var stage = 2; ; stage *= 2)
        {
            var asked = new List<(int Image, int M, int J)>();
            for (var i = 0; i < batch; i++)
            {
                foreach (var m in windows[i])
                {
                    if (failed.Contains((i, m))) continue;
                    var j = next.GetValueOrDefault((i, m));
                    if (j >= partners[i].Length) break;   // held with every partner: the image is decided
                    for (var n = 0; j < partners[i].Length && n < stage; j++)
                    {
                        if (j == m) continue;
                        asked.Add((i, m, j));
                        n++;
                    }

                    next[(i, m)] = j;
                }
            }

            if (asked.Count == 0) return answers;
            var views = asked.Select(v => (v.Image, Hide(dropped[v.Image], partners[v.Image][v.M], partners[v.Image][v.J]))).ToList();
            var logits = EncodeHiding(tokens, views, cancellationToken);
            for (var v = 0; v < asked.Count; v++)
            {
                var (i, m, j) = asked[v];
                var view = logits.AsSpan(v * classes, classes);
                var answer = options.VerifyRule == VerifyRule.Veto
                    ? (Sides(view, defended[i], options.VerifyMargin ?? 0) ? defended[i] : firstRound[i][m])
                    : Answer(view, options.VerifyMargin ?? 0);
                answers[(i, m, j)] = answer;
                forwards[i]++;
                if (answer != firstRound[i][m]) failed.Add((i, m));
            }
        }
    }

    /// <summary>A second-round view's answer: its argmax when it leads the runner-up by at least <paramref name="margin"/>, else -1 (no answer, which holds with no window).</summary>
    internal static int Answer(ReadOnlySpan<float> logits, double margin)
    {
        var top = Numerics.Probabilities.ArgMax(logits);
        if (margin <= 0) return top;
        var second = float.NegativeInfinity;
        for (var c = 0; c < logits.Length; c++)
        {
            if (c != top && logits[c] > second) second = logits[c];
        }

        return logits[top] - second >= margin ? top : -1;
    }

    /// <summary>Whether a view sides with <paramref name="defended"/>: its logit is within <paramref name="margin"/> of the view's top (at the top when 0).</summary>
    internal static bool Sides(ReadOnlySpan<float> logits, int defended, double margin)
    {
        var top = float.NegativeInfinity;
        for (var c = 0; c < logits.Length; c++)
        {
            if (c != defended && logits[c] > top) top = logits[c];
        }

        return logits[defended] >= top - margin;
    }

    private static int[] Hide(IReadOnlyCollection<int> dropped, params int[][] windows) => dropped.Concat(windows.SelectMany(w => w)).Distinct().ToArray();

    /// <summary>
    /// Logits of each view: its image's tokens with the view's token indices hidden, dropped from the sequence when
    /// the encoder takes a shorter one, else replaced by the clean mean token of their position.
    /// </summary>
    private float[] EncodeHiding(float[] tokens, List<(int Image, int[] Hidden)> views, CancellationToken cancellationToken) =>
        model.EncodeHiding(tokens, views.Select(v => v.Image).ToArray(), views.Select(v => (IReadOnlyCollection<int>)v.Hidden.ToHashSet()).ToArray(),
            model.AcceptsShorterSequences ? null : reference.Center, 256, cancellationToken);

    /// <summary>
    /// Scores one image's tokens <c>[T*D]</c>, flags them (threshold, at least K, and the strongest window), and, when
    /// <paramref name="rng"/> is given, neutralises each flagged token in place. Shared with the adaptive attacker's
    /// view of the defense, so both run exactly the same defense. The steps say what each flagged token became.
    /// </summary>
    internal static (int[] Flagged, int Above, MitigationStep[][] Steps) FlagAndTransform(
        Span<float> image, TokenGrid grid, TokenReference reference, DefenseOptions options, int[] candidates, double[] scores, Random? rng)
    {
        var detection = Detect(image, grid, reference, options, candidates, scores);
        var steps = rng is null ? [] : Neutralize(image, grid, reference, options, detection, rng);
        return (detection.Flagged, detection.Above, steps);
    }

    /// <summary>Scores one image's tokens into <paramref name="scores"/> and flags them; nothing is changed.</summary>
    internal static Detection Detect(
        ReadOnlySpan<float> image, TokenGrid grid, TokenReference reference, DefenseOptions options, int[] candidates, double[] scores)
    {
        var nearest = options.Score == TokenScore.Knn ? new int[reference.TokenCount * reference.Bank!.Neighbors] : null;
        reference.Score(image, scores, options.Score, grid.First, nearest);
        var thresholds = reference.ThresholdsFor(options.Score);
        var (flagged, above) = TokenSelection.Select(scores, thresholds, candidates, options.MinTokens,
            options.ThresholdScale, options.WindowTokens(grid.TokenSize), grid.Rows, grid.Cols, options.WindowOnlyOverThreshold, options.WindowGrowRatio, options.WindowMinRatioSum);
        var over = flagged.Where(k => scores[k] > thresholds[k] * options.ThresholdScale).ToHashSet();
        return new Detection(flagged, above, nearest, over);
    }

    /// <summary>Neutralises what <paramref name="detection"/> flagged, in place; one draw of the defense's randomness.</summary>
    internal static MitigationStep[][] Neutralize(
        Span<float> image, TokenGrid grid, TokenReference reference, DefenseOptions options, Detection detection, Random rng) =>
        Neutralize(image, grid, reference, options, detection.Flagged, detection.Nearest, rng, detection.OverThreshold.Contains);

    /// <summary>
    /// Neutralises <paramref name="flagged"/> tokens of one image in place as <see cref="DefenseOptions.Neutralization"/>
    /// says; <paramref name="nearest"/> (<c>[T*k]</c>) is needed for bank replacement. Returns each token's steps.
    /// </summary>
    internal static MitigationStep[][] Neutralize(
        Span<float> image, TokenGrid grid, TokenReference reference, DefenseOptions options, IReadOnlyList<int> flagged, int[]? nearest, Random rng,
        Func<int, bool>? overThreshold = null)
    {
        var dim = grid.Dim;
        var k = reference.Bank?.Neighbors ?? 0;
        var steps = new MitigationStep[flagged.Count][];
        for (var j = 0; j < steps.Length; j++)
        {
            var token = flagged[j];
            var z = image.Slice(token * dim, dim);
            var how = options.Neutralization;
            if (how is Neutralization.Hybrid or Neutralization.HybridDrop)
            {
                var confident = overThreshold?.Invoke(token) != false;
                how = !confident ? Neutralization.Bank : how == Neutralization.Hybrid ? Neutralization.Mean : Neutralization.Drop;
            }

            switch (how)
            {
                case Neutralization.Drop:
                    // The token stays in the array; the encoder run leaves it out (EncodeDropping).
                    steps[j] = [new MitigationStep(TokenMitigation.Drop, 0)];
                    break;
                case Neutralization.Mean:
                    steps[j] = [new MitigationStep(TokenMitigation.ReplaceMean, 0)];
                    reference.Center[token].CopyTo(z);
                    break;
                case Neutralization.Bank:
                    if (nearest is null)
                    {
                        nearest = new int[reference.TokenCount * k];
                        reference.Score(image, new double[reference.TokenCount], TokenScore.Knn, grid.First, nearest);
                    }

                    var pick = nearest[(token * k) + rng.Next(Math.Clamp(options.BankChoices, 1, k))];
                    steps[j] = [new MitigationStep(TokenMitigation.ReplaceBank, pick)];
                    reference.Bank!.Restore(pick, token, z);
                    break;
                default:
                    steps[j] = TokenMitigation.Draw(options, rng);
                    TokenMitigation.Apply(z, reference.Center[token], reference.Norm[token], steps[j]);
                    break;
            }
        }

        return steps;
    }

    /// <summary>
    /// Logits <c>[N, K]</c> with the tokens that <paramref name="flagsOf"/> names for each image neutralised as configured,
    /// skipping detection: the evaluation's oracle (the true patch's tokens) and random-token baselines.
    /// </summary>
    internal float[] RunWithFlags(ReadOnlySpan<float> pixels, int batch, Func<int, IReadOnlyList<int>> flagsOf, IReadOnlyList<int> seeds)
    {
        int t = model.TokenCount, d = model.Dim;
        var tokens = model.Embed(pixels, batch);
        var grid = new TokenGrid(d, model.FirstPatchToken, model.GridRows, model.GridCols, model.Manifest.PatchSize);
        var dropped = new IReadOnlyCollection<int>[batch];
        for (var i = 0; i < batch; i++)
        {
            var flags = flagsOf(i);
            dropped[i] = DroppedOf(flags, Neutralize(tokens.AsSpan(i * t * d, t * d), grid, reference, options, flags, null, new Random(seeds[i])));
        }

        return dropped.Any(x => x.Count > 0) ? model.EncodeDropping(tokens, batch, dropped) : model.Encode(tokens, batch);
    }

    /// <summary>The flagged tokens whose neutralisation is to leave the sequence.</summary>
    internal static IReadOnlyCollection<int> DroppedOf(IReadOnlyList<int> flagged, MitigationStep[][] steps)
    {
        var dropped = new HashSet<int>();
        for (var j = 0; j < steps.Length; j++)
        {
            if (steps[j].Any(s => s.Op == TokenMitigation.Drop)) dropped.Add(flagged[j]);
        }

        return dropped;
    }

    internal static string Name(Neutralization n) => n switch
    {
        Neutralization.Mean => "mean",
        Neutralization.Bank => "bank",
        Neutralization.Hybrid => "hybrid",
        Neutralization.Drop => "drop",
        Neutralization.HybridDrop => "hybrid-drop",
        _ => "transform",
    };

    private FlaggedToken Flag(int tokenIndex, double score)
    {
        var patch = tokenIndex - model.FirstPatchToken;
        return new FlaggedToken(patch, patch / model.GridCols, patch % model.GridCols, Math.Round(score, 6),
            Math.Round(reference.ThresholdsFor(options.Score)[tokenIndex] * options.ThresholdScale, 6));
    }
}
