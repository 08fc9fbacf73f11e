using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Certification;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Certification;

/// <summary>Setting certified mode up: what it reports for a package it can and cannot certify.</summary>
public sealed class CertifyLoaderTests
{
    private static readonly OnnxSessionFactory Sessions = new(new InferenceOptions { Device = InferenceDevice.Cpu }, NullLogger<OnnxSessionFactory>.Instance);

    [Fact]
    public void A_package_without_a_tokens_tensor_reports_why_instead_of_failing()
    {
        var dir = Directory.CreateTempSubdirectory("strapvit-certify-");
        try
        {
            var source = RepoPaths.Fixture("models", "rgb-vit-32");
            File.Copy(Path.Combine(source, "model.onnx"), Path.Combine(dir.FullName, "model.onnx"));
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "model.json")))!.AsObject();
            manifest.Remove("tokens");
            File.WriteAllText(Path.Combine(dir.FullName, "model.json"), manifest.ToJsonString());

            using var setup = CertifyLoader.Create(ModelPackage.Load(dir.FullName), Sessions, new CertifyOptions(), null);

            Assert.Null(setup.Certifier);
            Assert.Contains("no 'tokens' entry", setup.UnavailableReason, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void A_default_patch_whose_masks_do_not_fit_reports_the_reason()
    {
        // rgb-vit-32: 8-pixel tokens on a 4x4 grid; a 20-pixel patch reaches 4 tokens, at stride 2 a mask would be 5.
        var options = new CertifyOptions { PatchSize = 20, MaxPatchSize = 32, MaskStride = 2 };

        using var setup = CertifyLoader.Create(ModelPackage.Load(RepoPaths.Fixture("models", "rgb-vit-32")), Sessions, options, null);

        Assert.Null(setup.Certifier);
        Assert.Contains("more than the 4x4 grid", setup.UnavailableReason, StringComparison.Ordinal);
    }

    [Fact]
    public void The_default_model_certifies_by_dropping_tokens()
    {
        using var setup = CertifyLoader.Create(ModelPackage.Load(RepoPaths.DefaultModel), Sessions, new CertifyOptions(), null);

        Assert.Null(setup.UnavailableReason);
        Assert.Equal(MaskingMethod.Drop, setup.Certifier!.Classifier.Method);
        // Each token sees only its 4x4 patch, so a 4x4 patch reaches 2x2 tokens: 2x2 masks at stride 1, 6 x 6 of them
        // in PatchCleanser's uniform set; the default merges the border columns of masks: 6 x 4.
        Assert.Equal(24, setup.Certifier.MasksFor(4).Count);
        Assert.Equal(36, setup.Certifier.MasksFor(4, 1).Count);
    }

    [Fact]
    public void The_stem_models_wider_field_needs_larger_masks()
    {
        using var setup = CertifyLoader.Create(ModelPackage.Load(RepoPaths.StemModel), Sessions, new CertifyOptions { ColBorderStride = 0 }, null);

        // A 6-pixel field reaches 3 tokens for a 4x4 patch: 3x3 masks at stride 1, 5 x 5 of them.
        Assert.Equal(25, setup.Certifier!.MasksFor(4).Count);
    }
}
