using System.Text.Json;
using StrapVit.Core.Attacks;
using StrapVit.Core.Evaluation;

namespace StrapVit.Core.Tests.Defense;

public sealed class DefenseScoreTests
{
    private static readonly DefenseScore Score = new(0.5, 0.25, null, [true, false, true, false]);
    private static readonly JsonSerializerOptions CamelCase = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase }; // as evaluate writes

    [Fact]
    public void Accuracy_on_a_subset_counts_only_the_selected_images()
    {
        Assert.Equal(2 / 3.0, Score.AccuracyOn([true, true, true, false])!.Value, 12);
        Assert.Equal(0.0, Score.AccuracyOn([false, true, false, true])!.Value);
    }

    [Fact]
    public void An_empty_subset_has_no_accuracy_and_its_row_still_serialises()
    {
        // A small run where the patch fools no image: "accuracy on fooled images" is undefined. It was NaN, which
        // System.Text.Json refuses, so the whole run failed when it wrote its results.
        var onNone = Score.AccuracyOn([false, false, false, false]);

        Assert.Null(onNone);
        var row = new EvaluationRow("per-image patch", "6x6", "token", 0.5, 0.25, null, 0.0) { OnAttacked = onNone };
        using var json = JsonDocument.Parse(JsonSerializer.Serialize(row));
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("OnAttacked").ValueKind);
    }

    [Fact]
    public void The_per_image_mask_has_one_character_per_image_in_order()
    {
        Assert.Equal("1010", EvaluationRow.Mask(Score.Correct));
        Assert.Equal("", EvaluationRow.Mask([]));
        var row = new EvaluationRow("adaptive per-image patch", "6x6 EOT", "token", 0.5, 0.25, null, 0.0) { CorrectImages = "0110" };
        using var json = JsonDocument.Parse(JsonSerializer.Serialize(row, CamelCase));
        Assert.Equal("0110", json.RootElement.GetProperty("correctImages").GetString());
    }

    [Fact]
    public void Losses_count_the_images_lost_to_the_defense_by_what_it_found_and_what_the_check_did()
    {
        // Six patched images. Clean: right on 0-4, wrong on 5. Defended: wrong on 0, 1, 2, 3; right on 4 and 5.
        bool[] clean = [true, true, true, true, true, false];
        var defended = new DefenseScore(2 / 6.0, 0.5, 0.5, [false, false, false, false, true, true])
        {
            Images =
            [
                new ImageOutcome(1.0, 2, "kept") { PatchTokens = 4 },      // 0: patch flagged whole
                new ImageOutcome(0.0, 0, "agreed") { PatchTokens = 4 },    // 1: missed
                new ImageOutcome(0.25, 1, "kept") { PatchTokens = 2 },     // 2: in part
                new ImageOutcome(0.0, 0, "agreed") { PatchTokens = 4 },    // 3: missed
                new ImageOutcome(0.0, 0, "recovered") { PatchTokens = 1 }, // 4: right, not a loss
                new ImageOutcome(1.0, 3, "agreed") { PatchTokens = 4 },    // 5: gained (clean wrong: not counted by tokens)
            ],
        };
        var oracle = new DefenseScore(5 / 6.0, 0, 1.0, [true, true, false, true, true, true]);

        var rows = DefenseEvaluation.Losses("6x6", defended, clean, oracle).ToArray();

        Assert.Equal(
            [("token: patch flagged in part, check kept", 1, 0), ("token: patch flagged whole, check kept", 1, 1), ("token: patch missed, check agreed", 2, 2)],
            rows[..3].Select(r => (r.Defense, r.Count!.Value, r.OracleRight!.Value)).ToArray());
        Assert.Equal(2 / 6.0, rows[2].Accuracy, 12);
        // By the patch's tokens, over the five images whose clean version was right: 1 token 0 of 1, 2 tokens 1 of 1, 4 tokens 3 of 3.
        Assert.Equal(
            [("token: patch over 1 tokens, share lost", 0, 1), ("token: patch over 2 tokens, share lost", 1, 1), ("token: patch over 4 tokens, share lost", 3, 3)],
            rows[3..^1].Select(r => (r.Defense, r.Count!.Value, r.OutOf!.Value)).ToArray());
        Assert.Equal(("token: gained (clean answered wrong, defended right)", 1), (rows[^1].Defense, rows[^1].Count!.Value));
        Assert.All(rows, r => Assert.Equal(("losses", "6x6"), (r.Section, r.Scenario)));
    }

    [Fact]
    public void The_patch_view_names_the_checked_window_over_most_of_the_patch_and_whether_hiding_it_gave_the_label()
    {
        // 4-pixel tokens on a 7-column grid; a 4x4 patch at (5, 5) spans cells (1,1) 3x3 px, (1,2) 1x3, (2,1) 3x1, (2,2) 1x1.
        var patch = new PatchPlacement(5, 5, 4);
        int[] whole = [8, 9, 15, 16];   // (1,1) (1,2) (2,1) (2,2): all 16 pixels
        int[] corner = [0, 1, 7, 8];    // (0,0) (0,1) (1,0) (1,1): 9 of them
        int[] far = [40, 41, 47, 48];   // rows 5-6: none

        Assert.Equal("a checked window over all of the patch, its view right",
            DefenseScoring.PatchView([(corner, 3, true), (whole, 5, true)], patch, 4, 7, label: 5));
        Assert.Equal("a checked window over part of the patch, its view wrong",
            DefenseScoring.PatchView([(far, 5, true), (corner, 3, true)], patch, 4, 7, label: 5));
        Assert.Equal("a checked window over part of the patch, its group's view wrong",
            DefenseScoring.PatchView([(far, 5, false), (corner, 3, false)], patch, 4, 7, label: 5));
        Assert.Equal("no checked window on the patch", DefenseScoring.PatchView([(far, 5, true)], patch, 4, 7, label: 5));
        Assert.Null(DefenseScoring.PatchView(null, patch, 4, 7, label: 5));
    }

    [Fact]
    public void Losses_where_the_check_kept_or_agreed_say_what_its_first_round_made_of_the_patch()
    {
        var defended = new DefenseScore(0, 0, 0, [false, false, false])
        {
            Images =
            [
                new ImageOutcome(0.0, 0, "kept") { PatchTokens = 4, PatchView = "a checked window over all of the patch, its view right" },
                new ImageOutcome(0.0, 0, "agreed") { PatchTokens = 4, PatchView = "no checked window on the patch" },
                new ImageOutcome(0.0, 0, "recovered") { PatchTokens = 4, PatchView = "no checked window on the patch" },
            ],
        };

        var rows = DefenseEvaluation.Losses("4x4", defended, [true, true, true], null).ToArray();

        Assert.Equal(
            [
                "token: patch missed, check agreed (no checked window on the patch)",
                "token: patch missed, check kept (a checked window over all of the patch, its view right)",
                "token: patch missed, check recovered",
            ],
            rows[..3].Select(r => r.Defense).ToArray());
    }

    [Fact]
    public void Clean_losses_are_split_by_a_token_over_threshold_and_have_no_oracle()
    {
        var defended = new DefenseScore(0.5, 0.5, null, [false, false])
        {
            Images = [new ImageOutcome(null, 0, "recovered"), new ImageOutcome(null, 2, null)],
        };

        var rows = DefenseEvaluation.Losses("clean", defended, [true, true], null).ToArray();

        Assert.Equal(["token: a token over threshold, check off", "token: no token over threshold, check recovered"], rows[..^1].Select(r => r.Defense).ToArray());
        Assert.All(rows, r => Assert.Null(r.OracleRight));
        Assert.Equal(0, rows[^1].Count);
    }
}
