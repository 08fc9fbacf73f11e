using StrapVit.Core.Certification;

namespace StrapVit.Core.Tests.Certification;

/// <summary>
/// The mask set's cover property, checked exhaustively: for every placement of a p x p pixel patch inside the
/// image, the tokens whose receptive field meets it (computed here by brute force over pixel intervals) lie inside
/// at least one mask.
/// </summary>
public sealed class MaskSetTests
{
    // The default model: 3x3 stem (padding 1), then 4x4/stride-4 patchify: token j reads pixels [4j - 1, 4j + 4].
    private static readonly ReceptiveField Stem = new(new(-1, 6, 4), new(-1, 6, 4));

    public static TheoryData<int, int> EmbeddedGrid()
    {
        var data = new TheoryData<int, int>();
        for (var p = 1; p <= 8; p++)
        {
            data.Add(p, 1);
            data.Add(p, 2);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(EmbeddedGrid))]
    public void Every_placement_on_the_28_pixel_grid_with_a_stem_lies_inside_a_mask(int patch, int stride)
    {
        var masks = MaskSet.Create(Stem, 28, 28, 7, 7, patch, stride);

        AssertCovers(masks, Stem, 28, 28, patch);
    }

    [Theory]
    [InlineData(16, 1)]
    [InlineData(32, 1)]
    [InlineData(32, 2)]
    [InlineData(48, 1)]
    [InlineData(50, 3)]
    [InlineData(1, 1)]
    public void Every_placement_on_a_224_pixel_16_pixel_grid_without_stem_lies_inside_a_mask(int patch, int stride)
    {
        var field = ReceptiveField.OfPatch(16);
        var masks = MaskSet.Create(field, 224, 224, 14, 14, patch, stride);

        AssertCovers(masks, field, 224, 224, patch);
    }

    public static TheoryData<int, int, int> BorderStrides()
    {
        var data = new TheoryData<int, int, int>();
        for (var p = 1; p <= 8; p++)
        {
            data.Add(p, 1, 2);
            data.Add(p, 1, 3);
            data.Add(p, 2, 3);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(BorderStrides))]
    public void With_wider_border_masks_every_placement_still_lies_inside_a_mask(int patch, int stride, int border)
    {
        foreach (var field in new[] { Stem, ReceptiveField.OfPatch(4) })
        {
            MaskSet masks;
            try
            {
                masks = MaskSet.Create(field, 28, 28, 7, 7, patch, stride, border, border);
            }
            catch (CertificationException)
            {
                // A border mask wider than the grid is refused, as a uniform one is.
                Assert.True(MaskSet.MostTokensTouched(field.Rows, 28, 7, patch) + border - 1 > 7);
                continue;
            }

            AssertCovers(masks, field, 28, 28, patch);
        }
    }

    [Theory]
    [InlineData(16, 1, 2)]
    [InlineData(32, 1, 2)]
    [InlineData(32, 1, 4)]
    [InlineData(48, 2, 3)]
    public void With_wider_border_masks_every_placement_on_a_224_pixel_grid_lies_inside_a_mask(int patch, int stride, int border)
    {
        var field = ReceptiveField.OfPatch(16);
        var masks = MaskSet.Create(field, 224, 224, 14, 14, patch, stride, border, stride);

        AssertCovers(masks, field, 224, 224, patch);
        masks = MaskSet.Create(field, 224, 224, 14, 14, patch, stride, 0, border);

        AssertCovers(masks, field, 224, 224, patch);
    }

