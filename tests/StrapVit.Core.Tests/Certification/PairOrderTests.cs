using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Certification;
using StrapVit.Core.Datasets;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Certification;

/// <summary>
/// The certifier visits the pairs of its least confident masks first. That order may only change how many views an
/// uncertified image costs: label and certificate must be those of the plain order, recomputed here with the
/// masked classifier directly.
/// </summary>
public sealed class PairOrderTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly TokenSpaceModel _tokens = new(ModelPackage.Load(RepoPaths.DefaultModel), new OnnxSessionFactory(Cpu, NullLogger<OnnxSessionFactory>.Instance));

    [Fact]
    public void Fragile_pairs_first_gives_the_plain_order_answers_in_no_more_views()
    {
        var views = new MaskedTokenClassifier(_tokens, null);
        var certifier = new PatchCertifier(views, new CertifyOptions());
        var masks = certifier.MasksFor(4);
        var path = RepoPaths.Sample(Path.Combine("fashion-mnist", "test-1000-images-idx3-ubyte.gz"));
        var data = IdxDataset.Load(path, IdxDataset.LabelsBeside(path));
        int plainForwards = 0, orderedForwards = 0, certified = 0, uncertified = 0;
        for (var i = 0; i < 40; i++)
        {
            var pixels = data.Image(i).Data.ToArray();
            var ordered = certifier.Certify(pixels, masks);
            var plain = PatchCleanser.Run(new Views(views, _tokens.Embed(pixels, 1), masks), masks.Count, masks.PairsByHiddenTokens);

            Assert.Equal(plain.Label, ordered.Label);
            Assert.Equal(plain.Certified, ordered.Report.Certified);
            if (plain.Certified) Assert.Equal(plain.Forwards, ordered.Report.Forwards);
            plainForwards += plain.Forwards;
            orderedForwards += ordered.Report.Forwards;
            if (plain.Certified) certified++;
            else uncertified++;
        }

        // Both kinds occur among these images, and the uncertified ones end sooner in total.
        Assert.True(certified > 0 && uncertified > 0, $"{certified} certified, {uncertified} not");
        Assert.True(orderedForwards < plainForwards, $"{orderedForwards} views against {plainForwards}");
    }

    public void Dispose() => _tokens.Dispose();

    /// <summary>The masked views of one image, labels only: the plain predictor PatchCleanser is specified over.</summary>
    private sealed class Views(MaskedTokenClassifier classifier, float[] tokens, MaskSet masks) : IMaskedPredictor
    {
        public int[] Predict(IReadOnlyList<MaskPair> pairs)
        {
            var hidden = pairs.Select(p => (IReadOnlyCollection<int>)masks.Masks[p.First].Concat(masks.Masks[p.Second]).Distinct().ToArray()).ToArray();
            var logits = classifier.Logits(tokens, hidden);
            var k = classifier.Classes;
            return Enumerable.Range(0, pairs.Count).Select(v => Array.IndexOf(logits, logits.Skip(v * k).Take(k).Max(), v * k) - (v * k)).ToArray();
        }
    }
}
