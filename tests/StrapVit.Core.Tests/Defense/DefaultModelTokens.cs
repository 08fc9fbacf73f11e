using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Datasets;
using StrapVit.Core.Defense;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Defense;

/// <summary>The embedded model split at its tokens, its shipped defense calibration and the shipped test images: loaded once per test class.</summary>
public sealed class DefaultModelTokens : IDisposable
{
    public DefaultModelTokens()
    {
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        Model = new TokenSpaceModel(package, new OnnxSessionFactory(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance));
        Reference = DefenseCalibration.Load(Path.Combine(package.Directory, DefenseCalibration.FileName), package).Tokens!;
        var images = RepoPaths.Sample(Path.Combine("fashion-mnist", "test-1000-images-idx3-ubyte.gz"));
        TestSet = IdxDataset.Load(images, IdxDataset.LabelsBeside(images));
    }

    public TokenSpaceModel Model { get; }

    public TokenReference Reference { get; }

    /// <summary>The 1,000 shipped Fashion-MNIST test images.</summary>
    public IdxDataset TestSet { get; }

    public void Dispose() => Model.Dispose();
}