    [Fact]
    public void Border_stride_two_on_the_default_grid_gives_four_windows_per_axis()
    {
        // The default model: each token reads its own 4x4 pixels, so a 4-pixel patch reaches 2 tokens per axis. Runs
        // of 2 start at tokens 0..5; the border windows cover runs 0-1 (tokens 0-2) and 4-5 (tokens 4-6), and the
        // runs at 2 and 3 get 2-token windows.
        var masks = MaskSet.Create(ReceptiveField.OfPatch(4), 28, 28, 7, 7, 4, 1, 2, 2);

        Assert.Equal([0, 2, 3, 4], masks.RowStarts);
        Assert.Equal([3, 2, 2, 3], masks.RowLengths);
        Assert.Equal(masks.RowStarts, masks.ColStarts);
        Assert.Equal(16, masks.Count);
        Assert.Equal((2, 2, 3, 3), (masks.WindowRows, masks.WindowCols, masks.LargestRows, masks.LargestCols));
        Assert.Equal([0, 1, 2, 7, 8, 9, 14, 15, 16], masks.Masks[0]);
        Assert.Equal([2, 3, 9, 10, 16, 17], masks.Masks[1]);
        // 16 one-mask views and 120 pairs, against 36 and 630 with PatchCleanser's uniform set.
        Assert.Equal(16 + 120, 16 + masks.PairsByHiddenTokens.Count);
        Assert.Equal(36, MaskSet.Create(ReceptiveField.OfPatch(4), 28, 28, 7, 7, 4, 1).Count);
    }

    [Fact]
    public void Border_stride_equal_to_the_stride_is_the_uniform_set()
    {
        var uniform = MaskSet.Create(Stem, 28, 28, 7, 7, 4, 2);
        var same = MaskSet.Create(Stem, 28, 28, 7, 7, 4, 2, 2, 2);

        Assert.Equal(uniform.Masks, same.Masks);
        // A border stride under the stride is the stride: border masks are never finer than the others.
        Assert.Equal(uniform.Masks, MaskSet.Create(Stem, 28, 28, 7, 7, 4, 2, 1, 1).Masks);
        Assert.Throws<ArgumentOutOfRangeException>(() => MaskSet.Create(Stem, 28, 28, 7, 7, 4, 2, -1, 0));
    }

    [Fact]
    public void Border_masks_that_meet_leave_two_windows_per_axis()
    {
        // 2-token runs start at 0..5; border stride 3 covers 0-2 (tokens 0-3) and 3-5 (tokens 3-6).
        var masks = MaskSet.Create(ReceptiveField.OfPatch(4), 28, 28, 7, 7, 4, 1, 3, 3);

        Assert.Equal([0, 3], masks.RowStarts);
        Assert.Equal([4, 4], masks.RowLengths);
        Assert.Equal(4, masks.Count);
    }

    [Fact]
    public void The_service_default_merges_only_the_left_and_right_border_columns()
    {
        // Certify defaults: stride 1, columns' border stride 2, rows uniform: 6 row windows of 2 tokens, 4 column windows.
        var options = new CertifyOptions();
        var masks = MaskSet.Create(ReceptiveField.OfPatch(4), 28, 28, 7, 7, options.PatchSize, options.MaskStride, options.RowBorderStride, options.ColBorderStride);

        Assert.Equal([0, 1, 2, 3, 4, 5], masks.RowStarts);
        Assert.Equal([2, 2, 2, 2, 2, 2], masks.RowLengths);
        Assert.Equal([0, 2, 3, 4], masks.ColStarts);
        Assert.Equal([3, 2, 2, 3], masks.ColLengths);
        Assert.Equal(24, masks.Count);
        Assert.Equal([0, 1, 2, 7, 8, 9], masks.Masks[0]);
        Assert.Equal(24 * 23 / 2, masks.PairsByHiddenTokens.Count);
        AssertCovers(masks, ReceptiveField.OfPatch(4), 28, 28, options.PatchSize);
    }

    [Theory]
    // Stem: token j reads [4j - 1, 4j + 4], so a run starting at 4j meets token j - 1 (which ends at 4j) and reaches
    // floor(p / 4) + 2 tokens: pixel 4j alone meets tokens j - 1 and j; 4j..4j+3 also meets j + 1 (from 4j + 3).
    [InlineData(1, 2)]
    [InlineData(3, 2)]
    [InlineData(4, 3)]
    [InlineData(6, 3)]
    [InlineData(7, 3)]
    [InlineData(8, 4)]
    public void A_patch_reaches_the_tokens_its_pixels_fall_in_plus_the_stems_border(int patch, int tokens)
    {
        Assert.Equal(tokens, MaskSet.MostTokensTouched(Stem.Rows, 28, 7, patch));
    }

