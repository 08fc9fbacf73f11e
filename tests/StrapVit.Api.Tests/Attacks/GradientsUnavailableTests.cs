using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using StrapVit.Api.Tests.Support;
using StrapVit.Core.Gradients;

namespace StrapVit.Api.Tests.Attacks;

/// <summary>
/// A service whose gradient graphs cannot be loaded (the cache holds a corrupt graph for this model) keeps
/// classifying, says why in <c>GET /v1/model</c>, and answers the gradient endpoints with 503.
/// </summary>
public sealed class GradientsUnavailableTests : IClassFixture<GradientsUnavailableTests.BrokenCacheFactory>
{
    private readonly HttpClient client;

    public GradientsUnavailableTests(BrokenCacheFactory factory) => client = factory.CreateClient();

    [Fact]
    public async Task Classification_works_and_the_model_reports_the_reason()
    {
        using var classify = await client.PostAsync("/v1/classify", Http.Multipart(AttackServiceFactory.Image()));
        Assert.Equal(HttpStatusCode.OK, classify.StatusCode);
        var gradients = (await client.GetFromJsonAsync<System.Text.Json.JsonElement>("/v1/model")).GetProperty("gradients");
        Assert.False(gradients.GetProperty("available").GetBoolean());
        Assert.False(string.IsNullOrWhiteSpace(gradients.GetProperty("error").GetString()));
    }

    [Theory]
    [InlineData("/v1/attacks/fgsm")]
    [InlineData("/v1/attacks/pgd")]
    [InlineData("/v1/attacks/deepfool")]
    [InlineData("/v1/attacks/patch")]
    [InlineData("/v1/explain/saliency")]
    public async Task Gradient_endpoints_answer_503_with_the_reason(string path)
    {
        using var response = await client.PostAsync(path, Http.Multipart(AttackServiceFactory.Image()));
        var problem = await response.AssertProblemAsync(503);
        Assert.Contains("gradient", problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.NotNull(response.Headers.RetryAfter);
    }

    public sealed class BrokenCacheFactory() : ServiceFactory(new Dictionary<string, string?>
    {
        ["Model:Path"] = AttackServiceFactory.ModelPath,
        ["Model:CacheDirectory"] = BrokenCache(),
    })
    {
        private static string BrokenCache()
        {
            var dir = Path.Combine(Path.GetTempPath(), "strapvit-attack-tests", "broken-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            var sha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(AttackServiceFactory.ModelPath, "model.onnx"))));
            File.WriteAllText(Path.Combine(dir, GradientGraphs.CacheFileName(sha, GradientObjective.CrossEntropy)), "not an onnx model");
            return dir;
        }
    }
}
