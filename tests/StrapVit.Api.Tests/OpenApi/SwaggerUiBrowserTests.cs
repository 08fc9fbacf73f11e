using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;
using Xunit.Abstractions;

namespace StrapVit.Api.Tests.OpenApi;

/// <summary>
/// Swagger UI as a person uses it: the service on real Kestrel, /swagger in Debian's headless chromium (driven by
/// Playwright over the DevTools protocol; its own browser download is never used), and three operations run from
/// the page with "Try it out" and "Execute": classify with a PNG chosen in the file input, FGSM with nothing but the
/// form's defaults, and inspect with image/png chosen as the response's media type. The answers the page shows are
/// checked against the service's answers to the same requests made here. Skipped where chromium is not installed.
/// </summary>
public sealed partial class SwaggerUiBrowserTests(KestrelServiceFixture service, ITestOutputHelper output) : IClassFixture<KestrelServiceFixture>
{
    /// <summary>How long one step (a click, an element to appear, an answer) may take on a loaded machine.</summary>
    private static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(30);

    private static readonly string Sample = RepoPaths.Sample("ankle-boot.png");

    [ChromiumFact(Timeout = 180_000)]
    public async Task Classify_an_attack_with_the_forms_defaults_and_inspect_as_png_run_from_the_page()
    {
        var watch = Stopwatch.StartNew();
        var image = await File.ReadAllBytesAsync(Sample);
        var expectedFgsm = await PostAsync("/v1/attacks/fgsm", image);
        var expectedHeatmap = await PostPngAsync("/v1/defense/inspect", image);

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = ExternalTools.Find("chromium"),
            Headless = true,
            Timeout = (float)StepTimeout.TotalMilliseconds,
        });
        var page = await browser.NewPageAsync();
        page.SetDefaultTimeout((float)StepTimeout.TotalMilliseconds);
        var pageErrors = new List<string>();
        page.PageError += (_, error) => pageErrors.Add(error);
        await Step("Swagger UI loads", () => page.GotoAsync(service.BaseAddress + "/swagger"));
        var started = watch.Elapsed;

        // Classify: the request body's default media type is multipart/form-data, with a file input for 'image'.
        var classify = await SwaggerOperation.TryItOutAsync(page, "Classification", "Classify");
        await Step("classify: choose the PNG", () => classify.Block.Locator("input[type=file]").SetInputFilesAsync(Sample));
        var (classifyResponse, _) = await classify.ExecuteAsync("/v1/classify");
        Assert.Equal(200, classifyResponse.Status);
        Assert.Equal("200", await classify.ShownStatusAsync());
        var shownClassification = JsonDocument.Parse(await classify.ShownBodyAsync()).RootElement;
        var shownTop = shownClassification.GetProperty("predictions")[0];
        // The same request here, with the defense's seed the page reports, gives the same answer.
        var seed = shownClassification.GetProperty("defense").GetProperty("seed").GetInt32();
        var expectedTop = (await PostAsync($"/v1/classify?seed={seed}", image)).GetProperty("predictions")[0];
        Assert.Equal(expectedTop.GetProperty("label").GetString(), shownTop.GetProperty("label").GetString());
        Assert.Equal(expectedTop.GetProperty("index").GetInt32(), shownTop.GetProperty("index").GetInt32());
        Assert.Equal(expectedTop.GetProperty("probability").GetDouble(), shownTop.GetProperty("probability").GetDouble());

        // FGSM with the form as it comes: untargeted at 8/255, label, target and seed blank.
        var fgsm = await SwaggerOperation.TryItOutAsync(page, "Attacks", "AttackFgsm");
        Assert.Equal("0.03137255", await fgsm.Block.Locator("tr[data-property-name=epsilon] input[type=text]").InputValueAsync());
        await Step("fgsm: choose the PNG", () => fgsm.Block.Locator("input[type=file]").SetInputFilesAsync(Sample));
        var (fgsmResponse, fgsmForm) = await fgsm.ExecuteAsync("/v1/attacks/fgsm");
        Assert.Equal(200, fgsmResponse.Status);
        Assert.Equal("0.03137255", fgsmForm["epsilon"]);
        Assert.Equal("", fgsmForm["targetClass"]);
        Assert.Equal("", fgsmForm["label"]);
        Assert.Equal("200", await fgsm.ShownStatusAsync());
        var shownFgsm = JsonDocument.Parse(await fgsm.ShownBodyAsync()).RootElement;
        Assert.Equal("fgsm", shownFgsm.GetProperty("attack").GetString());
        // One signed-gradient step of 8/255 moves some pixel by the whole budget (float32 arithmetic).
        Assert.Equal(8.0 / 255, shownFgsm.GetProperty("linf").GetDouble(), 1e-6);
        Assert.Equal(expectedTop.GetProperty("label").GetString(), shownFgsm.GetProperty("original").GetProperty("label").GetString());
        Assert.Equal(expectedFgsm.GetProperty("adversarial").GetProperty("label").GetString(), shownFgsm.GetProperty("adversarial").GetProperty("label").GetString());
        Assert.Equal(expectedFgsm.GetProperty("success").GetBoolean(), shownFgsm.GetProperty("success").GetBoolean());

        // Inspect with image/png chosen as the response's media type: the page shows the heatmap as an image.
        var inspect = await SwaggerOperation.TryItOutAsync(page, "Defense", "InspectDefense");
        await Step("inspect: choose the PNG", () => inspect.Block.Locator("input[type=file]").SetInputFilesAsync(Sample));
        await Step("inspect: choose image/png as the response media type",
            () => inspect.Block.Locator(".response-control-media-type--accept-controller select").SelectOptionAsync("image/png"));
        var (inspectResponse, _) = await inspect.ExecuteAsync("/v1/defense/inspect");
        Assert.Equal(200, inspectResponse.Status);
        Assert.Equal("image/png", await inspectResponse.Request.HeaderValueAsync("accept"));
        Assert.Equal("image/png", await inspectResponse.HeaderValueAsync("content-type"));
        Assert.Equal("200", await inspect.ShownStatusAsync());
        Assert.Contains("content-type: image/png", await inspect.ShownHeadersAsync(), StringComparison.Ordinal);
        var shownImage = inspect.Block.Locator(".live-responses-table .response-col_description img");
        Assert.StartsWith("blob:", await shownImage.GetAttributeAsync("src"), StringComparison.Ordinal);
        int[] shownSize = [];
        await Step("inspect: the heatmap is shown", async () => shownSize = await shownImage.EvaluateAsync<int[]>("""
            img => img.complete && img.naturalWidth > 0
                ? [img.naturalWidth, img.naturalHeight]
                : new Promise((resolve, reject) => {
                    img.onload = () => resolve([img.naturalWidth, img.naturalHeight]);
                    img.onerror = () => reject(new Error("the image on the page did not load"));
                })
            """));
        Assert.Equal(PngSize(expectedHeatmap), shownSize);

        Assert.Empty(pageErrors);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Swagger UI in chromium: {watch.Elapsed.TotalSeconds:F1} s in all, {(watch.Elapsed - started).TotalSeconds:F1} s from the loaded page"));
    }

    private async Task<JsonElement> PostAsync(string path, byte[] image)
    {
        using var response = await service.Client.PostAsync(path, Http.Multipart(image));
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        return await response.JsonAsync();
    }

    private async Task<byte[]> PostPngAsync(string path, byte[] image)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Http.Multipart(image) };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("image/png"));
        using var response = await service.Client.SendAsync(request);
        Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadAsByteArrayAsync();
    }

    /// <summary>Width and height from a PNG's IHDR chunk (bytes 16 to 23, big-endian).</summary>
    private static int[] PngSize(byte[] png) =>
        [BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16, 4)), BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20, 4))];

    /// <summary>Runs one step of the page; a timeout says which step it was.</summary>
    private static async Task Step(string what, Func<Task> action)
    {
        try
        {
            await action();
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"Swagger UI step '{what}' did not complete within {StepTimeout.TotalSeconds:F0} s: {ex.Message}", ex);
        }
    }

    /// <summary>One operation's block on the page (<c>#operations-{tag}-{operationId}</c>), expanded with "Try it out" pressed.</summary>
    private sealed partial class SwaggerOperation(IPage page, ILocator block, string name)
    {
        public ILocator Block => block;

        [GeneratedRegex(@"-F '(?<name>[^=']+)=(?<value>[^']*)'")]
        private static partial Regex CurlFormField();

        private ILocator LiveResponse => block.Locator(".live-responses-table tr.response");

        public static async Task<SwaggerOperation> TryItOutAsync(IPage page, string tag, string operationId)
        {
            var block = page.Locator($"#operations-{tag}-{operationId}");
            await Step($"{operationId}: expand", () => block.Locator(".opblock-summary-control").ClickAsync());
            await Step($"{operationId}: Try it out", () => block.Locator("button.try-out__btn").ClickAsync());
            return new SwaggerOperation(page, block, operationId);
        }

        /// <summary>Presses Execute; returns the browser's response and the form's text fields as sent.</summary>
        public async Task<(IResponse Response, Dictionary<string, string> Form)> ExecuteAsync(string path)
        {
            IResponse? response = null;
            await Step($"{name}: Execute and get an answer", async () =>
                response = await page.RunAndWaitForResponseAsync(() => block.Locator("button.execute").ClickAsync(),
                    r => new Uri(r.Url).AbsolutePath == path));
            await Step($"{name}: the answer is shown", () => LiveResponse.Locator(".response-col_status").WaitForAsync());
            return (response!, await ShownFormFieldsAsync());
        }

        public Task<string> ShownStatusAsync() => LiveResponse.Locator(".response-col_status").InnerTextAsync();

        public Task<string> ShownBodyAsync() => LiveResponse.Locator(".highlight-code pre").InnerTextAsync();

        public async Task<string> ShownHeadersAsync() =>
            string.Join('\n', (await LiveResponse.Locator(".headerline").AllInnerTextsAsync()).Select(h => h.Trim()));

        /// <summary>
        /// The text fields of the form, as the curl command that Swagger UI shows for the request it sent spells them
        /// (<c>-F 'epsilon=0.03137255'</c>); the browser does not expose a body that carries a file.
        /// </summary>
        private async Task<Dictionary<string, string>> ShownFormFieldsAsync()
        {
            var curl = await block.Locator(".curl-command .curl").InnerTextAsync();
            return CurlFormField().Matches(curl).Where(m => !m.Groups["value"].Value.StartsWith('@'))
                .ToDictionary(m => m.Groups["name"].Value, m => m.Groups["value"].Value, StringComparer.Ordinal);
        }
    }
}
