using StrapVit.Core.Models;

namespace StrapVit.Core.Tests.Models;

public sealed class ModelPackageTests
{
    private static ModelManifest Valid => new()
    {
        Name = "m",
        Input = new ModelInputSpec { Name = "input", Channels = 1, Height = 28, Width = 28, Mean = [0.3f], Std = [0.35f] },
        Output = "logits",
        Labels = ["a", "b", "c"],
        PatchSize = 4,
    };

    public static TheoryData<string, ModelManifest, string> Broken => new()
    {
        { "channels", Valid with { Input = Valid.Input with { Channels = 2, Mean = [0, 0], Std = [1, 1] } }, "'input.channels'" },
        { "mean count", Valid with { Input = Valid.Input with { Mean = [0.1f, 0.2f] } }, "'input.mean'" },
        { "zero std", Valid with { Input = Valid.Input with { Std = [0f] } }, "'input.std'" },
        { "nan mean", Valid with { Input = Valid.Input with { Mean = [float.NaN] } }, "'input.mean'" },
        { "one label", Valid with { Labels = ["a"] }, "'labels'" },
        { "duplicate labels", Valid with { Labels = ["a", "a"] }, "duplicates" },
        { "patch size", Valid with { PatchSize = 5 }, "'patchSize'" },
        { "size", Valid with { Input = Valid.Input with { Height = 0 } }, "'input.height'" },
        { "tokens", Valid with { Tokens = new TokenSpec { Tensor = " " } }, "'tokens.tensor'" },
    };

    [Fact]
    public void A_valid_manifest_has_no_problem() => Assert.Null(ModelPackage.FindProblem(Valid));

    [Theory]
    [MemberData(nameof(Broken))]
    public void Each_broken_field_is_named(string name, ModelManifest manifest, string expected)
    {
        var problem = ModelPackage.FindProblem(manifest);

        Assert.NotNull(problem);
        Assert.Contains(expected, problem, StringComparison.Ordinal);
        Assert.False(string.IsNullOrEmpty(name));
    }

    [Fact]
    public void Missing_files_are_named()
    {
        var dir = Directory.CreateTempSubdirectory("strapvit-pkg-");
        try
        {
            var ex = Assert.Throws<ModelPackageException>(() => ModelPackage.Load(dir.FullName));
            Assert.Contains("model.json", ex.Message, StringComparison.Ordinal);

            File.WriteAllText(Path.Combine(dir.FullName, "model.json"), "{}");
            ex = Assert.Throws<ModelPackageException>(() => ModelPackage.Load(dir.FullName));
            Assert.Contains("model.onnx", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
