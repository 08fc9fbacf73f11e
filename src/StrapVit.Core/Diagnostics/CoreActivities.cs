using System.Diagnostics;

namespace StrapVit.Core.Diagnostics;

/// <summary>
/// The spans Core opens, on one <see cref="ActivitySource"/> (System.Diagnostics, so Core stays free of ASP.NET and of
/// any exporter): image decode, the patch defense, ONNX Runtime runs and attacks. A host that subscribes to
/// <see cref="SourceName"/> (OpenTelemetry's <c>AddSource</c>) gets them as children of whatever span is current; with
/// no subscriber every call here returns null at the cost of one check.
/// </summary>
/// <remarks>
/// An attack is one span with its iteration count as an attribute, never a span per step: ONNX Runtime runs inside an
/// attack open no span of their own. ONNX runs outside any traced operation (warm-up, calibration, background jobs)
/// open none either, so they never start traces of their own.
/// </remarks>
public static class CoreActivities
{
    public const string SourceName = "StrapVit.Core";

    // Attribute names, namespaced as OpenTelemetry asks of attributes that are not in its semantic conventions.
    public const string ImageBytes = "strapvit.image.bytes";
    public const string BatchSize = "strapvit.batch.size";
    public const string BatchRequests = "strapvit.batch.requests";
    public const string DefenseMode = "strapvit.defense.mode";
    public const string DefenseVariant = "strapvit.defense.variant";
    public const string DefenseFlaggedTokens = "strapvit.defense.flagged_tokens";
    public const string OnnxGraph = "strapvit.onnx.graph";
    public const string ExecutionProvider = "strapvit.onnx.execution_provider";
    public const string AttackName = "strapvit.attack.name";
    public const string AttackIterations = "strapvit.attack.iterations";
    public const string AttackSuccesses = "strapvit.attack.successes";

    public static ActivitySource Source { get; } = new(SourceName, typeof(CoreActivities).Assembly.GetName().Version?.ToString());

    /// <summary>Decoding an upload into the model's input tensor.</summary>
    public static Activity? Decode(int bytes) =>
        Source.StartActivity("decode image")?.SetTag(ImageBytes, bytes);

    /// <summary>The patch defense over a batch: detect scores and flags tokens; mitigate also neutralises them.</summary>
    public static Activity? Defense(string mode, string variant, int batch) =>
        Source.StartActivity($"defense {mode}")?.SetTag(DefenseMode, mode).SetTag(DefenseVariant, variant).SetTag(BatchSize, batch);

    /// <summary>One ONNX Runtime run of <paramref name="graph"/> (forward, embed, encoder, gradient), or null (see remarks).</summary>
    public static Activity? OnnxRun(string graph, int batch, string executionProvider)
    {
        if (Activity.Current is not { } parent || (parent.Source == Source && parent.GetTagItem(AttackName) is not null))
        {
            return null;
        }

        return Source.StartActivity($"onnx {graph}")?
            .SetTag(OnnxGraph, graph).SetTag(BatchSize, batch).SetTag(ExecutionProvider, executionProvider);
    }

    /// <summary>
    /// A span for one run of a dynamic batch that serves several traced requests, linked to each of them
    /// (OpenTelemetry's convention for work done for several traces); null when none is traced. A batch of one request
    /// needs none: it runs under that request's own span.
    /// </summary>
    public static Activity? Batch(IReadOnlyList<ActivityContext> requests, int images)
    {
        var traced = requests.Where(c => c != default).Select(c => new ActivityLink(c)).ToArray();
        return traced.Length == 0
            ? null
            : Source.StartActivity("batch", ActivityKind.Internal, parentContext: default, links: traced)?
                .SetTag(BatchSize, images).SetTag(BatchRequests, requests.Count);
    }

    /// <summary>One whole attack; <see cref="AttackIterations"/> and <see cref="AttackSuccesses"/> are set when it ends.</summary>
    public static Activity? Attack(string name, int batch) =>
        Source.StartActivity($"attack {name}")?.SetTag(AttackName, name).SetTag(BatchSize, batch);
}
