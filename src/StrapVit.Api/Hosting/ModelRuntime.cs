using Microsoft.Extensions.Options;
using StrapVit.Api.Contracts;
using StrapVit.Api.Observability;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;

namespace StrapVit.Api.Hosting;

/// <summary>
/// Owns the loaded model for the lifetime of the host. Loading happens in <see cref="StartAsync"/>, so a broken
/// package stops start-up with its one-line reason instead of failing the first request.
/// </summary>
public sealed partial class ModelRuntime(
    IOptions<ModelOptions> modelOptions,
    IOptions<InferenceOptions> inferenceOptions,
    OnnxSessionFactory sessionFactory,
    ServiceMetrics metrics,
    ILogger<ModelRuntime> logger) : IHostedService, IDisposable
{
    private VitClassifier? _classifier;

    /// <summary>The classifier; throws until start-up has loaded it.</summary>
    public VitClassifier Classifier => _classifier ?? throw new InvalidOperationException("The model is not loaded yet.");

    public bool IsReady => _classifier is not null;

    /// <summary>Whether gradient graphs (attacks, saliency) are available for the loaded model.</summary>
    public GradientAvailability Gradients { get; private set; } =
        new(false, "Gradient graphs are not built by this version of the service yet.");

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var started = TimeProvider.System.GetTimestamp();
        var package = ModelPackage.Load(modelOptions.Value.Path);
        _classifier = new VitClassifier(package, sessionFactory, inferenceOptions.Value);
        metrics.SetModelInfo(package.Manifest.Name, _classifier.ExecutionProvider, package.Sha256);
        LogLoaded(logger, package.Manifest.Name, package.Directory, package.Sha256[..12], _classifier.ExecutionProvider,
            TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _classifier?.Dispose();

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Model {ModelName} loaded from {ModelPath} (sha256 {ModelHash}) on {ExecutionProvider}, warmed up in {ElapsedMs:F0} ms")]
    private static partial void LogLoaded(ILogger logger, string modelName, string modelPath, string modelHash, string executionProvider, double elapsedMs);
}
