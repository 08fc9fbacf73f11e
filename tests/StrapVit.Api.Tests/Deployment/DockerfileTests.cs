using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Deployment;

/// <summary>The Dockerfile and .dockerignore against the app: port, health check, user, entry point, build inputs.</summary>
public sealed partial class DockerfileTests
{
    private static readonly IReadOnlyList<DockerInstruction> Instructions = DeployFiles.Dockerfile();

    public static TheoryData<string> RuntimeStages => ["cpu", "gpu"];

    [Theory]
    [MemberData(nameof(RuntimeStages))]
    public void Runtime_stage_listens_on_the_app_port_and_checks_liveness_with_the_shipped_script(string stage)
    {
        var env = EnvOf(stage);
        var copies = Of(stage, "COPY").Select(i => i.Arguments).ToList();

        Assert.Equal(DeployFiles.AppPort.ToString(), env["ASPNETCORE_HTTP_PORTS"]);
        Assert.Equal(DeployFiles.AppPort.ToString(), Assert.Single(Of(stage, "EXPOSE")).Arguments);
        var healthcheck = Assert.Single(Of(stage, "HEALTHCHECK")).Arguments;
        var command = HealthcheckCommand().Match(healthcheck);
        Assert.True(command.Success, $"HEALTHCHECK should run the script with a path: {healthcheck}");
        Assert.Equal(DeployFiles.LivePath, command.Groups["path"].Value);
        Assert.Contains($"deploy/docker/healthcheck.sh {command.Groups["script"].Value}", copies);
        Assert.True(File.Exists(DeployFiles.PathOf("deploy", "docker", "healthcheck.sh")));
    }

    [Theory]
    [MemberData(nameof(RuntimeStages))]
    public void Runtime_stage_runs_the_api_assembly_as_a_numeric_non_root_user_with_a_writable_cache_setting(string stage)
    {
        var user = Assert.Single(Of(stage, "USER")).Arguments;
        var entrypoint = Assert.Single(Of(stage, "ENTRYPOINT")).Arguments;
        var env = EnvOf(stage);

        // Numeric, so that Kubernetes' runAsNonRoot can verify it; and the same uid the manifests run as.
        Assert.Matches("^[1-9][0-9]*$", user);
        Assert.Equal(user, YamlTree.Scalar(DeployFiles.K8s("deployment.yaml"), "spec", "template", "spec", "securityContext", "runAsUser"));
        Assert.Equal($"[\"dotnet\", \"{typeof(Program).Assembly.GetName().Name}.dll\"]", entrypoint);
        Assert.Equal("0", env["DOTNET_EnableDiagnostics"]);
        Assert.StartsWith("/var/cache/", env["Model__CacheDirectory"], StringComparison.Ordinal);
        Assert.Contains(Of(stage, "RUN"), r => r.Arguments.Contains("chown", StringComparison.Ordinal)
            && r.Arguments.Contains(env["Model__CacheDirectory"], StringComparison.Ordinal));
    }

    [Fact]
    public void Cpu_stage_runs_on_cpu_and_gpu_stage_tries_cuda()
    {
        Assert.Equal("Cpu", EnvOf("cpu")["Inference__Device"]);
        Assert.Equal("Auto", EnvOf("gpu")["Inference__Device"]);
        Assert.Contains(Of("build", "RUN"), r => r.Arguments.Contains("rm /out/cpu/libonnxruntime_providers_cuda.so", StringComparison.Ordinal));
    }

    [Fact]
    public void The_runtime_images_match_the_target_framework_and_the_cuda_major_onnx_runtime_links()
    {
        var args = Instructions.Where(i => i.Keyword == "ARG" && i.Stage.Length == 0)
            .Select(i => i.Arguments.Split('=', 2)).ToDictionary(a => a[0], a => a.Length > 1 ? a[1] : "");
        var framework = XDocument.Load(DeployFiles.PathOf("Directory.Build.props")).Descendants("TargetFramework").Single().Value;

        Assert.Equal(framework.Replace("net", "", StringComparison.Ordinal), args["DOTNET_VERSION"]);
        Assert.Equal("mcr.microsoft.com/dotnet/sdk:${DOTNET_VERSION} AS build", From("build"));
        Assert.Equal("mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION} AS cpu", From("cpu"));
        Assert.Equal("nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu24.04 AS gpu", From("gpu"));
        // The CUDA provider shipped next to the tests names the CUDA runtime it needs (libcudart.so.<major>).
        var provider = Path.Combine(AppContext.BaseDirectory, "libonnxruntime_providers_cuda.so");
        Assert.Equal(CudartMajor(provider), args["CUDA_VERSION"].Split('.')[0]);
    }

