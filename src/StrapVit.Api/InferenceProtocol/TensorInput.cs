using System.Globalization;
using System.Text.Json;
using StrapVit.Api.Errors;
using StrapVit.Core.Imaging;
using StrapVit.Core.Models;

namespace StrapVit.Api.InferenceProtocol;

/// <summary>
/// The request's one input tensor as the classifier's batch: <c>N</c> images of <c>[C, H, W]</c> back to back in
/// [0, 1] pixel space. FP32 data is taken row-major, flat or nested exactly as the shape; BYTES data holds one
/// base64 string per encoded image, decoded as an upload is.
/// </summary>
internal static class TensorInput
{
    public const string Pixels = "pixel_values";
    public const string Images = "images";
    public const string Fp32 = "FP32";
    public const string Bytes = "BYTES";

    public static (float[] Pixels, int Batch) Read(RequestInput input, ModelInputSpec spec, int maxBatch, ImageDecoder decoder)
    {
        if (input.Parameters is { Count: > 0 } parameters)
        {
            throw Bad("Unsupported input parameters",
                $"Input parameters ({string.Join(", ", parameters.Keys)}) are not supported: send no parameters, and 'data' as JSON (binary tensor data is not supported).");
        }

        var (datatype, rank) = input.Name switch
        {
            Pixels => (Fp32, 4),
            Images => (Bytes, 1),
            _ => throw Bad("Unknown input", $"The model has no input '{input.Name}'; it takes '{Pixels}' ({Fp32} [N, {spec.Channels}, {spec.Height}, {spec.Width}]) or '{Images}' ({Bytes} [N])."),
        };
        if (!string.Equals(input.Datatype, datatype, StringComparison.Ordinal))
        {
            throw Bad("Wrong datatype", $"Input '{input.Name}' is {datatype}; got '{input.Datatype}'.");
        }

        var shape = input.Shape ?? throw Bad("Wrong shape", $"Input '{input.Name}' needs a shape.");
        long[] image = rank == 4 ? [spec.Channels, spec.Height, spec.Width] : [];
        if (shape.Count != rank || shape[0] < 1 || !shape.Skip(1).SequenceEqual(image))
        {
            var wanted = rank == 4 ? $"[N, {spec.Channels}, {spec.Height}, {spec.Width}]" : "[N]";
            throw Bad("Wrong shape", $"Input '{input.Name}' has shape {Format(shape)}; this model takes {wanted} with N >= 1.");
        }

        if (shape[0] > maxBatch)
        {
            throw new ProblemException(StatusCodes.Status413PayloadTooLarge, "Batch too large",
                $"The request carries {shape[0]} images; InferenceProtocol:MaxBatchSize allows {maxBatch} per request.");
        }

        var batch = (int)shape[0];
        return datatype == Fp32
            ? (ReadFp32(input.Data, shape, batch * spec.Size), batch)
            : (ReadImages(input.Data, batch, spec, decoder), batch);
    }

    private static float[] ReadFp32(JsonElement data, IReadOnlyList<long> shape, int count)
    {
        if (data.ValueKind != JsonValueKind.Array)
        {
            throw Bad("Wrong data", $"'data' must be an array of {count} numbers, flat or nested as the shape.");
        }

        var values = new float[count];
        var at = 0;
        if (data.GetArrayLength() > 0 && data[0].ValueKind == JsonValueKind.Array)
        {
            Nested(data, shape, 0, "data", values, ref at);
        }
        else
        {
            if (data.GetArrayLength() != count)
            {
                throw Bad("Wrong data", $"'data' holds {data.GetArrayLength()} values; shape {Format(shape)} needs {count}.");
            }

            foreach (var element in data.EnumerateArray())
            {
                values[at] = Pixel(element, at);
                at++;
            }
        }

        return values;
    }

    /// <summary>Nested data must be nested all the way, each level as long as its dimension.</summary>
    private static void Nested(JsonElement element, IReadOnlyList<long> shape, int depth, string path, float[] values, ref int at)
    {
        if (element.ValueKind != JsonValueKind.Array || element.GetArrayLength() != shape[depth])
        {
            var found = element.ValueKind == JsonValueKind.Array ? $"{element.GetArrayLength()} entries" : $"a {element.ValueKind.ToString().ToLowerInvariant()}";
            throw Bad("Wrong data", $"'{path}' holds {found}; dimension {depth} of shape {Format(shape)} needs an array of {shape[depth]}.");
        }

        var i = 0;
        foreach (var child in element.EnumerateArray())
        {
            if (depth == shape.Count - 1)
            {
                values[at] = Pixel(child, at);
                at++;
            }
            else
            {
                Nested(child, shape, depth + 1, $"{path}[{i}]", values, ref at);
            }

            i++;
        }
    }

    private static float Pixel(JsonElement element, int index)
    {
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetSingle(out var value) || !float.IsFinite(value))
        {
            throw Bad("Wrong data", $"Value {index} (row-major) is {element.GetRawText()}; FP32 data must be numbers.");
        }

        return value is >= 0f and <= 1f
            ? value
            : throw Bad("Pixel out of range", $"Value {index} (row-major) is {value.ToString(CultureInfo.InvariantCulture)}; pixels are in [0, 1].");
    }

    private static float[] ReadImages(JsonElement data, int batch, ModelInputSpec spec, ImageDecoder decoder)
    {
        if (data.ValueKind != JsonValueKind.Array || data.GetArrayLength() != batch)
        {
            throw Bad("Wrong data", $"'data' must be an array of {batch} base64 strings, one encoded image each.");
        }

        var pixels = new float[batch * spec.Size];
        var i = 0;
        foreach (var element in data.EnumerateArray())
        {
            var bytes = element.ValueKind == JsonValueKind.String && element.TryGetBytesFromBase64(out var decoded)
                ? decoded
                : throw Bad("Wrong data", $"data[{i}] is not a base64 string of an encoded image.");
            try
            {
                decoder.Decode(bytes, spec.Channels, spec.Height, spec.Width).Data.CopyTo(pixels, i * spec.Size);
            }
            catch (ImageRejectedException ex)
            {
                throw new ImageRejectedException(ex.Reason, $"data[{i}]: {ex.Message}", ex);
            }

            i++;
        }

        return pixels;
    }

    private static string Format(IReadOnlyList<long> shape) => $"[{string.Join(", ", shape)}]";

    private static ProblemException Bad(string title, string detail) => new(StatusCodes.Status400BadRequest, title, detail);
}
