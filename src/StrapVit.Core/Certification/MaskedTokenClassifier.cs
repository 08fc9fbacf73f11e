using StrapVit.Core.Inference;

namespace StrapVit.Core.Certification;

/// <summary>How masked tokens leave the encoder's input.</summary>
public enum MaskingMethod
{
    /// <summary>Removed from the sequence: no query attends to them, exactly as an attention key mask.</summary>
    Drop,

    /// <summary>Replaced by the clean mean token of their position (the defense calibration's centre).</summary>
    Replace,
}

/// <summary>
/// Classifies masked views of an image in token space. Preferred method: <see cref="MaskingMethod.Drop"/>. The tokens
/// tensor is taken after the position embedding and the encoder reshapes by Shape/Gather, so a shorter sequence
/// (class token kept at index 0) is the same computation with the hidden tokens removed from every attention's keys
/// and from any mean pooling: exact masking with no graph surgery, and nothing the patch wrote can reach the head.
/// An encoder that insists on its full length (a fixed Reshape) is detected at load by a probe with one token fewer,
/// and then hidden tokens are replaced by a constant (the clean mean token of their position), which is just as
/// sound (the value no longer depends on the pixels) but leaves the model an out-of-distribution token to read.
/// Views with equal kept-token counts run as one ONNX Runtime batch.
/// </summary>
public sealed class MaskedTokenClassifier
{
    private readonly float[][]? _replacement;

    /// <param name="model">The split model.</param>
    /// <param name="replacement">Per-position tokens <c>[T][D]</c> for <see cref="MaskingMethod.Replace"/>; null allows only dropping.</param>
    /// <param name="batchSize">Most views per ONNX Runtime run.</param>
    /// <param name="choice">Auto (drop when the encoder allows it), or a forced method.</param>
    /// <exception cref="CertificationException">The chosen method cannot run: no shorter sequence and no replacement.</exception>
    public MaskedTokenClassifier(TokenSpaceModel model, float[][]? replacement, int batchSize = 256, MaskingChoice choice = MaskingChoice.Auto)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        Model = model;
        BatchSize = batchSize;
        Classes = model.Manifest.Labels.Count;
        var usable = replacement is not null && replacement.Length == model.TokenCount && replacement.All(r => r.Length == model.Dim);
        if (choice != MaskingChoice.Replace && model.AcceptsShorterSequences)
        {
            Method = MaskingMethod.Drop;
        }
        else if (choice != MaskingChoice.Drop && usable)
        {
            Method = MaskingMethod.Replace;
            _replacement = replacement;
        }
        else
        {
            throw new CertificationException(choice switch
            {
                MaskingChoice.Drop => "Certify:Masking is Drop but the encoder does not accept a shorter token sequence.",
                MaskingChoice.Replace => "Certify:Masking is Replace but there is no clean token reference (defense calibration) for this model.",
                _ => "The encoder does not accept a shorter token sequence and there is no clean token reference (defense calibration) to replace masked tokens with.",
            });
        }
    }

    public TokenSpaceModel Model { get; }

    public MaskingMethod Method { get; }

    /// <summary>The per-position tokens masked tokens are replaced by (<see cref="MaskingMethod.Replace"/>), else null.</summary>
    public IReadOnlyList<float[]>? Replacement => _replacement;

    public int BatchSize { get; }

    public int Classes { get; }

    /// <summary>"drop" or "replace", as the report says it.</summary>
    public string MethodName => Method == MaskingMethod.Drop ? "drop" : "replace";

    /// <summary>
    /// Token positions (class token included) the encoder reads for a view hiding <paramref name="hidden"/>
    /// (patch-grid indices), in sequence order.
    /// </summary>
    public int[] Kept(IReadOnlyCollection<int> hidden)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        var first = Model.FirstPatchToken;
        var set = hidden as ISet<int> ?? hidden.ToHashSet();
        var kept = new List<int>(Model.TokenCount);
        for (var k = 0; k < first; k++)
        {
            kept.Add(k);
        }

        for (var p = 0; p < Model.TokenCount - first; p++)
        {
            if (!set.Contains(p))
            {
                kept.Add(p + first);
            }
        }

        return kept.ToArray();
    }

    /// <summary>Logits <c>[V, K]</c> of the views of one image's tokens <c>[T·D]</c>, view v hiding the patch-grid indices <c>hidden[v]</c>.</summary>
    public float[] Logits(ReadOnlySpan<float> tokens, IReadOnlyList<IReadOnlyCollection<int>> hidden, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        int t = Model.TokenCount, d = Model.Dim;
        if (tokens.Length != t * d)
        {
            throw new ArgumentException($"Expected {t}x{d} tokens of one image, got {tokens.Length} values.", nameof(tokens));
        }

        // Every view reads the same image (source 0); positions in the sequence are patch-grid indices past the class token.
        var positions = hidden.Select(h => (IReadOnlyCollection<int>)h.Select(p => p + Model.FirstPatchToken).ToHashSet()).ToArray();
        return Model.EncodeHiding(tokens, new int[hidden.Count], positions, Method == MaskingMethod.Drop ? null : _replacement, BatchSize, cancellationToken);
    }
}
