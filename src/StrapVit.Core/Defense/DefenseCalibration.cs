using System.Text.Json;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Core.Defense;

/// <summary>
/// The clean reference the defense compares against, computed once per model from clean images and stored as
/// <see cref="FileName"/> beside the package (or in the cache folder under the model's hash).
/// Token part (needs a tokens tensor): per patch-token position, the mean channel distribution q_t =
/// mean softmax(z_t / T), the mean token c_t, the mean L2 norm, and a quantile of the clean JSD scores.
/// Pixel part (any model): per patch position, the mean pixel histogram, the mean pixel value and a score quantile.
/// </summary>
public sealed record DefenseCalibration
{
    public const string FileName = "defense-calibration.json";

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public required string ModelSha256 { get; init; }

    public required int Images { get; init; }

    /// <summary>Quantile of the clean scores stored as each position's threshold.</summary>
    public required double Quantile { get; init; }

    public TokenReference? Tokens { get; init; }

    public required PixelReference Pixels { get; init; }

    /// <summary>The masking check's margin for a clean replacement rate, if it was calibrated (<see cref="CheckMargin"/>).</summary>
    public CheckCalibration? Check { get; init; }

    public void Save(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, JsonSerializer.Serialize(this, Json));
    }

    /// <exception cref="ModelPackageException">The file is unreadable or belongs to another model.</exception>
    public static DefenseCalibration Load(string path, ModelPackage package)
    {
        DefenseCalibration? calibration;
        try
        {
            calibration = JsonSerializer.Deserialize<DefenseCalibration>(File.ReadAllText(path), Json);
        }
        catch (JsonException ex)
        {
            throw new ModelPackageException($"Defense calibration '{path}' is not valid: {ex.Message}", ex);
        }

        if (calibration is null || calibration.ModelSha256 != package.Sha256)
        {
            throw new ModelPackageException($"Defense calibration '{path}' was made for another model.onnx (hash mismatch); run the calibrate verb again.");
        }

        return calibration;
    }

    /// <summary>Where the calibration of <paramref name="package"/> is looked for, in order.</summary>
    public static IEnumerable<string> CandidatePaths(ModelPackage package, string? cacheDirectory)
    {
        yield return Path.Combine(package.Directory, FileName);
        if (!string.IsNullOrWhiteSpace(cacheDirectory))
        {
            yield return Path.Combine(cacheDirectory, CacheFileName(package));
        }
    }

    /// <summary>File name in the shared cache folder, keyed by the model hash.</summary>
    public static string CacheFileName(ModelPackage package) => $"{package.Sha256}.{FileName}";

    /// <summary>Computes the reference from clean images (all of the model's input size and channels).</summary>
    public static DefenseCalibration Compute(
        ModelPackage package, TokenSpaceModel? tokens, IReadOnlyList<ImageTensor> images, double temperature, int histogramBins, double quantile,
        BankSettings? bank = null)
    {
        if (images.Count < 10)
        {
            throw new ArgumentException("At least 10 clean images are needed to calibrate.", nameof(images));
        }

        return new DefenseCalibration
        {
            ModelSha256 = package.Sha256,
            Images = images.Count,
            Quantile = quantile,
            Tokens = tokens is null ? null : TokenReference.Compute(tokens, images, temperature, quantile, bank ?? new BankSettings()),
            Pixels = PixelReference.Compute(package.Manifest, images, histogramBins, quantile),
        };
    }

    internal static float QuantileOf(List<double> values, double q)
    {
        values.Sort();
        var i = (int)Math.Clamp(Math.Ceiling(q * values.Count) - 1, 0, values.Count - 1);
        return (float)values[i];
    }
}

/// <summary>
/// The masking check's second-round margin (<see cref="DefenseOptions.VerifyMargin"/>) at which the check, with the
/// defense settings in <see cref="Scope"/>, replaced at most <see cref="CleanRate"/> of the answers on <see cref="Images"/>
/// clean images that are not the bank's own (their tokens would score low, so the check would disagree less there).
/// </summary>
/// <param name="Margin">The margin, in logits.</param>
/// <param name="CleanRate">Share of clean answers the check may replace.</param>
/// <param name="Images">Clean images it was counted on.</param>
/// <param name="Replaced">Answers the check replaced on them at that margin.</param>
/// <param name="Scope">The settings it was calibrated under; the service applies the margin only under the same.</param>
public sealed record CheckCalibration(double Margin, double CleanRate, int Images, int Replaced, CheckScope Scope)
{
    /// <summary>Whether the margin holds for <paramref name="options"/> (resolved): they are the settings it was counted under.</summary>
    public bool AppliesTo(DefenseOptions options) => Margin >= 0 && Scope == CheckScope.Of(options);
}

/// <summary>The defense settings that decide how often the masking check replaces an answer.</summary>
public sealed record CheckScope(
    string Score, int WindowPixels, bool WindowOnlyOverThreshold, int MinTokens, double ThresholdScale, string Neutralization, int BankChoices,
    int VerifyWindows, int VerifyPartners, int VerifyGroup, int VerifyWindowPixels, double WindowGrowRatio = 0, string VerifyRule = "Unanimous", bool VerifyComplete = false,
    double WindowMinRatioSum = 0, bool VerifyCompleteUnflagged = false)
{
    public static CheckScope Of(DefenseOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        return new(o.Score.ToString(), o.WindowPixels, o.WindowOnlyOverThreshold, o.MinTokens, o.ThresholdScale, o.Neutralization.ToString(), o.BankChoices,
            o.VerifyWindows, o.VerifyPartners, o.VerifyGroup, o.VerifyWindowPixels, o.WindowGrowRatio, o.VerifyRule.ToString(), o.VerifyComplete, o.WindowMinRatioSum,
            o.VerifyComplete && o.VerifyCompleteUnflagged);
    }
}
