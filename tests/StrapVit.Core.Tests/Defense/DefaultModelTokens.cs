using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>A shipped model split at its tokens, its shipped defense calibration and the shipped test images: loaded once per test class.</summary>
public abstract class ModelTokens : IDisposable
{
    protected ModelTokens(string packageDir)
    {
        Package = ModelPackage.Load(packageDir);
        Model = new TokenSpaceModel(Package, new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance));
        Reference = DefenseCalibration.Load(Path.Combine(Package.Directory, DefenseCalibration.FileName), Package).Tokens!;
        var images = RepoPaths.Sample(Path.Combine("fashion-mnist", "test-1000-images-idx3-ubyte.gz"));
        TestSet = IdxDataset.Load(images, IdxDataset.LabelsBeside(images));
    }

    public ModelPackage Package { get; }

    public TokenSpaceModel Model { get; }

    public TokenReference Reference { get; }

    /// <summary>The 1,000 shipped Fashion-MNIST test images.</summary>
    public IdxDataset TestSet { get; }

    public void Dispose()
    {
        Model.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>The embedded model (<see cref="ModelTokens"/>).</summary>
public sealed class DefaultModelTokens() : ModelTokens(RepoPaths.DefaultModel);

/// <summary>The previous default, with its 3x3 stem (<see cref="ModelTokens"/>).</summary>
public sealed class StemModelTokens() : ModelTokens(RepoPaths.StemModel);
