using Microsoft.Extensions.Options;
using StrapVit.Api.Errors;
using StrapVit.Api.Observability;
using StrapVit.Core.Certification;
using StrapVit.Core.Defense;
using StrapVit.Core.Gradients;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Core.Runtime;
using LoadedModel = StrapVit.Core.Runtime.ModelRuntime;

namespace StrapVit.Api.Serving;

/// <summary>
/// The host's handle on the Core <see cref="LoadedModel"/>. Start-up only reads and checks the package, so a broken
/// manifest still stops the service with its one-line reason, and Kestrel listens at once; the model then loads in
/// the background: classification first (then the service is ready), the gradient graphs after it. Until a part is
/// loaded, the members that need it answer 503 with <c>Retry-After</c>.
/// </summary>
public sealed partial class ModelRuntime(
    IOptions<ModelOptions> modelOptions,
    IOptions<InferenceOptions> inferenceOptions,
    IOptions<DefenseOptions> defenseOptions,
    IOptions<CertifyOptions> certifyOptions,
    ModelRuntimeFactory factory,
    ModelLoadGate gate,
    IHostApplicationLifetime lifetime,
    ServiceMetrics metrics,
    ILogger<ModelRuntime> logger) : IHostedService, IDisposable
{
    /// <summary>The <c>Retry-After</c> of an answer that needs classification while it loads.</summary>
    public const int LoadingRetryAfterSeconds = 2;

    private const string Loading = "loading";

    private readonly CancellationTokenSource stopping = new();
    private readonly TaskCompletionSource classificationLoaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile LoadedModel? loaded;
    private ModelPackage? package;
    private Task loading = Task.CompletedTask;
    private bool disposed;

    /// <summary>The package being served; known once start-up has checked it.</summary>
    public ModelPackage Package => package ?? throw new InvalidOperationException("The package is read at start-up.");

    /// <summary>Whether classification is loaded and warmed up (readiness).</summary>
    public bool IsReady => loaded is not null;

    /// <summary>Why the model could not be loaded at all (the service then stops), or null.</summary>
    public string? FatalError { get; private set; }

    /// <summary>Completes when background loading has ended, gradient graphs included, whether or not every part loaded.</summary>
    public Task Loaded => loading;

    /// <summary>Completes when classification has loaded (the service is ready) or failed to.</summary>
    public Task ClassificationLoaded => classificationLoaded.Task;

    /// <summary>The classifier; 503 until it is loaded.</summary>
    public VitClassifier Classifier => Model.Classifier;

    /// <summary>The execution provider classification runs on, or null while loading.</summary>
    public string? ExecutionProvider => loaded?.ExecutionProvider;

    /// <summary>The patch defense in front of the classifier, or null when it could not be set up (see <see cref="DefenseUnavailable"/>); 503 while loading.</summary>
    public IPatchDefense? Defense => Model.Defense?.Defense;

    /// <summary>Why the defense is unavailable, or null.</summary>
    public string? DefenseUnavailable => loaded is { } m ? m.Defense?.UnavailableReason : "The model is still loading.";

    /// <summary>Certified mode (PatchCleanser), or null when it cannot run for this model (see <see cref="CertifyUnavailable"/>); 503 while loading.</summary>
    public PatchCertifier? Certifier => Model.Certify?.Certifier;

    /// <summary>Why certified mode is unavailable, or null.</summary>
    public string? CertifyUnavailable => loaded is { } m ? m.Certify?.UnavailableReason : "The model is still loading.";

    /// <summary>Whether gradient graphs (attacks, saliency) are available, and if not, why.</summary>
    public GradientAvailability Gradients { get; private set; } = new(false, "The gradient graphs are still loading.");

    /// <summary>Whether the gradient graphs are still being built or read (as opposed to unavailable for good).</summary>
    public bool GradientsLoading { get; private set; } = true;

    /// <summary>The gradient graphs' runner, or null while loading or when they could not be built (see <see cref="Gradients"/>).</summary>
    public GradientRunner? GradientRunner => loaded?.Gradients;

    /// <summary>Which parts are ready: <c>loading</c>, <c>ready</c>, <c>unavailable</c> or <c>failed</c> each.</summary>
    public ModelParts Parts
    {
        get
        {
            if (loaded is not { } m) return FatalError is null ? new(Loading, Loading, Loading, Loading) : new("failed", "failed", "failed", "failed");
            static string State(bool ok) => ok ? "ready" : "unavailable";
            return new ModelParts("ready", State(m.Defense?.Defense is not null), State(m.Certify?.Certifier is not null),
                GradientsLoading ? Loading : State(Gradients.Available));
        }
    }

    private LoadedModel Model => loaded ?? throw new ProblemException(StatusCodes.Status503ServiceUnavailable, "Model loading",
        FatalError is null ? "The model is still loading; retry after the number of seconds in Retry-After." : $"The model could not be loaded: {FatalError}")
    {
        RetryAfterSeconds = LoadingRetryAfterSeconds,
    };

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Only the manifest is read here: a broken package stops start-up with its reason before anything listens.
        package = ModelPackage.Load(modelOptions.Value.Path);
        loading = Task.Run(() => LoadAsync(package, stopping.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (disposed) return;
        // Not resumed on the caller's synchronization context: a host stopped synchronously blocks that context's thread.
        await stopping.CancelAsync().ConfigureAwait(false);
        await loading.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        stopping.Cancel();
        // A gradient build cannot be interrupted; if one outlived the stop timeout, the exiting process reclaims it.
        if (loading.IsCompleted) loaded?.Dispose();
        stopping.Dispose();
    }

    private async Task LoadAsync(ModelPackage model, CancellationToken cancellationToken)
    {
        try
        {
            if (await LoadClassificationAsync(model, cancellationToken) is { } runtime)
            {
                await LoadGradientsAsync(runtime, cancellationToken);
            }
        }
        finally
        {
            classificationLoaded.TrySetResult();
            GradientsLoading = false;
        }
    }

    private async Task<LoadedModel?> LoadClassificationAsync(ModelPackage model, CancellationToken cancellationToken)
    {
        var started = TimeProvider.System.GetTimestamp();
        LoadedModel runtime;
        try
        {
            await gate.WaitForClassificationAsync(cancellationToken);
            runtime = factory.Create(model, new ModelRuntimeOptions
            {
                Inference = inferenceOptions.Value,
                CacheDirectory = modelOptions.Value.CacheDirectory,
                Defense = defenseOptions.Value,
                Certify = certifyOptions.Value,
            }, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        catch (Exception ex)
        {
            // Nothing useful is left to serve, so the service stops with the reason. Any failure, not only the known
            // ones (a bad package, Inference:Device=Cuda without CUDA): on this background task an unobserved
            // exception would leave the service listening and "loading" for ever. The log keeps the whole exception.
            var reason = StartupFailure.Reason(ex) ?? $"{ex.GetType().Name}: {ex.Message.Split('\n')[0].Trim()}";
            FatalError = reason;
            LogCannotLoad(logger, ex, reason);
            lifetime.StopApplication();
            return null;
        }

        LogParts(runtime);
        metrics.SetModelInfo(model.Manifest.Name, runtime.ExecutionProvider, model.Sha256);
        loaded = runtime;
        classificationLoaded.TrySetResult();
        LogLoaded(logger, model.Manifest.Name, model.Directory, model.Sha256[..12], runtime.ExecutionProvider,
            TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
        return runtime;
    }

    private async Task LoadGradientsAsync(LoadedModel runtime, CancellationToken cancellationToken)
    {
        try
        {
            await gate.WaitForGradientsAsync(cancellationToken);
            runtime.LoadGradients(cancellationToken);
            Gradients = new GradientAvailability(true, null);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Gradients = new GradientAvailability(false, "The service is stopping.");
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Attacks and saliency need the gradient graphs; classification does not. Report and carry on.
            var reason = ex.Message.Split('\n')[0].Trim();
            LogGradientsUnavailable(logger, ex.GetType().Name, reason);
            Gradients = new GradientAvailability(false, reason);
        }
    }

    private void LogParts(LoadedModel runtime)
    {
        if (runtime.Defense is { Defense: { } defense, Calibration: { } calibration })
        {
            LogDefenseReady(logger, defense.Variant, defenseOptions.Value.MinTokens, calibration.Images);
            if (runtime.Defense.UnappliedCheckMargin is { } margin)
            {
                LogCheckMarginNotApplied(logger, margin);
            }
        }
        else if (runtime.Defense?.UnavailableReason is { } defenseReason)
        {
            LogDefenseUnavailable(logger, defenseReason);
        }

        if (runtime.Certify?.Certifier is { } certifier)
        {
            var masks = certifier.MasksFor(certifyOptions.Value.PatchSize);
            LogCertifyReady(logger, certifier.Classifier.MethodName, masks.PatchSize, masks.Count, masks.WindowRows, masks.WindowCols, masks.LargestRows, masks.LargestCols, certifier.Field.Rows.Size);
        }
        else if (runtime.Certify?.UnavailableReason is { } certifyReason)
        {
            LogCertifyUnavailable(logger, certifyReason);
        }
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "The model cannot be loaded; stopping: {Reason}")]
    private static partial void LogCannotLoad(ILogger logger, Exception exception, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Gradient graphs unavailable (attacks and saliency disabled): {ErrorType}: {Reason}")]
    private static partial void LogGradientsUnavailable(ILogger logger, string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "The calibration's masking-check margin {Margin} was counted under other defense settings and is not applied: the check keeps PatchCleanser's rule (margin 0) and may replace more clean answers. Run `strapvit calibrate <model-dir> --images <clean> --check-images <other clean>` again, or set Defense:VerifyMargin")]
    private static partial void LogCheckMarginNotApplied(ILogger logger, double margin);

    [LoggerMessage(Level = LogLevel.Information, Message = "Patch defense ready: {Variant} space, K={MinTokens}, calibrated on {Images} clean images")]
    private static partial void LogDefenseReady(ILogger logger, string variant, int minTokens, int images);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Certified mode ready: masking by {Method}; default {PatchSize}-pixel patches, {Masks} masks of {Rows}x{Cols} tokens (largest {LargestRows}x{LargestCols}); token receptive field {Field} pixels")]
    private static partial void LogCertifyReady(ILogger logger, string method, int patchSize, int masks, int rows, int cols, int largestRows, int largestCols, int field);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Certified mode unavailable: {Reason}")]
    private static partial void LogCertifyUnavailable(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Patch defense unavailable: {Reason}")]
    private static partial void LogDefenseUnavailable(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Model {ModelName} loaded from {ModelPath} (sha256 {ModelHash}) on {ExecutionProvider}, classification ready in {ElapsedMs:F0} ms")]
    private static partial void LogLoaded(ILogger logger, string modelName, string modelPath, string modelHash, string executionProvider, double elapsedMs);
}

/// <summary>
/// Lets background loading wait before each part. The service's gate is always open; a test holds it closed to see
/// the service while it loads (503 with Retry-After, readiness, <c>GET /v1/model</c>'s parts).
/// </summary>
public class ModelLoadGate
{
    public virtual Task WaitForClassificationAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public virtual Task WaitForGradientsAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>Whether the gradient graphs (attacks, saliency) could be built for this model, and if not, why.</summary>
public sealed record GradientAvailability(bool Available, string? Error);

/// <summary>
/// State of each part of the served model: <c>loading</c>, <c>ready</c>, <c>unavailable</c> (this model cannot run it;
/// the part's <c>error</c> says why) or <c>failed</c> (the model could not be loaded). Classification (and with it the
/// defense and certified mode) loads first; the gradient graphs behind attacks and explain after it.
/// </summary>
/// <param name="Classification" example="ready">State of classification: loading, ready or failed.</param>
/// <param name="Defense" example="ready">State of the patch defense.</param>
/// <param name="Certify" example="ready">State of certified mode.</param>
/// <param name="Gradients" example="ready">State of the gradient graphs (attacks, explain, patch jobs).</param>
public sealed record ModelParts(string Classification, string Defense, string Certify, string Gradients);
