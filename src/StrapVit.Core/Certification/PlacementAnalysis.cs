using StrapVit.Core.Attacks;
using StrapVit.Core.Numerics;

namespace StrapVit.Core.Certification;

/// <summary>
/// Where a patch can change certified mode's answer on one clean image, and where it cannot. A mask is <em>sound</em>
/// when its one-mask view and every two-mask view that hides it give the label. A patch inside a sound mask cannot change
/// the double-masking answer (the argument of PatchCleanser's Theorem 1 for that one placement): those views never see
/// it, so the sound mask either agrees with every one-mask view, or disagrees with a wrong majority and passes its second
/// round, while any view answering otherwise fails on its pair with the sound mask. So a placement is
/// <em>vulnerable</em> only when no mask that covers it (every token it reaches, receptive field included) is sound.
/// An image with every mask sound is certified; one that is not has at least one vulnerable placement whenever every
/// mask is the only cover of some placement, as in the service's mask sets. An attacker on certified mode has to put the
/// patch at a vulnerable placement, so these are where the evaluation attacks.
/// </summary>
public static class PlacementAnalysis
{
    /// <summary>Each mask's soundness for <paramref name="label"/> on the clean image <paramref name="pixels"/>: all one- and two-mask views are asked, with no early stop.</summary>
    public static bool[] SoundMasks(MaskedTokenClassifier views, MaskSet masks, ReadOnlySpan<float> pixels, int label, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(views);
        ArgumentNullException.ThrowIfNull(masks);
        // Every one-mask view (a mask paired with itself) and every two-mask view.
        var pairs = Enumerable.Range(0, masks.Count).Select(m => new MaskPair(m, m)).Concat(PatchCleanser.AllPairs(masks.Count)).ToArray();
        var logits = views.Logits(views.Model.Embed(pixels, 1, cancellationToken), pairs.Select(masks.Hidden).ToArray(), cancellationToken);
        var classes = views.Classes;
        var sound = Enumerable.Repeat(true, masks.Count).ToArray();
        for (var v = 0; v < pairs.Length; v++)
        {
            if (Probabilities.ArgMax(logits.AsSpan(v * classes, classes)) == label) continue;
            sound[pairs[v].First] = false;
            sound[pairs[v].Second] = false;
        }

        return sound;
    }

    /// <summary>The masks (indices) that hide every token a <see cref="MaskSet.PatchSize"/>-pixel patch at (<paramref name="x"/>, <paramref name="y"/>) reaches.</summary>
    public static int[] Covering(MaskSet masks, ReceptiveField field, int x, int y)
    {
        ArgumentNullException.ThrowIfNull(masks);
        ArgumentNullException.ThrowIfNull(field);
        var (r0, r1) = field.Rows.TokensTouching(y, y + masks.PatchSize - 1, masks.GridRows);
        var (c0, c1) = field.Cols.TokensTouching(x, x + masks.PatchSize - 1, masks.GridCols);
        var reached = new List<int>();
        for (var r = r0; r <= r1; r++)
        {
            for (var c = c0; c <= c1; c++) reached.Add((r * masks.GridCols) + c);
        }

        return Enumerable.Range(0, masks.Count).Where(m => reached.All(masks.Masks[m].Contains)).ToArray();
    }

    /// <summary>Every placement of the patch on a <paramref name="height"/> x <paramref name="width"/> image that no sound mask covers, row by row.</summary>
    public static PatchPlacement[] Vulnerable(MaskSet masks, ReceptiveField field, int height, int width, IReadOnlyList<bool> sound)
    {
        ArgumentNullException.ThrowIfNull(masks);
        ArgumentNullException.ThrowIfNull(sound);
        var placements = new List<PatchPlacement>();
        for (var y = 0; y + masks.PatchSize <= height; y++)
        {
            for (var x = 0; x + masks.PatchSize <= width; x++)
            {
                if (!Covering(masks, field, x, y).Any(m => sound[m])) placements.Add(new PatchPlacement(x, y, masks.PatchSize));
            }
        }

        return placements.ToArray();
    }
}
