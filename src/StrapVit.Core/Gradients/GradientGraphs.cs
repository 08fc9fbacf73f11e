using Google.Protobuf;
using Microsoft.Extensions.Logging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using Onnx;
using StrapVit.Core.Onnx;

namespace StrapVit.Core.Gradients;

/// <summary>
/// Serialized gradient models for a package, cached on disk under
/// <c>{sha256 of model.onnx}.{objective}.v{builder version}.onnx</c> so the (seconds-long for ViT-B/16) build runs
/// once per model and builder. A missing or read-only cache folder is not an error: the graph is then built in
/// memory on every call. Thread-safe.
/// </summary>
public sealed partial class GradientGraphs(string? cacheDirectory, ILogger<GradientGraphs> logger)
{
    private readonly GradientGraphBuilder builder = new();

    /// <summary>Where graphs are cached; null disables the disk cache.</summary>
    public string? CacheDirectory { get; } = string.IsNullOrWhiteSpace(cacheDirectory) ? null : Path.GetFullPath(cacheDirectory);

    /// <summary>File name of a cached graph: the model hash, the objective and the builder version.</summary>
    public static string CacheFileName(string modelSha256, GradientObjective objective) =>
        $"{modelSha256}.{objective.ToCliName()}.v{GradientGraphBuilder.Version}.onnx";

    /// <summary>The gradient model for <paramref name="package"/> (normalization baked in), from the cache or freshly built.</summary>
    /// <exception cref="GradientGraphException">The package's graph cannot be differentiated.</exception>
    public byte[] Get(ModelPackage package, GradientObjective objective)
    {
        ArgumentNullException.ThrowIfNull(package);
        var path = CacheDirectory is null ? null : Path.Combine(CacheDirectory, CacheFileName(package.Sha256, objective));
        if (path is not null && TryRead(path) is { } cached)
        {
            LogCacheHit(logger, objective.ToCliName(), package.Manifest.Name, path);
            return cached;
        }

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var bytes = Build(package, objective);
        LogBuilt(logger, objective.ToCliName(), package.Manifest.Name, bytes.Length, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        if (path is not null) TryWrite(path, bytes);
        return bytes;
    }

    /// <summary>
    /// The gradient model for <paramref name="package"/> with its weights pointing at <paramref name="weights"/> instead
    /// of carrying them: a graph of a few hundred kilobytes, cached as <see cref="SharedCacheFileName"/>, that opens in
    /// seconds where the self-contained one takes a full build or a read of twice the model's size.
    /// </summary>
    /// <exception cref="GradientGraphException">The package's graph cannot be differentiated.</exception>
    public ModelProto Get(ModelPackage package, GradientObjective objective, SharedWeights weights)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentNullException.ThrowIfNull(weights);
        var path = CacheDirectory is null ? null : Path.Combine(CacheDirectory, SharedCacheFileName(package.Sha256, objective));
        if (path is not null && TryRead(path) is { } cached)
        {
            try
            {
                var model = ModelProto.Parser.ParseFrom(cached);
                if (weights.Covers(model))
                {
                    LogCacheHit(logger, objective.ToCliName(), package.Manifest.Name, path);
                    return model;
                }
            }
            catch (InvalidProtocolBufferException)
            {
                // A damaged cache entry is rebuilt below.
            }

            LogCacheStale(logger, path);
        }

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var built = builder.Build(ForwardGraph.LoadNormalized(package), objective);
        weights.Detach(built);
        var bytes = built.ToByteArray();
        LogBuilt(logger, objective.ToCliName(), package.Manifest.Name, bytes.Length, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        if (path is not null) TryWrite(path, bytes);
        return built;
    }

    /// <summary>File name of a cached graph over shared weights (see <see cref="SharedWeights"/>).</summary>
    public static string SharedCacheFileName(string modelSha256, GradientObjective objective) =>
        $"{modelSha256}.{objective.ToCliName()}.v{GradientGraphBuilder.Version}.shared-w{SharedWeights.Version}.onnx";

    /// <summary>Builds without touching any cache.</summary>
    public byte[] Build(ModelPackage package, GradientObjective objective)
    {
        ArgumentNullException.ThrowIfNull(package);
        return builder.Build(ForwardGraph.LoadNormalized(package), objective).ToByteArray();
    }

    private byte[]? TryRead(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllBytes(path) : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogCacheUnreadable(logger, path, ex.Message);
            return null;
        }
    }

    private void TryWrite(string path, byte[] bytes)
    {
        // Write to a unique temp file and rename, so a concurrent reader never sees half a model.
        var temp = $"{path}.{Guid.NewGuid():N}.tmp";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(temp, bytes);
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogCacheUnwritable(logger, path, ex.Message);
            try
            {
                if (File.Exists(temp)) File.Delete(temp);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
                // The folder is not writable; there is nothing left to clean.
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Gradient graph ({Objective}) for {Model} loaded from cache {Path}")]
    private static partial void LogCacheHit(ILogger logger, string objective, string model, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "Gradient graph ({Objective}) for {Model} built: {Bytes} bytes in {ElapsedMs:F0} ms")]
    private static partial void LogBuilt(ILogger logger, string objective, string model, int bytes, double elapsedMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Gradient graph cache {Path} does not fit the shared weights, rebuilding")]
    private static partial void LogCacheStale(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Gradient graph cache {Path} is not readable, rebuilding: {Reason}")]
    private static partial void LogCacheUnreadable(ILogger logger, string path, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Gradient graph cache {Path} is not writable, keeping the graph in memory only: {Reason}")]
    private static partial void LogCacheUnwritable(ILogger logger, string path, string reason);
}
