using System.Net;
using System.Net.Http.Json;
using Google.Protobuf;
using Onnx;
using StrapVit.Api.Tests.Support;

namespace StrapVit.Api.Tests.Attacks;

/// <summary>
/// A service whose gradient graphs cannot be built (the model ends in an op without a gradient rule) keeps
/// classifying, says why in <c>GET /v1/model</c>, and answers the gradient endpoints with 503.
/// </summary>
public sealed class GradientsUnavailableTests : IClassFixture<GradientsUnavailableTests.UndifferentiableModelFactory>
{
    private readonly HttpClient client;

    public GradientsUnavailableTests(UndifferentiableModelFactory factory) => client = factory.CreateClient();

    [Fact]
    public async Task Classification_works_and_the_model_reports_the_reason()
    {
        using var classify = await client.PostAsync("/v1/classify", Http.Multipart(AttackServiceFactory.Image()));
        Assert.Equal(HttpStatusCode.OK, classify.StatusCode);
        var gradients = (await client.GetFromJsonAsync<System.Text.Json.JsonElement>("/v1/model")).GetProperty("gradients");
        Assert.False(gradients.GetProperty("available").GetBoolean());
        Assert.Contains("Sin", gradients.GetProperty("error").GetString(), StringComparison.Ordinal);
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

    public sealed class UndifferentiableModelFactory() : ServiceFactory(new Dictionary<string, string?>
    {
        ["Model:Path"] = SinPackage(),
        ["Model:CacheDirectory"] = Path.Combine(Path.GetTempPath(), "strapvit-attack-tests", "sin-" + Guid.NewGuid().ToString("N")),
    })
    {
        /// <summary>The attack fixture with Sin applied to its logits: it classifies, but no gradient rule covers Sin.</summary>
        private static string SinPackage()
        {
            var dir = Directory.CreateTempSubdirectory("strapvit-sin-").FullName;
            var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(AttackServiceFactory.ModelPath, "model.onnx")));
            var output = model.Graph.Output[0].Name;
            var last = model.Graph.Node.Single(n => n.Output.Contains(output));
            last.Output[last.Output.IndexOf(output)] = "before_sin";
            var sin = new NodeProto { OpType = "Sin", Name = "final_sin" };
            sin.Input.Add("before_sin");
            sin.Output.Add(output);
            model.Graph.Node.Add(sin);
            File.WriteAllBytes(Path.Combine(dir, "model.onnx"), model.ToByteArray());
            File.Copy(Path.Combine(AttackServiceFactory.ModelPath, "model.json"), Path.Combine(dir, "model.json"));
            return dir;
        }
    }
}