    [Fact]
    public void The_build_copies_every_project_the_api_needs_before_restoring_and_publishes_the_api()
    {
        var build = Instructions.Where(i => i.Stage == "build").ToList();
        var restore = build.FindIndex(i => i.Keyword == "RUN" && i.Arguments.StartsWith("dotnet restore", StringComparison.Ordinal));
        var copiedBeforeRestore = build.Take(restore).Where(i => i.Keyword == "COPY").SelectMany(i => i.Arguments.Split(' ')).ToHashSet();

        Assert.True(restore > 0, "The build stage restores before copying the sources.");
        foreach (var project in ProjectClosure("src/StrapVit.Api/StrapVit.Api.csproj"))
        {
            Assert.Contains(project, copiedBeforeRestore);
        }

        Assert.Contains(build, i => i.Keyword == "RUN" && i.Arguments.StartsWith("dotnet publish src/StrapVit.Api/StrapVit.Api.csproj -c Release", StringComparison.Ordinal));
        Assert.Contains(build, i => i.Keyword == "COPY" && i.Arguments == "models/fashion-vit-tiny/ models/fashion-vit-tiny/");
        Assert.Contains(@"..\..\models\fashion-vit-tiny\", File.ReadAllText(DeployFiles.PathOf("src", "StrapVit.Api", "StrapVit.Api.csproj")), StringComparison.Ordinal);
    }

    [Fact]
    public void The_docker_context_keeps_what_the_build_copies_and_leaves_out_tests_and_git()
    {
        var patterns = File.ReadAllLines(DeployFiles.PathOf(".dockerignore"))
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        var needed = new List<string>
        {
            "global.json", "Directory.Build.props", "Directory.Packages.props", ".editorconfig",
            "models/fashion-vit-tiny/model.onnx", "models/fashion-vit-tiny/model.json", "deploy/docker/healthcheck.sh",
            "samples/fashion-mnist/calib-500-images-idx3-ubyte.gz", "samples/fashion-mnist/calib-500-labels-idx1-ubyte.gz",
            "samples/fashion-mnist/test-1000-images-idx3-ubyte.gz", "samples/fashion-mnist/test-1000-labels-idx1-ubyte.gz",
        };
        needed.AddRange(Directory.EnumerateFiles(DeployFiles.PathOf("src"), "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(RepoPaths.Root, f).Replace('\\', '/'))
            .Where(f => !f.Split('/').Any(part => part is "bin" or "obj")));

        Assert.DoesNotContain(needed, f => Ignored(patterns, f));
        Assert.All(new[] { "tests/StrapVit.Api.Tests/StrapVit.Api.Tests.csproj", ".git/HEAD", "src/StrapVit.Api/bin/x.dll", "models/other/model.onnx", "deploy/k8s/base/service.yaml",
                "deploy/secrets/api-key.sha256", "samples/bag.png", "samples/fashion-mnist/tune-500-images-idx3-ubyte.gz" },
            f => Assert.True(Ignored(patterns, f), $"{f} should stay out of the build context"));
    }

    private static IEnumerable<DockerInstruction> Of(string stage, string keyword) =>
        Instructions.Where(i => i.Stage == stage && i.Keyword == keyword);

    private static string From(string stage) => Instructions.Single(i => i.Keyword == "FROM" && i.Stage == stage).Arguments;

    private static Dictionary<string, string> EnvOf(string stage) =>
        Of(stage, "ENV").SelectMany(i => EnvPair().Matches(i.Arguments))
            .ToDictionary(m => m.Groups["key"].Value, m => m.Groups["value"].Value, StringComparer.Ordinal);

    /// <summary>The project and every project it references, transitively, as repository-relative paths.</summary>
    private static HashSet<string> ProjectClosure(string project)
    {
        var result = new HashSet<string>(StringComparer.Ordinal);
        var queue = new Queue<string>([project]);
        while (queue.TryDequeue(out var p))
        {
            if (!result.Add(p))
            {
                continue;
            }

            var dir = Path.GetDirectoryName(DeployFiles.PathOf(p))!;
            foreach (var reference in XDocument.Load(DeployFiles.PathOf(p)).Descendants("ProjectReference"))
            {
                var full = Path.GetFullPath(Path.Combine(dir, reference.Attribute("Include")!.Value.Replace('\\', '/')));
                queue.Enqueue(Path.GetRelativePath(RepoPaths.Root, full).Replace('\\', '/'));
            }
        }

        return result;
    }

    /// <summary>Docker's rule: the last pattern matching the path or one of its parent folders decides; '!' re-includes.</summary>
    private static bool Ignored(IEnumerable<string> patterns, string path)
    {
        var ignored = false;
        foreach (var raw in patterns)
        {
            var negate = raw.StartsWith('!');
            var pattern = (negate ? raw[1..] : raw).Trim('/');
            var regex = new Regex("^" + Regex.Escape(pattern).Replace(@"\*\*/", "(.*/)?", StringComparison.Ordinal)
                .Replace(@"\*\*", ".*", StringComparison.Ordinal).Replace(@"\*", "[^/]*", StringComparison.Ordinal)
                .Replace(@"\?", "[^/]", StringComparison.Ordinal) + "$");
            var parts = path.Split('/');
            if (Enumerable.Range(1, parts.Length).Any(n => regex.IsMatch(string.Join('/', parts.Take(n)))))
            {
                ignored = !negate;
            }
        }

        return ignored;
    }

    /// <summary>The major version in the "libcudart.so.N" dependency of a shared library (its dynamic string table).</summary>
    private static string CudartMajor(string library)
    {
        var needle = Encoding.ASCII.GetBytes("libcudart.so.");
        using var stream = File.OpenRead(library);
        var buffer = new byte[1 << 20];
        var carry = 0;
        int read;
        while ((read = stream.Read(buffer, carry, buffer.Length - carry)) > 0)
        {
            var length = carry + read;
            var at = buffer.AsSpan(0, length).IndexOf(needle);
            if (at >= 0 && at + needle.Length + 3 <= length)
            {
                var digits = buffer.AsSpan(at + needle.Length, 3).ToArray().TakeWhile(b => char.IsAsciiDigit((char)b)).ToArray();
                return Encoding.ASCII.GetString(digits);
            }

            // Keep the tail so a name split across two reads is still found.
            carry = Math.Min(length, needle.Length + 3);
            buffer.AsSpan(length - carry, carry).CopyTo(buffer);
        }

        throw new InvalidOperationException($"{library} names no libcudart.so dependency.");
    }

    [GeneratedRegex(@"(?<key>[A-Za-z_][A-Za-z0-9_]*)=(?<value>\S*)")]
    private static partial Regex EnvPair();

    [GeneratedRegex(@"CMD \[""(?<script>[^""]+)"", ""(?<path>[^""]+)""\]$")]
    private static partial Regex HealthcheckCommand();
}
