using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>Dropping tokens from the encoder's sequence on the embedded model.</summary>
public sealed class TokenDroppingTests : IDisposable
{
    private static readonly InferenceOptions Cpu = new() { Device = InferenceDevice.Cpu };
    private readonly TokenSpaceModel _model = new(ModelPackage.Load(RepoPaths.DefaultModel), new OnnxSessionFactory(Cpu, NullLogger<OnnxSessionFactory>.Instance));

    private float[] Tokens(int n)
    {
        var rng = new Random(3);
        var pixels = Enumerable.Range(0, n * 28 * 28).Select(_ => (float)rng.NextDouble()).ToArray();
        return _model.Embed(pixels, n);
    }

    [Fact]
    public void The_embedded_encoder_runs_on_shorter_sequences()
    {
        Assert.True(_model.AcceptsShorterSequences);
    }

    [Fact]
    public void Dropping_nothing_equals_the_full_encoder()
    {
        var tokens = Tokens(3);

        var full = _model.Encode(tokens, 3);
        var none = _model.EncodeDropping(tokens, 3, [[], [], []]);

        Assert.Equal(full, none);
    }

    [Fact]
    public void Each_image_gets_the_same_logits_alone_as_in_a_batch_grouped_by_kept_count()
    {
        var tokens = Tokens(4);
        IReadOnlyCollection<int>[] dropped = [[3, 4, 10], [], [7], [12, 13, 19]];
        var per = _model.TokenCount * _model.Dim;

        var batched = _model.EncodeDropping(tokens, 4, dropped);

        for (var i = 0; i < 4; i++)
        {
            var alone = _model.EncodeDropping(tokens.AsSpan(i * per, per), 1, [dropped[i]]);
            for (var c = 0; c < 10; c++)
            {
                Assert.Equal(alone[c], batched[(i * 10) + c], 4);
            }
        }

        // Dropping changes the answer's logits (the tokens mattered) only where something was dropped.
        var full = _model.Encode(tokens, 4);
        Assert.Equal(full.AsSpan(10, 10).ToArray(), batched.AsSpan(10, 10).ToArray());
        Assert.NotEqual(full.AsSpan(0, 10).ToArray(), batched.AsSpan(0, 10).ToArray());
    }

    [Fact]
    public void Dropping_removes_exactly_the_named_token()
    {
        // Swap tokens 5 and 6: dropping 6 from the swapped sequence leaves the same sequence as dropping 5 from the
        // original, and only then; an off-by-one in the removal would give other logits.
        var tokens = Tokens(1);
        var d = _model.Dim;
        var swapped = (float[])tokens.Clone();
        tokens.AsSpan(5 * d, d).CopyTo(swapped.AsSpan(6 * d, d));
        tokens.AsSpan(6 * d, d).CopyTo(swapped.AsSpan(5 * d, d));

        var a = _model.EncodeDropping(tokens, 1, [[5]]);
        var b = _model.EncodeDropping(swapped, 1, [[6]]);

        for (var c = 0; c < a.Length; c++)
        {
            Assert.Equal(a[c], b[c], 4);
        }

        Assert.NotEqual(a, _model.EncodeDropping(swapped, 1, [[5]]));
    }

    public void Dispose() => _model.Dispose();
}
