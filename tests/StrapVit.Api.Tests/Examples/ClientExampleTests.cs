using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Examples;

/// <summary>
/// The client examples of docs/examples (curl, Python with requests, C# with HttpClient) run against the service on
/// real Kestrel, with an API key configured and handed to them as <c>STRAPVIT_API_KEY</c>. What each prints (the
/// classification, the FGSM result, the /v2 prediction) must be what the service answers to the same requests made
/// here; without the key each stops at the attack with the service's 401 problem. The C# example is compiled here
/// (a file-based app) and always runs; the others are skipped where their tools are missing.
/// </summary>
public sealed partial class ClientExampleTests(ExampleServiceFixture service) : IClassFixture<ExampleServiceFixture>
{
    private const string Image = "samples/ankle-boot.png";

    [Fact]
    public Task The_csharp_example_prints_the_services_answers() =>
        // The first run builds the file-based app (seconds on a quiet machine, more on a loaded one).
        CheckAsync(Dotnet("run", "docs/examples/csharp/Client.cs", "--"), TimeSpan.FromMinutes(5));

    [PythonRequestsFact]
    public Task The_python_example_prints_the_services_answers() =>
        CheckAsync(new ProcessStartInfo(ExternalTools.DebianPython) { ArgumentList = { "docs/examples/python/client.py" } }, TimeSpan.FromMinutes(1));

    [CurlFact]
    public Task The_curl_example_prints_the_services_answers() =>
        CheckAsync(new ProcessStartInfo("bash") { ArgumentList = { "docs/examples/curl/client.sh" } }, TimeSpan.FromMinutes(1));

    private async Task CheckAsync(ProcessStartInfo example, TimeSpan timeout)
    {
        var expected = await ExpectedAsync();

        var (code, stdout, stderr) = await RunAsync(example, timeout, ExampleServiceFixture.ApiKey);

        Assert.True(code == 0, $"exit {code}\n{stdout}\n{stderr}");
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 3, $"three lines expected:\n{stdout}");

        var classify = ClassifyLine().Match(lines[0]);
        Assert.True(classify.Success, lines[0]);
        Assert.Equal(expected.Label, classify.Groups["label"].Value);
        Assert.Equal(expected.Probability, Number(classify, "p"), 0.0006);

        var fgsm = FgsmLine().Match(lines[1]);
        Assert.True(fgsm.Success, lines[1]);
        Assert.Equal(expected.Label, fgsm.Groups["from"].Value);
        Assert.Equal(expected.Adversarial, fgsm.Groups["to"].Value);
        Assert.Equal(expected.Success ? "true" : "false", fgsm.Groups["success"].Value);
        Assert.Equal(expected.Linf, Number(fgsm, "linf"), 0.00006);

        var infer = InferLine().Match(lines[2]);
        Assert.True(infer.Success, lines[2]);
        Assert.Equal(expected.Index, int.Parse(infer.Groups["class"].Value, CultureInfo.InvariantCulture));
        Assert.Equal(expected.Label, infer.Groups["label"].Value);

        // Without the key: the classification still prints, the attack is refused and the example says why.
        var (refusedCode, refusedStdout, refusedStderr) = await RunAsync(example, timeout, apiKey: null);

        Assert.NotEqual(0, refusedCode);
        Assert.StartsWith("classify: " + expected.Label, refusedStdout.Trim(), StringComparison.Ordinal);
        Assert.DoesNotContain("fgsm:", refusedStdout, StringComparison.Ordinal);
        Assert.Contains("API key required", refusedStderr, StringComparison.Ordinal);
    }

    /// <summary>What the examples should print: the service's own answers to the same image.</summary>
    private async Task<Expected> ExpectedAsync()
    {
        var image = await File.ReadAllBytesAsync(Path.Combine(RepoPaths.Root, Image));
        using var classified = await service.Client.PostAsync("/v1/classify", Http.Multipart(image));
        Assert.True(classified.IsSuccessStatusCode, await classified.Content.ReadAsStringAsync());
        var top = (await classified.JsonAsync()).GetProperty("predictions")[0];

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/attacks/fgsm");
        var form = Http.Multipart(image);
        form.Add(new StringContent((8f / 255).ToString(CultureInfo.InvariantCulture)), "epsilon");
        request.Content = form;
        request.Headers.Add("X-API-Key", ExampleServiceFixture.ApiKey);
        using var attacked = await service.Client.SendAsync(request);
        Assert.True(attacked.IsSuccessStatusCode, await attacked.Content.ReadAsStringAsync());
        var fgsm = await attacked.JsonAsync();

        return new Expected(
            top.GetProperty("index").GetInt32(),
            top.GetProperty("label").GetString()!,
            top.GetProperty("probability").GetDouble(),
            fgsm.GetProperty("adversarial").GetProperty("label").GetString()!,
            fgsm.GetProperty("success").GetBoolean(),
            fgsm.GetProperty("linf").GetDouble());
    }

    private Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(ProcessStartInfo example, TimeSpan timeout, string? apiKey)
    {
        var start = new ProcessStartInfo(example.FileName) { WorkingDirectory = RepoPaths.Root };
        foreach (var argument in example.ArgumentList.Append(service.BaseAddress).Append(Image))
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in example.Environment)
        {
            start.Environment[name] = value;
        }

        // Numbers printed the same way whatever the machine's locale.
        start.Environment["LC_ALL"] = "C.UTF-8";
        start.Environment.Remove("STRAPVIT_API_KEY");
        if (apiKey is not null)
        {
            start.Environment["STRAPVIT_API_KEY"] = apiKey;
        }

        return ExternalTools.RunAsync(start, timeout);
    }

    /// <summary><c>dotnet</c> with these arguments, without the test run's MSBuild settings (they would steer the example's build).</summary>
    private static ProcessStartInfo Dotnet(params string[] arguments)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet");
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(name);
        }

        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        return start;
    }

    private static double Number(Match match, string group) => double.Parse(match.Groups[group].Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^classify: (?<label>.+) \((?<p>[0-9.]+)\)$")]
    private static partial Regex ClassifyLine();

    [GeneratedRegex(@"^fgsm: (?<from>.+) -> (?<to>.+) \(success: (?<success>true|false), linf: (?<linf>[0-9.]+)\)$")]
    private static partial Regex FgsmLine();

    [GeneratedRegex(@"^v2 infer: class (?<class>[0-9]+) (?<label>.+)$")]
    private static partial Regex InferLine();

    private sealed record Expected(int Index, string Label, double Probability, string Adversarial, bool Success, double Linf);
}

/// <summary>The service on real Kestrel with one API key configured (its SHA-256, as the configuration holds keys).</summary>
public sealed class ExampleServiceFixture() : KestrelServiceFixture(new Dictionary<string, string?>
{
    ["Auth:ApiKeys:examples"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(ApiKey))),
})
{
    public const string ApiKey = "docs-examples-test-key";
}
