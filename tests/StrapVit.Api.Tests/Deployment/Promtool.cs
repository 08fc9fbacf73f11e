using System.Diagnostics;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>Prometheus' own checker (Debian package prometheus; deploy/check.sh installs it, so CI always has it).</summary>
public static class Promtool
{
    public static string? Executable { get; } =
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "promtool")).FirstOrDefault(File.Exists);

    /// <summary>Runs promtool with <paramref name="arguments"/>, feeding <paramref name="stdin"/>; exit code and all output.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(string stdin, string workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo(Executable ?? throw new InvalidOperationException("promtool is not installed."))
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }
}

/// <summary>A fact that needs promtool, skipped with the reason where it is not installed.</summary>
public sealed class PromtoolFactAttribute : FactAttribute
{
    public PromtoolFactAttribute()
    {
        if (Promtool.Executable is null)
        {
            Skip = "promtool is not installed (apt-get install prometheus; deploy/check.sh, which .ci/run calls first, does so).";
        }
    }
}
