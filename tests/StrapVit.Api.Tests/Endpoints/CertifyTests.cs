using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StrapVit.Api.Tests.Support;
using StrapVit.Core.Certification;
using StrapVit.Core.Imaging;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Endpoints;

/// <summary>
/// defense=certify on /v1/classify: the body against PatchCleanser run directly in Core on the same decoded image,
/// and the 400s for patch sizes the mask set cannot cover.
/// </summary>
public sealed class CertifyTests(ServiceFactory factory) : IClassFixture<ServiceFactory>
{
    private readonly HttpClient _client = factory.CreateClient();

    private static byte[] Bag => File.ReadAllBytes(RepoPaths.Sample("bag.png"));

    /// <summary>The certificate computed outside the service: Core's certifier on the embedded model.</summary>
    private static CertifiedClassification Direct(byte[] png, int patch)
    {
        var options = new InferenceOptions { Device = InferenceDevice.Cpu };
        var package = ModelPackage.Load(RepoPaths.DefaultModel);
        using var setup = CertifyLoader.Create(package, new OnnxSessionFactory(options, NullLogger<OnnxSessionFactory>.Instance), new CertifyOptions(), null);
        var image = new ImageDecoder(new ImageLimits()).Decode(png, 1, 28, 28);
        return setup.Certifier!.Certify(image.Data, patch);
    }

    [Theory]
    [InlineData(null, 4, 2, 24, 3)]
    [InlineData(6, 6, 3, 15, 4)]
    public async Task Certify_answers_patchcleansers_label_and_certificate(int? patch, int expectedPatch, int maskSide, int maskCount, int largestCols)
    {
        var query = patch is null ? "defense=certify&topK=10" : $"defense=certify&patch={patch}&topK=10";
        using var response = await _client.PostAsync($"/v1/classify?{query}", Http.Multipart(Bag));

        var body = await response.JsonAsync();
        var expected = Direct(Bag, expectedPatch);
        var defense = body.GetProperty("defense");
        Assert.Equal("certify", defense.GetProperty("mode").GetString());
        Assert.Equal(expected.Report.Certified, defense.GetProperty("certified").GetBoolean());
        Assert.Equal(expectedPatch, defense.GetProperty("patchSize").GetInt32());
        Assert.Equal("drop", defense.GetProperty("method").GetString());
        // Each token sees only its own 4x4 patch: a 4-pixel patch reaches 2 tokens per axis (2x2 masks at stride 1: 6
        // rows of them; the default column border stride of 2 merges the two leftmost and the two rightmost columns of
        // masks into 3-token ones: 4 columns, 24 masks); a 6-pixel patch reaches 3 (3x3 masks, 5 rows x 3 columns).
        var masks = defense.GetProperty("masks");
        Assert.Equal(maskSide, masks.GetProperty("rows").GetInt32());
        Assert.Equal(maskSide, masks.GetProperty("cols").GetInt32());
        Assert.Equal(1, masks.GetProperty("stride").GetInt32());
        Assert.Equal(1, masks.GetProperty("rowBorderStride").GetInt32());
        Assert.Equal(2, masks.GetProperty("colBorderStride").GetInt32());
        Assert.Equal(maskSide, masks.GetProperty("largestRows").GetInt32());
        Assert.Equal(largestCols, masks.GetProperty("largestCols").GetInt32());
        Assert.Equal(maskCount, masks.GetProperty("count").GetInt32());
        Assert.Equal(4, defense.GetProperty("receptiveField").GetProperty("rows").GetProperty("size").GetInt32());
        Assert.Equal(expected.Report.Forwards, defense.GetProperty("forwards").GetInt32());
        if (expected.Report.Certified)
        {
            Assert.Equal(maskCount + (maskCount * (maskCount - 1) / 2), defense.GetProperty("forwards").GetInt32());
        }

        Assert.Equal(expected.Report.Case, defense.GetProperty("case").GetString());
        Assert.True(defense.GetProperty("elapsedMs").GetDouble() > 0);
        var predictions = body.GetProperty("predictions").EnumerateArray().ToArray();
        Assert.Equal(10, predictions.Length);
        Assert.Equal(expected.Label, predictions[0].GetProperty("index").GetInt32());
        var votes = predictions.Sum(p => p.GetProperty("probability").GetDouble());
        Assert.Equal(1.0, votes, 5);
        Assert.Equal(expected.Votes[expected.Label] / (double)maskCount, predictions[0].GetProperty("probability").GetDouble(), 5);
    }

    [Fact]
    public async Task A_patch_over_the_configured_limit_is_a_400_naming_the_parameter()
    {
        using var response = await _client.PostAsync("/v1/classify?defense=certify&patch=17", Http.Multipart(Bag));

        var problem = await response.AssertProblemAsync(400);
        Assert.Equal("Invalid parameter 'patch'", problem.GetProperty("title").GetString());
        Assert.Contains("outside [1, 16]", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_patch_without_certify_is_a_400()
    {
        using var response = await _client.PostAsync("/v1/classify?defense=mitigate&patch=4", Http.Multipart(Bag));

        var problem = await response.AssertProblemAsync(400);
        Assert.Contains("only to defense=certify", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Inspect_has_nothing_to_show_for_certify()
    {
        using var response = await _client.PostAsync("/v1/defense/inspect?defense=certify", Http.Multipart(Bag));

        await response.AssertProblemAsync(400);
    }

    [Fact]
    public async Task The_model_description_says_certify_is_available()
    {
        var body = await (await _client.GetAsync("/v1/model")).JsonAsync();

        var certify = body.GetProperty("certify");
        Assert.True(certify.GetProperty("available").GetBoolean());
        Assert.Equal("drop", certify.GetProperty("method").GetString());
        Assert.Equal(4, certify.GetProperty("defaultPatchSize").GetInt32());
    }

    [Fact]
    public async Task A_patch_whose_masks_exceed_the_grid_is_a_400_with_the_reason()
    {
        // A 24-pixel patch from pixel 1 reaches tokens 0 to 6 (token 0 reads pixels 0-3, token 6 reads 24-27): all 7;
        // at stride 2 a mask would be 7 + 2 - 1 = 8 tokens, more than the grid.
        await using var wide = new ServiceFactory(new Dictionary<string, string?> { ["Certify:MaxPatchSize"] = "28", ["Certify:MaskStride"] = "2" });
        using var client = wide.CreateClient();

        using var response = await client.PostAsync("/v1/classify?defense=certify&patch=24", Http.Multipart(Bag));

        var problem = await response.AssertProblemAsync(400);
        Assert.Contains("more than the 7x7 grid", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_zero_mask_stride_stops_start_up_with_the_options_message()
    {
        using var bad = new ServiceFactory(new Dictionary<string, string?> { ["Certify:MaskStride"] = "0" });

        var ex = Assert.Throws<OptionsValidationException>(() => bad.CreateClient());

        Assert.Contains("Certify:MaskStride must be >= 1.", ex.Message, StringComparison.Ordinal);
    }
}
