using StrapVit.Core.Numerics;

namespace StrapVit.Core.Attacks;

/// <summary>
/// What one attack call is after, given per call (never stored on the attack, which is shared between requests):
/// untargeted (any class but the label; the label defaults to the model's own clean prediction, which avoids
/// label leaking) or targeted (reach the target class).
/// </summary>
public sealed record AttackGoal
{
    private AttackGoal(bool targeted, IReadOnlyList<int>? classes)
    {
        IsTargeted = targeted;
        Classes = classes;
    }

    public bool IsTargeted { get; }

    /// <summary>Per sample: the true label (untargeted; null = the clean prediction) or the target class (targeted).</summary>
    public IReadOnlyList<int>? Classes { get; }

    /// <summary>Move away from <paramref name="labels"/> (one per sample), or from the clean prediction when null.</summary>
    public static AttackGoal Untargeted(IReadOnlyList<int>? labels = null) => new(false, labels);

    /// <summary>Reach <paramref name="targets"/> (one per sample).</summary>
    public static AttackGoal Targeted(IReadOnlyList<int> targets) =>
        new(true, targets ?? throw new ArgumentNullException(nameof(targets)));

    /// <summary>The per-call criterion, once the clean logits <c>[N, K]</c> are known.</summary>
    public Criterion Resolve(ReadOnlySpan<float> cleanLogits, int batch, int classCount)
    {
        var classes = new long[batch];
        if (Classes is not null && Classes.Count != batch)
        {
            throw new ArgumentException($"The goal names {Classes.Count} classes for a batch of {batch}.");
        }

        for (var i = 0; i < batch; i++)
        {
            var c = Classes?[i] ?? Probabilities.ArgMax(cleanLogits.Slice(i * classCount, classCount));
            if (c < 0 || c >= classCount)
            {
                throw new ArgumentOutOfRangeException(nameof(cleanLogits), c, $"Class indices must be in [0, {classCount}).");
            }

            classes[i] = c;
        }

        return new Criterion(IsTargeted, classes, classCount);
    }
}

/// <summary>
/// A resolved goal: for each sample the class the loss is taken against (label or target) and the success test.
/// Untargeted attacks ascend the cross-entropy of the label; targeted ones descend that of the target.
/// </summary>
public sealed class Criterion(bool targeted, long[] classes, int classCount)
{
    public bool Targeted { get; } = targeted;

    /// <summary>Per sample: the label (untargeted) or the target (targeted), as the gradient graph's int64 labels.</summary>
    public IReadOnlyList<long> Classes { get; } = classes;

    /// <summary>+1 to ascend the loss (untargeted), -1 to descend it (targeted).</summary>
    public float LossSign => Targeted ? -1f : 1f;

    /// <summary>The loss labels for the samples listed in <paramref name="rows"/> (row r is sample rows[r]).</summary>
    public long[] LabelsFor(IReadOnlyList<int> rows) => [.. rows.Select(r => Classes[r])];

    /// <summary>Whether <paramref name="logits"/> (one row) count as a success for <paramref name="sample"/>.</summary>
    public bool IsAdversarial(int sample, ReadOnlySpan<float> logits)
    {
        var predicted = Probabilities.ArgMax(logits[..classCount]);
        return Targeted ? predicted == Classes[sample] : predicted != Classes[sample];
    }
}
