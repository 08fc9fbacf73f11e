using Microsoft.Extensions.Logging;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Core.Runtime;

/// <summary>
/// A loaded model and everything that runs it: the sessions' factory and the weights they share, the classifier,
/// the token split, the defense and certified mode, and (once <see cref="LoadGradients"/> has run) the gradient
/// graphs. Built by <see cref="ModelRuntimeFactory"/>; every member is thread-safe. Dispose it once, when no run is in
/// flight: the sessions first, then the weights they read.
/// </summary>
public sealed partial class ModelRuntime : IDisposable
{
    private readonly Lock gradientLock = new();
    private readonly ILoggerFactory loggerFactory;
    private volatile GradientRunner? gradients;
    private VitClassifier? classifier;

    internal ModelRuntime(ModelPackage package, OnnxSessionFactory sessions, string cacheDirectory, ILoggerFactory loggerFactory)
    {
        Package = package;
        Sessions = sessions;
        CacheDirectory = cacheDirectory;
        this.loggerFactory = loggerFactory;
    }

    public ModelPackage Package { get; }

    /// <summary>The factory every session of this model comes from, over its shared weights (for extra graphs, e.g. <see cref="TokenGradients"/>).</summary>
    public OnnxSessionFactory Sessions { get; }

    /// <summary>The weights all sessions share, or null when each embeds its own (sharing off, or no writable folder).</summary>
    public SharedWeights? Weights => Sessions.Weights;

    /// <summary>Folder of derived artefacts: shared weights, gradient graphs, calibration.</summary>
    public string CacheDirectory { get; }

    public VitClassifier Classifier
    {
        get => classifier ?? throw new InvalidOperationException("The classifier is not loaded.");
        internal set => classifier = value;
    }

    /// <summary>The execution provider the classifier really runs on.</summary>
    public string ExecutionProvider => Classifier.ExecutionProvider;

    /// <summary>The model split at its tokens tensor, shared by the defense and certified mode; null when not loaded or not splittable.</summary>
    public TokenSpaceModel? TokenModel { get; internal set; }

    /// <summary>The defense, or why it is unavailable; null when the options asked for none.</summary>
    public DefenseSetup? Defense { get; internal set; }

    /// <summary>Certified mode, or why it is unavailable; null when the options asked for none.</summary>
    public CertifySetup? Certify { get; internal set; }

    /// <summary>The gradient graphs' runner once <see cref="LoadGradients"/> succeeded, else null.</summary>
    public GradientRunner? Gradients => gradients;

    /// <summary>
    /// Builds the gradient graphs (or reads them from the cache) and opens their sessions over the shared weights.
    /// Idempotent and thread-safe: concurrent callers wait for one load.
    /// </summary>
    /// <exception cref="GradientGraphException">The model cannot be differentiated.</exception>
    public GradientRunner LoadGradients(CancellationToken cancellationToken = default)
    {
        if (gradients is { } loaded) return loaded;
        lock (gradientLock)
        {
            if (gradients is { } raced) return raced;
            cancellationToken.ThrowIfCancellationRequested();
            var started = TimeProvider.System.GetTimestamp();
            var graphs = new GradientGraphs(CacheDirectory, loggerFactory.CreateLogger<GradientGraphs>());
            var runner = GradientRunner.Create(Package, graphs, Sessions);
            ModelRuntimeFactory.ReleaseLoadMemory();
            LogGradientsReady(loggerFactory.CreateLogger<ModelRuntime>(), runner.ExecutionProvider, TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
            return gradients = runner;
        }
    }

    public void Dispose()
    {
        // Certified mode and the defense may share the split model: they go first, then the sessions, then the weights.
        Certify?.Dispose();
        Defense?.Dispose();
        TokenModel?.Dispose();
        gradients?.Dispose();
        classifier?.Dispose();
        Weights?.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Gradient graphs ready on {ExecutionProvider} in {ElapsedMs:F0} ms")]
    private static partial void LogGradientsReady(ILogger logger, string executionProvider, double elapsedMs);
}
