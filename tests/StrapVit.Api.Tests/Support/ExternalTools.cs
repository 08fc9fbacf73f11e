using System.Diagnostics;
using System.Text;

namespace StrapVit.Api.Tests.Support;

/// <summary>
/// Programs outside .NET that some tests drive (curl, Debian's python3 with requests, chromium): where they are, and
/// a bounded way to run one. Tests that need one are skipped, with the reason, where it is missing; .ci/run installs
/// them so CI runs those tests.
/// </summary>
public static class ExternalTools
{
    /// <summary>Debian's interpreter: the examples are documented to run with it (the python3 first on PATH may be another).</summary>
    public const string DebianPython = "/usr/bin/python3";

    private static readonly Lazy<bool> PythonRequests = new(() =>
    {
        if (!File.Exists(DebianPython)) return false;
        var check = new ProcessStartInfo(DebianPython) { ArgumentList = { "-c", "import requests" } };
        return RunAsync(check, TimeSpan.FromSeconds(30)).GetAwaiter().GetResult().ExitCode == 0;
    });

    /// <summary>The full path of a program on the PATH, or null.</summary>
    public static string? Find(string name) => (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
        .Select(d => Path.Combine(d, name))
        .FirstOrDefault(File.Exists);

    /// <summary>Whether <see cref="DebianPython"/> exists and imports requests.</summary>
    public static bool HasPythonRequests => PythonRequests.Value;

    /// <summary>Runs a program to its end and returns its exit code and output; fails the test, naming it, past the timeout.</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(ProcessStartInfo start, TimeSpan timeout)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.StandardOutputEncoding = Encoding.UTF8;
        start.StandardErrorEncoding = Encoding.UTF8;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{start.FileName} did not start.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            // ConfigureAwait(false): PythonRequests blocks on this method, possibly on one of xUnit's few context threads.
            await process.WaitForExitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{start.FileName} {string.Join(' ', start.ArgumentList)}' ran past {timeout.TotalSeconds:F0} s; "
                + $"its output so far: {await stdout.ConfigureAwait(false)}{await stderr.ConfigureAwait(false)}");
        }

        return (process.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }
}

/// <summary>A fact that needs curl and jq (the curl example's tools), skipped with the reason where either is missing.</summary>
public sealed class CurlFactAttribute : FactAttribute
{
    public CurlFactAttribute()
    {
        var missing = new[] { "curl", "jq" }.Where(tool => ExternalTools.Find(tool) is null).ToArray();
        if (missing.Length > 0)
        {
            Skip = $"{string.Join(" and ", missing)} not installed (apt-get install curl jq; .ci/run does so).";
        }
    }
}

/// <summary>A fact that needs Debian's python3 with requests, skipped with the reason where it is missing.</summary>
public sealed class PythonRequestsFactAttribute : FactAttribute
{
    public PythonRequestsFactAttribute()
    {
        if (!ExternalTools.HasPythonRequests)
        {
            Skip = $"{ExternalTools.DebianPython} with requests is not installed (apt-get install python3-requests; .ci/run does so).";
        }
    }
}

/// <summary>A fact that needs Debian's chromium, skipped with the reason where it is missing.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (ExternalTools.Find("chromium") is null)
        {
            Skip = "chromium is not installed (apt-get install chromium; .ci/run does so).";
        }
    }
}
