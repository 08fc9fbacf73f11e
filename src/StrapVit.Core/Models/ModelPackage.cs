using System.Security.Cryptography;
using System.Text.Json;

namespace StrapVit.Core.Models;

/// <summary>
/// A loaded, validated model package: a directory with <c>model.onnx</c> and <c>model.json</c>.
/// Validation covers the manifest only; whether the ONNX graph matches it is checked when the session is created.
/// </summary>
public sealed class ModelPackage
{
    public const string OnnxFileName = "model.onnx";
    public const string ManifestFileName = "model.json";

    /// <summary>Folder of the embedded default package, relative to the application's base directory.</summary>
    public const string DefaultRelativePath = "models/fashion-vit-tiny";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNameCaseInsensitive = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    private readonly DateTime onnxWriteTime;
    private readonly long onnxLength;

    private ModelPackage(string directory, ModelManifest manifest)
    {
        Directory = directory;
        Manifest = manifest;
        var info = new FileInfo(OnnxPath);
        (onnxWriteTime, onnxLength) = (info.LastWriteTimeUtc, info.Length);
        // Hashed on first use, off the start-up path: a service checks the manifest and listens before it loads.
        sha256 = new Lazy<string>(() =>
        {
            using var stream = File.OpenRead(OnnxPath);
            return Convert.ToHexStringLower(SHA256.HashData(stream));
        });
    }

    private readonly Lazy<string> sha256;

    public string Directory { get; }

    public ModelManifest Manifest { get; }

    /// <summary>
    /// The raw forward graph, as shipped (normalization not yet baked in), read from disk on each call: a package does
    /// not keep the model's bytes alive (hundreds of megabytes for a large ViT) once its sessions hold the weights.
    /// </summary>
    /// <exception cref="ModelPackageException">model.onnx changed or vanished since the package was loaded.</exception>
    public byte[] ReadOnnx()
    {
        try
        {
            var info = new FileInfo(OnnxPath);
            if (info.Length != onnxLength || info.LastWriteTimeUtc != onnxWriteTime)
            {
                throw new ModelPackageException($"{OnnxPath} changed since the package was loaded (sha256 {Sha256[..12]}); restart to load the new model.");
            }

            return File.ReadAllBytes(OnnxPath);
        }
        catch (IOException ex)
        {
            throw new ModelPackageException($"{OnnxPath} cannot be read: {ex.Message}", ex);
        }
    }

    /// <summary>Lower-case hex SHA-256 of <c>model.onnx</c>: the key for anything derived from the model.</summary>
    public string Sha256 => sha256.Value;

    public string OnnxPath => Path.Combine(Directory, OnnxFileName);

    /// <summary>The embedded default package that ships with the application.</summary>
    public static string DefaultDirectory => Path.Combine(AppContext.BaseDirectory, DefaultRelativePath);

    /// <summary>Loads the package at <paramref name="directory"/>, or the embedded default when it is null or empty.</summary>
    /// <exception cref="ModelPackageException">The package is missing, unreadable or inconsistent.</exception>
    public static ModelPackage Load(string? directory)
    {
        var dir = string.IsNullOrWhiteSpace(directory) ? DefaultDirectory : Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir))
        {
            throw new ModelPackageException($"Model package directory '{dir}' does not exist.");
        }

        var manifestPath = Path.Combine(dir, ManifestFileName);
        var onnxPath = Path.Combine(dir, OnnxFileName);
        if (!File.Exists(manifestPath))
        {
            throw new ModelPackageException($"Model package '{dir}' has no {ManifestFileName}.");
        }

        if (!File.Exists(onnxPath))
        {
            throw new ModelPackageException($"Model package '{dir}' has no {OnnxFileName}.");
        }

        ModelManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<ModelManifest>(File.ReadAllText(manifestPath), JsonOptions);
        }
        catch (JsonException ex)
        {
            throw new ModelPackageException($"{ManifestFileName} in '{dir}' is not valid: {ex.Message}", ex);
        }

        if (manifest is null)
        {
            throw new ModelPackageException($"{ManifestFileName} in '{dir}' is empty.");
        }

        Validate(manifest, dir);
        return new ModelPackage(dir, manifest);
    }

    private static void Validate(ModelManifest m, string dir)
    {
        var problem = FindProblem(m);
        if (problem is not null)
        {
            throw new ModelPackageException($"{ManifestFileName} in '{dir}': {problem}");
        }
    }

    internal static string? FindProblem(ModelManifest m)
    {
        var input = m.Input;
        if (string.IsNullOrWhiteSpace(m.Name)) return "'name' is empty.";
        if (string.IsNullOrWhiteSpace(input.Name)) return "'input.name' is empty.";
        if (string.IsNullOrWhiteSpace(m.Output)) return "'output' is empty.";
        if (input.Channels is not (1 or 3)) return $"'input.channels' must be 1 or 3, not {input.Channels}.";
        if (input.Height is < 1 or > 4096 || input.Width is < 1 or > 4096)
        {
            return $"'input.height' x 'input.width' ({input.Height}x{input.Width}) must each be between 1 and 4096.";
        }

        if (input.Mean.Count != input.Channels) return $"'input.mean' has {input.Mean.Count} values for {input.Channels} channel(s).";
        if (input.Std.Count != input.Channels) return $"'input.std' has {input.Std.Count} values for {input.Channels} channel(s).";
        if (input.Std.Any(s => !(s > 0) || !float.IsFinite(s))) return "'input.std' values must be positive and finite.";
        if (input.Mean.Any(v => !float.IsFinite(v))) return "'input.mean' values must be finite.";
        if (m.Labels.Count < 2) return "'labels' needs at least 2 entries.";
        if (m.Labels.Distinct(StringComparer.Ordinal).Count() != m.Labels.Count) return "'labels' has duplicates.";
        if (m.PatchSize < 1 || input.Height % m.PatchSize != 0 || input.Width % m.PatchSize != 0)
        {
            return $"'patchSize' {m.PatchSize} must divide the input size {input.Height}x{input.Width}.";
        }

        if (m.Tokens is not null && string.IsNullOrWhiteSpace(m.Tokens.Tensor)) return "'tokens.tensor' is empty.";
        return null;
    }
}
