using Microsoft.Extensions.Options;
using StrapVit.Api.Observability;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Api.Serving;

/// <summary>
/// Owns the loaded model for the lifetime of the host. Loading happens in <see cref="StartAsync"/>, so a broken
/// package stops start-up with its one-line reason instead of failing the first request.
/// </summary>
public sealed partial class ModelRuntime(
    IOptions<ModelOptions> modelOptions,
    IOptions<InferenceOptions> inferenceOptions,
    IOptions<DefenseOptions> defenseOptions,
    IOptions<CertifyOptions> certifyOptions,
    OnnxSessionFactory sessionFactory,
    ServiceMetrics metrics,
    ILoggerFactory loggerFactory,
    ILogger<ModelRuntime> logger) : IHostedService, IDisposable
{
    private VitClassifier? _classifier;
    private DefenseSetup? _defense;
    private CertifySetup? _certify;
    private GradientRunner? _gradientRunner;

    /// <summary>The classifier; throws until start-up has loaded it.</summary>
    public VitClassifier Classifier => _classifier ?? throw new InvalidOperationException("The model is not loaded yet.");

    public bool IsReady => _classifier is not null;

    /// <summary>The patch defense in front of the classifier, or null when it could not be set up (see <see cref="DefenseUnavailable"/>).</summary>
    public IPatchDefense? Defense => _defense?.Defense;

    /// <summary>Why the defense is unavailable, or null.</summary>
    public string? DefenseUnavailable => _defense?.UnavailableReason ?? (_defense is null ? "The model is not loaded yet." : null);

    /// <summary>Certified mode (PatchCleanser), or null when it cannot run for this model (see <see cref="CertifyUnavailable"/>).</summary>
    public PatchCertifier? Certifier => _certify?.Certifier;

    /// <summary>Why certified mode is unavailable, or null.</summary>
    public string? CertifyUnavailable => _certify?.UnavailableReason ?? (_certify is null ? "The model is not loaded yet." : null);

    /// <summary>Folder for artefacts derived from the model (gradient graphs, calibration).</summary>
    public string CacheDirectory { get; } = ModelCache.Resolve(modelOptions.Value.CacheDirectory);

    /// <summary>Whether gradient graphs (attacks, saliency) are available for the loaded model.</summary>
    public GradientAvailability Gradients { get; private set; } =
        new(false, "The model is not loaded yet.");

    /// <summary>The gradient graphs' runner (attacks, saliency), or null when they could not be built (see <see cref="Gradients"/>).</summary>
    public GradientRunner? GradientRunner => _gradientRunner;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var started = TimeProvider.System.GetTimestamp();
        var package = ModelPackage.Load(modelOptions.Value.Path);
        _classifier = new VitClassifier(package, sessionFactory, inferenceOptions.Value);
        _defense = LoadDefense(package, _classifier);
        _certify = LoadCertify(package);
        Gradients = LoadGradients(package);
        metrics.SetModelInfo(package.Manifest.Name, _classifier.ExecutionProvider, package.Sha256);
        LogLoaded(logger, package.Manifest.Name, package.Directory, package.Sha256[..12], _classifier.ExecutionProvider,
            TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        // Certified mode may share the defense's split model: dispose it first.
        _certify?.Dispose();
        _defense?.Dispose();
        _gradientRunner?.Dispose();
        _classifier?.Dispose();
    }

    private DefenseSetup LoadDefense(ModelPackage package, VitClassifier classifier)
    {
        try
        {
            var setup = DefenseLoader.Create(package, classifier, sessionFactory, defenseOptions.Value, CacheDirectory);
            if (setup.Defense is { } defense)
            {
                LogDefenseReady(logger, defense.Variant, defenseOptions.Value.MinTokens, setup.Calibration!.Images);
            }
            else
            {
                LogDefenseUnavailable(logger, setup.UnavailableReason!);
            }

            return setup;
        }
        catch (ModelPackageException ex)
        {
            // A bad calibration file disables the defense; classification itself still works.
            LogDefenseUnavailable(logger, ex.Message);
            return new DefenseSetup(null, ex.Message, null);
        }
    }

    private CertifySetup LoadCertify(ModelPackage package)
    {
        var setup = CertifyLoader.Create(package, sessionFactory, certifyOptions.Value, CacheDirectory, _defense);
        if (setup.Certifier is { } certifier)
        {
            var masks = certifier.MasksFor(certifyOptions.Value.PatchSize);
            LogCertifyReady(logger, certifier.Classifier.MethodName, masks.PatchSize, masks.Count, masks.WindowRows, masks.WindowCols, certifier.Field.Rows.Size);
        }
        else
        {
            LogCertifyUnavailable(logger, setup.UnavailableReason!);
        }

        return setup;
    }

    private GradientAvailability LoadGradients(ModelPackage package)
    {
        var started = TimeProvider.System.GetTimestamp();
        try
        {
            var graphs = new GradientGraphs(CacheDirectory, loggerFactory.CreateLogger<GradientGraphs>());
            _gradientRunner = GradientRunner.Create(package, graphs, sessionFactory);
            LogGradientsReady(logger, _gradientRunner.ExecutionProvider, TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
            return new GradientAvailability(true, null);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Attacks and saliency need the gradient graphs; classification does not. Report and carry on.
            var reason = ex.Message.Split('\n')[0].Trim();
            LogGradientsUnavailable(logger, ex.GetType().Name, reason);
            return new GradientAvailability(false, reason);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Gradient graphs ready on {ExecutionProvider} in {ElapsedMs:F0} ms")]
    private static partial void LogGradientsReady(ILogger logger, string executionProvider, double elapsedMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Gradient graphs unavailable (attacks and saliency disabled): {ErrorType}: {Reason}")]
    private static partial void LogGradientsUnavailable(ILogger logger, string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Patch defense ready: {Variant} space, K={MinTokens}, calibrated on {Images} clean images")]
    private static partial void LogDefenseReady(ILogger logger, string variant, int minTokens, int images);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Certified mode ready: masking by {Method}; default {PatchSize}-pixel patches, {Masks} masks of {Rows}x{Cols} tokens; token receptive field {Field} pixels")]
    private static partial void LogCertifyReady(ILogger logger, string method, int patchSize, int masks, int rows, int cols, int field);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Certified mode unavailable: {Reason}")]
    private static partial void LogCertifyUnavailable(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Patch defense unavailable: {Reason}")]
    private static partial void LogDefenseUnavailable(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Model {ModelName} loaded from {ModelPath} (sha256 {ModelHash}) on {ExecutionProvider}, warmed up in {ElapsedMs:F0} ms")]
    private static partial void LogLoaded(ILogger logger, string modelName, string modelPath, string modelHash, string executionProvider, double elapsedMs);
}

/// <summary>Whether the gradient graphs (attacks, saliency) could be built for this model, and if not, why.</summary>
public sealed record GradientAvailability(bool Available, string? Error);
