using System.Text.Json;
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
}
