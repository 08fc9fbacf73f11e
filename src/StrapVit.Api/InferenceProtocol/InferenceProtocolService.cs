using System.Diagnostics;
using Microsoft.Extensions.Options;
using StrapVit.Api.Defense;
using StrapVit.Api.Errors;
using StrapVit.Api.Serving;
using StrapVit.Api.Uploads;
using StrapVit.Core.Defense;
using StrapVit.Core.Imaging;

namespace StrapVit.Api.InferenceProtocol;

/// <summary>
/// The served model as the Open Inference Protocol sees it: its metadata, and inference on a batch through the same
/// defense selection and classification path as <c>POST /v1/classify</c>.
/// </summary>
public sealed partial class InferenceProtocolService(
    ModelRuntime runtime,
    ClassificationBatcher batcher,
    ImageDecoder decoder,
    DefenseSelector selector,
    IOptions<InferenceProtocolOptions> options,
    IOptions<ImageLimits> imageLimits,
    IOptions<BodyLimitOptions> bodyLimits,
    ILogger<InferenceProtocolService> logger)
{
    public const string Platform = "onnxruntime_onnx";
    public const string Logits = "logits";
    public const string Probabilities = "probabilities";
    public const string PredictedClass = "predicted_class";
    public const string Certified = "certified";

    // Name, version, shapes and the body limit come from the package, read at start-up: they answer while the model loads.
    public string ModelName => runtime.Package.Manifest.Name;

    /// <summary>The model's version: the first 12 hex digits of its SHA-256, as <c>strapvit_model_info</c> labels it.</summary>
    public string ModelVersion => runtime.Package.Sha256[..12];

    /// <summary>Whether classification is loaded and warmed up (the gradient graphs, which inference does not use, may still load).</summary>
    public bool IsReady => runtime.IsReady;

    public long MaxRequestBodyBytes => options.Value.BodyLimit(
        runtime.Package.Manifest.Input.Size, imageLimits.Value.MaxBytes, bodyLimits.Value.MaxRequestBodyBytes);

    /// <summary>404 unless the path names the served model (and, when it names one, its version).</summary>
    public void RequireModel(string name, string? version)
    {
        if (!string.Equals(name, ModelName, StringComparison.Ordinal))
        {
            throw new ProblemException(StatusCodes.Status404NotFound, "Unknown model", $"No model '{name}' is served here; the one model is '{ModelName}'.");
        }

        if (version is not null && !string.Equals(version, ModelVersion, StringComparison.Ordinal))
        {
            throw new ProblemException(StatusCodes.Status404NotFound, "Unknown model version",
                $"Model '{name}' has no version '{version}'; the one version is '{ModelVersion}'.");
        }
    }

    public ModelMetadataResponse Metadata()
    {
        var input = runtime.Package.Manifest.Input;
        var k = runtime.Package.Manifest.Labels.Count;
        return new ModelMetadataResponse(ModelName, [ModelVersion], Platform,
            [
                new MetadataTensor(TensorInput.Pixels, TensorInput.Fp32, [-1, input.Channels, input.Height, input.Width]),
                new MetadataTensor(TensorInput.Images, TensorInput.Bytes, [-1]),
            ],
            [
                new MetadataTensor(Logits, TensorInput.Fp32, [-1, k]),
                new MetadataTensor(Probabilities, TensorInput.Fp32, [-1, k]),
                new MetadataTensor(PredictedClass, "INT64", [-1]),
                new MetadataTensor(Certified, "BOOL", [-1]),
            ]);
    }

    /// <summary>Runs the request; 503 with <c>Retry-After</c> while classification loads, before anything is queued.</summary>
    public async Task<InferenceResponse> InferAsync(InferenceRequest request, CancellationToken cancellationToken)
    {
        var total = Stopwatch.StartNew();
        var classifier = runtime.Classifier;
        // Resolved before the tensor is read, so a bad mode costs nothing; the same rule and messages as the query of /v1/classify.
        var (query, patch) = InferenceParameters.Read(request.Parameters);
        var selection = selector.Select(query, patch);
        var outputs = OutputNames(request.Outputs, selection.Mode);
        var input = request.Inputs switch
        {
            [var one] => one,
            null or [] => throw Invalid("The request has no input; send one: 'pixel_values' (FP32) or 'images' (BYTES)."),
            _ => throw Invalid($"The request has {request.Inputs.Count} inputs; send exactly one: 'pixel_values' (FP32) or 'images' (BYTES)."),
        };
        var (pixels, batch) = TensorInput.Read(input, classifier.Manifest.Input, options.Value.MaxBatchSize, decoder);

        var result = await batcher.ClassifyAsync(pixels, batch, selection, cancellationToken);
        var k = classifier.ClassCount;
        var tensors = outputs.Select(name => name switch
        {
            Logits => new ResponseOutput(name, [batch, k], TensorInput.Fp32, result.Images.SelectMany(i => i.Logits!).ToArray()),
            Probabilities => new ResponseOutput(name, [batch, k], TensorInput.Fp32, result.Images.SelectMany(i => i.Probabilities).ToArray()),
            PredictedClass => new ResponseOutput(name, [batch], "INT64", result.Images.Select(i => (long)i.Label).ToArray()),
            _ => new ResponseOutput(name, [batch], "BOOL", result.Images.Select(i => i.Certified!.Report.Certified).ToArray()),
        }).ToArray();

        LogInferred(logger, batch, input.Datatype!, selection.Mode.ToString().ToLowerInvariant(), total.Elapsed.TotalMilliseconds);
        return new InferenceResponse(ModelName, ModelVersion, request.Id, Reported(selection), tensors);
    }

    /// <summary>The outputs to send, in order: the request's list, or all that the mode produces.</summary>
    private static string[] OutputNames(IReadOnlyList<RequestOutput>? requested, DefenseMode mode)
    {
        string[] produced = mode == DefenseMode.Certify ? [Probabilities, PredictedClass, Certified] : [Logits, Probabilities, PredictedClass];
        if (requested is null or [])
        {
            return produced;
        }

        var names = requested.Select(o => o.Name ?? throw Invalid("Every requested output needs a name.")).ToArray();
        foreach (var name in names)
        {
            if (!produced.Contains(name, StringComparer.Ordinal))
            {
                throw Invalid(name is Logits or Certified
                    ? $"Output '{name}' is not produced with defense={mode.ToString().ToLowerInvariant()}; it gives {string.Join(", ", produced)}."
                    : $"The model has no output '{name}'; with defense={mode.ToString().ToLowerInvariant()} it gives {string.Join(", ", produced)}.");
            }
        }

        return names.Distinct(StringComparer.Ordinal).Count() == names.Length
            ? names
            : throw Invalid("An output is requested more than once.");
    }

    private static Dictionary<string, object> Reported(DefenseSelection selection) => selection.Mode switch
    {
        DefenseMode.Off => new() { [InferenceParameters.Defense] = "off" },
        DefenseMode.Certify => new() { [InferenceParameters.Defense] = "certify", [InferenceParameters.Patch] = selection.PatchSize },
        _ => new() { [InferenceParameters.Defense] = selection.Mode.ToString().ToLowerInvariant(), [InferenceParameters.Seed] = selection.Seed },
    };

    private static ProblemException Invalid(string detail) => new(StatusCodes.Status400BadRequest, "Invalid inference request", detail);

    [LoggerMessage(Level = LogLevel.Information, Message = "Inferred {Batch} images ({Datatype}) with defense {Defense} in {ElapsedMs:F2} ms")]
    private static partial void LogInferred(ILogger logger, int batch, string datatype, string defense, double elapsedMs);
}
