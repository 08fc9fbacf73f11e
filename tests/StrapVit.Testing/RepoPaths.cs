namespace StrapVit.Testing;

/// <summary>Locates files of the repository (models, samples, fixtures) from the test's output folder.</summary>
public static class RepoPaths
{
    private static readonly Lazy<string> RootPath = new(() =>
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "StrapVitService.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("StrapVitService.sln not found above the test folder.");
    });

    public static string Root => RootPath.Value;

    public static string DefaultModel => Path.Combine(Root, "models", "fashion-vit-tiny");

    /// <summary>
    /// The previous default model: its 3x3 stem gives each token a 6x6-pixel field around its 4x4 patch, so a pixel
    /// patch reaches more tokens than its size says (the harder geometry for certification and the masking check).
    /// </summary>
    public static string StemModel => Path.Combine(Root, "models", "fashion-vit-tiny-stem");

    public static string Samples => Path.Combine(Root, "samples");

    public static string Sample(string name) => Path.Combine(Samples, name);

    public static string Fixture(params string[] parts) => Path.Combine([Root, "tests", "fixtures", .. parts]);
}
