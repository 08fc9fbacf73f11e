using Microsoft.Extensions.Logging;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Onnx;

namespace StrapVit.Core.Runtime;

/// <summary>
/// The one way the service, the CLI and the benchmarks set a model up: parse the forward graph once, hold its weights
/// once (<see cref="SharedWeights"/>), and open the classifier, the token split, the defense and certified mode over
/// them. Gradient graphs come later, from <see cref="ModelRuntime.LoadGradients"/>, because building them takes
/// seconds to minutes and classification does not wait for them.
/// </summary>
public sealed partial class ModelRuntimeFactory(ILoggerFactory loggerFactory)
{
    private readonly ILogger logger = loggerFactory.CreateLogger<ModelRuntimeFactory>();

    /// <summary>Loads the classification side of <paramref name="package"/> (classifier warmed up, defense, certified mode).</summary>
    /// <exception cref="ModelPackageException">The graph cannot be loaded or disagrees with the manifest.</exception>
    public ModelRuntime Create(ModelPackage package, ModelRuntimeOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentNullException.ThrowIfNull(options);
        var started = TimeProvider.System.GetTimestamp();
        var cacheDirectory = ModelCache.Resolve(options.CacheDirectory);
        var forward = ForwardGraph.LoadNormalized(package);
        cancellationToken.ThrowIfCancellationRequested();
        // Shared weights are host memory, which only CPU sessions read in place: on CUDA each session holds its own.
        var weights = options.Inference.ShareWeights && OnnxSessionFactory.Probe(options.Inference) == OnnxSessionFactory.Cpu
            ? SharedWeights.TryCreate(forward, package.Sha256, [cacheDirectory, Path.Combine(Path.GetTempPath(), "strapvit")], logger)
            : null;
        var sessions = new OnnxSessionFactory(options.Inference, loggerFactory.CreateLogger<OnnxSessionFactory>(), weights);
        var runtime = new ModelRuntime(package, sessions, cacheDirectory, loggerFactory);
        try
        {
            runtime.TokenModel = SplitIfWanted(package, forward, sessions, options, out var splitError);
            // The classifier goes last: over shared weights it rewrites the forward graph in place.
            runtime.Classifier = new VitClassifier(package, forward, sessions, options.Inference);
            forward = null;
            cancellationToken.ThrowIfCancellationRequested();
            if (options.Defense is { } defense)
            {
                runtime.Defense = LoadDefense(package, runtime, defense, splitError);
            }

            if (options.Certify is { } certify)
            {
                runtime.Certify = CertifyLoader.Create(package, sessions, certify, cacheDirectory, runtime.Defense, runtime.TokenModel);
            }
        }
        catch
        {
            runtime.Dispose();
            throw;
        }

        ReleaseLoadMemory();
        LogLoaded(logger, package.Manifest.Name, runtime.ExecutionProvider, weights?.Count ?? 0, (weights?.Bytes ?? 0) / (1024.0 * 1024.0),
            TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
        return runtime;
    }

    /// <summary>
    /// Start-up parses the model a few times over (hundreds of megabytes for a large ViT) and keeps none of it; a
    /// compacting collection hands the managed part back to the OS, and glibc's <c>malloc_trim</c> the native part
    /// (ONNX Runtime's graph optimizers and the gradient builder's probe sessions free it, but glibc keeps freed
    /// heap pages mapped), so the process holds what the sessions need.
    /// </summary>
    internal static void ReleaseLoadMemory()
    {
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            _ = MallocTrim(0);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // Not glibc (musl has no malloc_trim): freed native pages are returned on the allocator's own terms.
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    private TokenSpaceModel? SplitIfWanted(ModelPackage package, global::Onnx.ModelProto forward, OnnxSessionFactory sessions, ModelRuntimeOptions options, out string? error)
    {
        error = null;
        var wanted = options.TokenSplit || options.Certify is not null
            || (options.Defense is { } d && d.Resolved().Variant != DefenseVariant.Pixel);
        if (package.Manifest.Tokens is null || !wanted) return null;
        try
        {
            return new TokenSpaceModel(package, forward, sessions);
        }
        catch (ModelPackageException ex)
        {
            // The defense and certified mode report this reason themselves; classification does not need the split.
            error = ex.Message;
            LogSplitUnavailable(logger, ex.Message);
            return null;
        }
    }

    private static DefenseSetup LoadDefense(ModelPackage package, ModelRuntime runtime, DefenseOptions options, string? splitError)
    {
        try
        {
            return DefenseLoader.Create(package, runtime.Classifier, runtime.Sessions, options, runtime.CacheDirectory, runtime.TokenModel);
        }
        catch (ModelPackageException ex)
        {
            // A bad calibration file (or a model that cannot be split) disables the defense; classification still works.
            return new DefenseSetup(null, splitError ?? ex.Message, null);
        }
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Model {ModelName} ready on {ExecutionProvider}: {SharedCount} weights ({SharedMiB:F1} MiB) held once for all sessions; loaded in {ElapsedMs:F0} ms")]
    private static partial void LogLoaded(ILogger logger, string modelName, string executionProvider, int sharedCount, double sharedMiB, double elapsedMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The model cannot be split at its tokens tensor: {Reason}")]
    private static partial void LogSplitUnavailable(ILogger logger, string reason);
}
