using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>
/// tools/gpu-check.sh on a machine without a GPU: its CPU fallback path runs the built service twice and must see
/// Inference:Device=Auto fall back to CPU with one warning per session and keep serving, and Inference:Device=Cuda
/// refuse to start with exit code 1. (On a CUDA machine the same script proves the opposite; docs/BENCHMARKS.md.)
/// </summary>
public sealed class GpuCheckScriptTests
{
    [GpuCheckFact]
    public async Task The_fallback_path_passes_on_a_machine_without_cuda()
    {
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = DeployFiles.PathOf(),
        };
        start.ArgumentList.Add(DeployFiles.PathOf("tools", "gpu-check.sh"));
        start.ArgumentList.Add("--fallback-only");
        start.ArgumentList.Add("--skip-build");
        start.Environment["STRAPVIT_API_BIN"] = GpuCheckFactAttribute.ApiBin;
        start.Environment["STRAPVIT_GPU_CHECK_PORT"] = FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(timeout.Token);
        var output = await stdout + await stderr;

        Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}:\n{output}");
        Assert.Contains("checking the CPU fallback path", output, StringComparison.Ordinal);
        Assert.Matches(@"ok +all \d+ sessions on CPUExecutionProvider, each after a logged fallback warning", output);
        Assert.Contains("ok    Inference:Device=Cuda without CUDA exits 1", output, StringComparison.Ordinal);
        Assert.DoesNotContain("FAIL", output, StringComparison.Ordinal);
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}

/// <summary>
/// Needs curl, the service built beside the tests (same configuration), and no NVIDIA GPU (with one, the script's
/// CUDA path is what to run, by hand: tools/gpu-check.sh --require-gpu).
/// </summary>
public sealed class GpuCheckFactAttribute : FactAttribute
{
    public static string ApiBin { get; } = DeployFiles.PathOf(
        "src", "StrapVit.Api", "bin",
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug",
        "net10.0", "linux-x64");

    public GpuCheckFactAttribute()
    {
        if (!OnPath("curl"))
        {
            Skip = "curl is not installed (apt-get install curl; .ci/run does so).";
        }
        else if (OnPath("nvidia-smi"))
        {
            Skip = "an NVIDIA GPU is present: run tools/gpu-check.sh --require-gpu for the CUDA path instead.";
        }
        else if (!File.Exists(Path.Combine(ApiBin, "StrapVit.Api.dll")))
        {
            Skip = $"the service is not built beside the tests ({Path.GetRelativePath(DeployFiles.PathOf(), ApiBin)}).";
        }
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, tool)));
}
