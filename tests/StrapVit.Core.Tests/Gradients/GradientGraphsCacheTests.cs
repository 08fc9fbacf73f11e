using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Gradients;
using StrapVit.Core.Models;

namespace StrapVit.Core.Tests.Gradients;

public sealed class GradientGraphsCacheTests : IDisposable
{
    private readonly string temp = Directory.CreateTempSubdirectory("strapvit-gradcache-").FullName;

    [Fact]
    public void Builds_once_then_serves_the_cached_file_keyed_by_model_hash_objective_and_version()
    {
        var package = ModelPackage.Load(GradientTestData.FixtureDir("c1_cls_erf_op17"));
        var graphs = new GradientGraphs(temp, NullLogger<GradientGraphs>.Instance);
        var built = graphs.Get(package, GradientObjective.Vjp);

        var file = Path.Combine(temp, GradientGraphs.CacheFileName(package.Sha256, GradientObjective.Vjp));
        Assert.True(File.Exists(file));
        Assert.Contains(package.Sha256, Path.GetFileName(file), StringComparison.Ordinal);
        Assert.Contains($"v{GradientGraphBuilder.Version}", Path.GetFileName(file), StringComparison.Ordinal);

        // A marker appended to the cached file proves the second call read it instead of rebuilding.
        File.WriteAllBytes(file, [.. built, 0x00]);
        Assert.Equal(built.Length + 1, graphs.Get(package, GradientObjective.Vjp).Length);
        Assert.False(File.Exists(Path.Combine(temp, GradientGraphs.CacheFileName(package.Sha256, GradientObjective.CrossEntropy))));
    }

    [Fact]
    public void An_unwritable_cache_folder_still_yields_a_graph()
    {
        // A folder "below" a regular file can never be created, whoever runs the test (even root).
        var blocker = Path.Combine(temp, "not-a-folder");
        File.WriteAllText(blocker, "");
        var graphs = new GradientGraphs(Path.Combine(blocker, "cache"), NullLogger<GradientGraphs>.Instance);
        var package = ModelPackage.Load(GradientTestData.FixtureDir("c1_cls_erf_op17"));

        var bytes = graphs.Get(package, GradientObjective.CrossEntropy);
        Assert.NotEmpty(bytes);
        Assert.DoesNotContain(Directory.GetFiles(temp), f => f.EndsWith(".tmp", StringComparison.Ordinal));
    }

    public void Dispose() => Directory.Delete(temp, recursive: true);
}
