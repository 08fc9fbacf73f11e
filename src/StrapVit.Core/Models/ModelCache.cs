namespace StrapVit.Core.Models;

/// <summary>
/// Where artefacts derived from a model (gradient graphs, defense calibration) are cached when they can't or
/// shouldn't be written beside the package. Files are named by the model's SHA-256, so one folder serves many models.
/// </summary>
public static class ModelCache
{
    /// <summary>The configured folder, else <c>$XDG_CACHE_HOME/strapvit</c>, else <c>~/.cache/strapvit</c>.</summary>
    public static string Resolve(string? configured)
    {
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return Path.GetFullPath(configured);
        }

        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var root = !string.IsNullOrWhiteSpace(xdg) ? xdg
            : !string.IsNullOrWhiteSpace(home) ? Path.Combine(home, ".cache")
            : Path.GetTempPath();
        return Path.Combine(root, "strapvit");
    }
}
