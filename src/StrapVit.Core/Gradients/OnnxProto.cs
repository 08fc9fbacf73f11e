using System.Buffers.Binary;
using Google.Protobuf;
using Onnx;

namespace StrapVit.Core.Gradients;

/// <summary>Small protobuf conveniences for reading attributes and constant tensors and for writing new ones.</summary>
internal static class OnnxProto
{
    public const int Float = (int)TensorProto.Types.DataType.Float;
    public const int Int64 = (int)TensorProto.Types.DataType.Int64;
    public const int Int32 = (int)TensorProto.Types.DataType.Int32;

    /// <summary>True for the default ONNX domain ("" and "ai.onnx" are the same domain).</summary>
    public static bool IsDefaultDomain(string? domain) => string.IsNullOrEmpty(domain) || domain == "ai.onnx";

    /// <summary>A node's name for messages: its name, or its first output when exporters left it unnamed.</summary>
    public static string Label(NodeProto node) =>
        !string.IsNullOrEmpty(node.Name) ? node.Name : node.Output.FirstOrDefault(o => o.Length > 0) ?? "<unnamed>";

    public static AttributeProto? Attr(NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name);

    public static long Int(NodeProto node, string name, long fallback) => Attr(node, name) is { } a ? a.I : fallback;

    public static float Float32(NodeProto node, string name, float fallback) => Attr(node, name) is { } a ? a.F : fallback;

    public static string Str(NodeProto node, string name, string fallback) =>
        Attr(node, name) is { } a ? a.S.ToStringUtf8() : fallback;

    public static long[]? Ints(NodeProto node, string name) => Attr(node, name) is { } a ? a.Ints.ToArray() : null;

    public static AttributeProto IntAttr(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto FloatAttr(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto IntsAttr(string name, IEnumerable<long> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    public static AttributeProto TensorAttr(string name, TensorProto value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value };

    public static TensorProto FloatTensor(string name, long[] dims, float[] values)
    {
        var t = new TensorProto { Name = name, DataType = Float };
        t.Dims.AddRange(dims);
        // raw_data keeps large constants (one-hot matrices) compact and fast to parse.
        var bytes = new byte[values.Length * 4];
        for (var i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        }

        t.RawData = ByteString.CopyFrom(bytes);
        return t;
    }

    public static TensorProto Int64Tensor(string name, long[] dims, long[] values)
    {
        var t = new TensorProto { Name = name, DataType = Int64 };
        t.Dims.AddRange(dims);
        t.Int64Data.AddRange(values);
        return t;
    }

    /// <summary>Integer contents of an INT64/INT32 tensor, or null for other types.</summary>
    public static long[]? ReadInts(TensorProto t)
    {
        if (t.DataType == Int64)
        {
            if (!t.RawData.IsEmpty)
            {
                var raw = t.RawData.Span;
                var result = new long[raw.Length / 8];
                for (var i = 0; i < result.Length; i++)
                {
                    result[i] = BinaryPrimitives.ReadInt64LittleEndian(raw[(i * 8)..]);
                }

                return result;
            }

            return t.Int64Data.ToArray();
        }

        if (t.DataType == Int32)
        {
            if (!t.RawData.IsEmpty)
            {
                var raw = t.RawData.Span;
                var result = new long[raw.Length / 4];
                for (var i = 0; i < result.Length; i++)
                {
                    result[i] = BinaryPrimitives.ReadInt32LittleEndian(raw[(i * 4)..]);
                }

                return result;
            }

            return t.Int32Data.Select(v => (long)v).ToArray();
        }

        return null;
    }

    /// <summary>Contents of a FLOAT/DOUBLE tensor as float, or null for other types.</summary>
    public static float[]? ReadFloats(TensorProto t)
    {
        if (t.DataType == Float)
        {
            if (!t.RawData.IsEmpty)
            {
                var raw = t.RawData.Span;
                var result = new float[raw.Length / 4];
                for (var i = 0; i < result.Length; i++)
                {
                    result[i] = BinaryPrimitives.ReadSingleLittleEndian(raw[(i * 4)..]);
                }

                return result;
            }

            return t.FloatData.ToArray();
        }

        if (t.DataType == (int)TensorProto.Types.DataType.Double)
        {
            if (!t.RawData.IsEmpty)
            {
                var raw = t.RawData.Span;
                var result = new float[raw.Length / 8];
                for (var i = 0; i < result.Length; i++)
                {
                    result[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(raw[(i * 8)..]);
                }

                return result;
            }

            return t.DoubleData.Select(v => (float)v).ToArray();
        }

        return null;
    }

    /// <summary>The tensor a <c>Constant</c> node holds, whichever of its value attributes is set.</summary>
    public static TensorProto? ConstantValue(NodeProto node)
    {
        foreach (var a in node.Attribute)
        {
            switch (a.Name)
            {
                case "value":
                    return a.T;
                case "value_float":
                    return FloatTensor(node.Output[0], [], [a.F]);
                case "value_floats":
                    return FloatTensor(node.Output[0], [a.Floats.Count], a.Floats.ToArray());
                case "value_int":
                    return Int64Tensor(node.Output[0], [], [a.I]);
                case "value_ints":
                    return Int64Tensor(node.Output[0], [a.Ints.Count], a.Ints.ToArray());
            }
        }

        return null;
    }

    public static ValueInfoProto TensorInfo(string name, int elemType, object[] dims) => new()
    {
        Name = name,
        Type = new TypeProto
        {
            TensorType = new TypeProto.Types.Tensor
            {
                ElemType = elemType,
                Shape = Shape(dims),
            },
        },
    };

    private static TensorShapeProto Shape(object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d is string s
                ? new TensorShapeProto.Types.Dimension { DimParam = s }
                : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d, System.Globalization.CultureInfo.InvariantCulture) });
        }

        return shape;
    }

    /// <summary>
    /// Removes the nodes none of whose outputs is read or a graph output, until none is left, then the initializers
    /// nothing reads: what a rewrite leaves behind (shape arithmetic of a replaced pattern, a replaced tail).
    /// </summary>
    public static void RemoveDeadNodes(GraphProto graph)
    {
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        bool removed;
        do
        {
            var read = graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
            var dead = graph.Node.Where(n => n.Output.All(o => o.Length == 0 || (!read.Contains(o) && !outputs.Contains(o)))).ToList();
            foreach (var n in dead) graph.Node.Remove(n);
            removed = dead.Count > 0;
        }
        while (removed);

        var used = graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        foreach (var init in graph.Initializer.Where(i => !used.Contains(i.Name)).ToList()) graph.Initializer.Remove(init);
    }

    /// <summary>Renames a tensor everywhere in the top-level graph (nodes, inputs, outputs, value_info, initializers).</summary>
    public static void Rename(GraphProto graph, string from, string to)
    {
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == from) node.Input[i] = to;
            }

            for (var i = 0; i < node.Output.Count; i++)
            {
                if (node.Output[i] == from) node.Output[i] = to;
            }
        }

        foreach (var vi in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo))
        {
            if (vi.Name == from) vi.Name = to;
        }

        foreach (var init in graph.Initializer)
        {
            if (init.Name == from) init.Name = to;
        }
    }
}