    [Theory]
    // Without a stem: a patch of p pixels reaches ceil((p - 1) / 16) + 1 tokens when unaligned.
    [InlineData(1, 1)]
    [InlineData(16, 2)]
    [InlineData(17, 2)]
    [InlineData(32, 3)]
    [InlineData(33, 3)]
    public void Without_a_stem_a_patch_reaches_the_patches_it_overlaps(int patch, int tokens)
    {
        Assert.Equal(tokens, MaskSet.MostTokensTouched(ReceptiveField.OfPatch(16).Rows, 224, 14, patch));
    }

    [Fact]
    public void Masks_follow_patchcleansers_size_and_count()
    {
        // 3-token patches, stride 2: masks of 3 + 2 - 1 = 4 tokens at rows 0, 2 and 3 (flush with the end): ceil((7 - 4) / 2) + 1 = 3.
        var masks = MaskSet.Create(Stem, 28, 28, 7, 7, 4, 2);

        Assert.Equal((4, 4), (masks.WindowRows, masks.WindowCols));
        Assert.Equal([0, 2, 3], masks.RowStarts);
        Assert.Equal(9, masks.Count);
        Assert.Equal(16, masks.Masks[0].Length);
        Assert.Equal([0, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 17, 21, 22, 23, 24], masks.Masks[0]);
    }

    [Fact]
    public void Pairs_are_visited_most_hidden_first_and_each_once()
    {
        var masks = MaskSet.Create(Stem, 28, 28, 7, 7, 4, 1);

        var pairs = masks.PairsByHiddenTokens;

        Assert.Equal(25 * 24 / 2, pairs.Count);
        Assert.Equal(pairs.Count, pairs.Distinct().Count());
        Assert.All(pairs, p => Assert.True(p.First < p.Second));
        // Two disjoint 3x3 masks hide 18 tokens; (0, 1) overlap in 6 and hide 12, the least.
        Assert.Equal(18, masks.Masks[pairs[0].First].Union(masks.Masks[pairs[0].Second]).Count());
        Assert.Equal(12, masks.Masks[pairs[^1].First].Union(masks.Masks[pairs[^1].Second]).Count());
    }

    [Fact]
    public void A_mask_larger_than_the_grid_is_refused()
    {
        var ex = Assert.Throws<CertificationException>(() => MaskSet.Create(Stem, 28, 28, 7, 7, 8, 5));
        Assert.Contains("more than the 7x7 grid", ex.Message, StringComparison.Ordinal);
    }

    private static void AssertCovers(MaskSet masks, ReceptiveField field, int height, int width, int patch)
    {
        var sets = masks.Masks.Select(m => m.ToHashSet()).ToArray();
        for (var y = 0; y + patch <= height; y++)
        {
            for (var x = 0; x + patch <= width; x++)
            {
                var touched = Touched(field, masks.GridRows, masks.GridCols, x, y, patch);
                Assert.NotEmpty(touched);
                Assert.True(sets.Any(s => touched.All(s.Contains)), $"patch {patch} at ({x}, {y}) touches tokens [{string.Join(", ", touched)}], which no mask contains");
            }
        }
    }

    /// <summary>Brute force: token (r, c) is touched when its receptive field's pixel square meets the patch.</summary>
    private static List<int> Touched(ReceptiveField field, int rows, int cols, int x, int y, int patch)
    {
        var touched = new List<int>();
        for (var r = 0; r < rows; r++)
        {
            var top = (r * field.Rows.Stride) + field.Rows.Offset;
            if (top > y + patch - 1 || top + field.Rows.Size - 1 < y) continue;
            for (var c = 0; c < cols; c++)
            {
                var left = (c * field.Cols.Stride) + field.Cols.Offset;
                if (left > x + patch - 1 || left + field.Cols.Size - 1 < x) continue;
                touched.Add((r * cols) + c);
            }
        }

        return touched;
    }
}
