using StrapVit.Core.Defense;
using StrapVit.Core.Inference;

namespace StrapVit.Core.Tests.Defense;

/// <summary>The whole-image bank search on the embedded model's real calibration (8,192 entries of 64 channels) and real tokens.</summary>
public sealed class BankScoringTests(DefaultModelTokens fixture) : IClassFixture<DefaultModelTokens>
{
    private readonly TokenSpaceModel _model = fixture.Model;
    private readonly TokenReference _reference = fixture.Reference;

    [Fact]
    public void The_image_search_equals_the_token_by_token_search_on_real_tokens()
    {
        var set = fixture.TestSet;
        var bank = _reference.Bank!;
        int t = _model.TokenCount, d = _model.Dim, k = bank.Neighbors;
        Assert.Equal((64, 8192), (bank.Dim, bank.Count));
        for (var i = 0; i < 5; i++)
        {
            var tokens = _model.Embed(set.Image(i).Data, 1);
            var scores = new double[t];
            var nearest = new int[t * k];

            _reference.Score(tokens, scores, TokenScore.Knn, _model.FirstPatchToken, nearest);

            for (var p = _model.FirstPatchToken; p < t; p++)
            {
                var single = new int[k];
                Assert.Equal(bank.Score(tokens.AsSpan(p * d, d), p, single), scores[p]);
                Assert.Equal(single, nearest.AsSpan(p * k, k).ToArray());
            }
        }
    }
}
