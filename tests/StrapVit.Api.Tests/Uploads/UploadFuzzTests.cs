using System.Net;
using System.Diagnostics;
using StrapVit.Api.Tests.Support;
using StrapVit.Testing;
using Xunit.Abstractions;

namespace StrapVit.Api.Tests.Uploads;

/// <summary>
/// A seeded, bounded fuzz of the upload path over real Kestrel (so its body limits and parsing are the ones under
/// test): every accepted format truncated at every offset and mutated byte-wise, header size claims, and the
/// multipart grammar cut, mutated and reshaped. Every answer is below 500, every refusal is problem+json, and the
/// service is ready and classifying afterwards.
/// </summary>
public sealed class UploadFuzzTests(KestrelServiceFixture service, ITestOutputHelper output) : IClassFixture<KestrelServiceFixture>
{
    private const int Seed = 13;
    private const int MutationsPerFormat = 150;
    private const int MultipartCases = 900;
    private const string Boundary = "fuzz-boundary-7d1c";

    [Fact]
    public async Task Thousands_of_hostile_uploads_get_no_5xx_and_every_refusal_is_a_problem()
    {
        var random = new Random(Seed);
        var cases = Cases(random).ToList();
        var failures = new List<string>();
        var statuses = new SortedDictionary<int, int>();
        var watch = Stopwatch.StartNew();

        foreach (var (name, path, content) in cases)
        {
            using var body = content;
            using var response = await service.Client.PostAsync(path, body);
            var status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            var text = await response.Content.ReadAsStringAsync();
            if (status >= 500)
            {
                failures.Add($"{name}: {status} {text}");
            }
            else if (status >= 400
                && (response.Content.Headers.ContentType?.MediaType != "application/problem+json" || !text.Contains($"\"status\":{status}", StringComparison.Ordinal)))
            {
                failures.Add($"{name}: {status} without a problem body ({response.Content.Headers.ContentType}): {text}");
            }
        }

        output.WriteLine($"{cases.Count} cases in {watch.Elapsed.TotalSeconds:F1} s; statuses: {string.Join(", ", statuses.Select(s => $"{s.Key} x{s.Value}"))}");
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Count} cases failed, e.g.\n{string.Join("\n", failures.Take(10))}");
        Assert.True(cases.Count >= 3000, $"only {cases.Count} cases");
        Assert.True(statuses.Keys.Any(s => s is >= 200 and < 300) && statuses.Keys.Any(s => s == 400) && statuses.Keys.Any(s => s == 413),
            "the fuzz should reach successes, 400s and 413s");
        using var ready = await service.Client.GetAsync("/healthz/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        using var again = await service.Client.PostAsync("/v1/classify?topK=1", Http.Multipart(File.ReadAllBytes(RepoPaths.Sample("trouser.png"))));
        Assert.Equal("Trouser", (await again.JsonAsync()).GetProperty("predictions")[0].GetProperty("label").GetString());
    }

    private static IEnumerable<(string Name, string Path, HttpContent Content)> Cases(Random random)
    {
        var n = 0;
        // One upload in ten goes to the saliency endpoint, which reads uploads through the same path and then runs a gradient.
        string Path() => n++ % 10 == 9 ? "/v1/explain/saliency" : "/v1/classify?defense=off";
        HttpContent Upload(byte[] bytes, string mediaType) => random.Next(2) == 0
            ? Http.Raw(bytes, mediaType)
            : new MultipartBody(Boundary).File(bytes, contentType: mediaType).Content();

        foreach (var format in TestImages.Formats)
        {
            var bytes = TestImages.Encoded(format);
            var mediaType = "image/" + format.Split('-')[0];
            for (var cut = 0; cut < bytes.Length; cut++)
            {
                yield return ($"{format} cut at {cut}", Path(), Upload(bytes[..cut], mediaType));
            }

            for (var i = 0; i < MutationsPerFormat; i++)
            {
                yield return ($"{format} mutation {i}", Path(), Upload(ByteMutations.Mutate(bytes, random), mediaType));
            }

            foreach (var (w, h) in new[] { (100_000, 100_000), (65_535, 2), (2, 65_535), (20_000, 20_000), (0, 0) })
            {
                yield return ($"{format} claiming {w}x{h}", Path(), Upload(TestImages.ClaimingSize(format, w, h), mediaType));
            }
        }

        var png = TestImages.Encoded("png");
        var valid = new MultipartBody(Boundary).Field("note", "x").File(png).Complete();
        for (var i = 0; i < MultipartCases; i++)
        {
            var (name, bytes, contentType) = MultipartCase(random, valid, png);
            yield return ($"multipart {i} ({name})", Path(), MultipartBody.Content(bytes, contentType));
        }
    }

    private static (string, byte[], string) MultipartCase(Random random, byte[] valid, byte[] png)
    {
        var type = $"multipart/form-data; boundary={Boundary}";
        return random.Next(12) switch
        {
            0 => ("cut", valid[..random.Next(valid.Length)], type),
            1 => ("mutated", ByteMutations.Mutate(valid, random), type),
            2 => ("mutated part headers", MutateRange(valid, 0, 160, random), type),
            3 => ("no boundary", valid, "multipart/form-data"),
            4 => ("another boundary", valid, $"multipart/form-data; boundary={Boundary}x"),
            5 => ("long boundary", valid, $"multipart/form-data; boundary={new string('q', random.Next(71, 400))}"),
            6 => ("two images", new MultipartBody(Boundary).File(png).File(png).Complete(), type),
            7 => ("extra file", new MultipartBody(Boundary).File(png).File(png, name: "f" + random.Next(100)).Complete(), type),
            8 => ("no filename", new MultipartBody(Boundary).Part("name=\"image\"", png, "image/png").Complete(), type),
            9 => ("text part type", new MultipartBody(Boundary).File(png, contentType: random.Next(2) == 0 ? "text/plain" : "application/json").Complete(), type),
            10 => ("many fields", ManyFields(random.Next(60, 200), png), type),
            _ => ("odd content type", valid, random.Next(3) switch
            {
                0 => "multipart/mixed; boundary=" + Boundary,
                1 => "multipart/form-data; boundary=\"" + Boundary,
                _ => "application/x-www-form-urlencoded",
            }),
        };
    }

    private static byte[] MutateRange(byte[] source, int from, int to, Random random)
    {
        var bytes = (byte[])source.Clone();
        for (var k = random.Next(1, 6); k > 0; k--)
        {
            bytes[random.Next(from, Math.Min(to, bytes.Length))] = (byte)random.Next(256);
        }

        return bytes;
    }

    private static byte[] ManyFields(int count, byte[] png)
    {
        var body = new MultipartBody(Boundary);
        for (var i = 0; i < count; i++) body.Field("f" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), new string('v', 10));
        return body.File(png).Complete();
    }
}
