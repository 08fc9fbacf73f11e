using StrapVit.Api.Tests.Support;
using StrapVit.Testing;

namespace StrapVit.Api.Tests.Attacks;

/// <summary>
/// The service on the attack-parity fixture model (a 3x12x12 ViT, tests/fixtures/attacks/vit-c3-12) with a private
/// gradient-graph cache, so attack tests are small and fast and do not depend on the embedded model.
/// </summary>
public class AttackServiceFactory : ServiceFactory
{
    public AttackServiceFactory() : this(null) { }

    protected AttackServiceFactory(IReadOnlyDictionary<string, string?>? extra) : base(Settings(extra)) { }

    public static string ModelPath => RepoPaths.Fixture("attacks", "vit-c3-12");

    public static string CacheDirectory { get; } = Path.Combine(Path.GetTempPath(), "strapvit-attack-tests", Guid.NewGuid().ToString("N"));

    private static Dictionary<string, string?> Settings(IReadOnlyDictionary<string, string?>? extra)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Model:Path"] = ModelPath,
            ["Model:CacheDirectory"] = CacheDirectory,
            ["Attacks:MaxConcurrentAttacks"] = "2",
            ["Attacks:MaxSteps"] = "50",
            ["Attacks:MaxPatchSize"] = "6",
        };
        foreach (var (k, v) in extra ?? new Dictionary<string, string?>()) settings[k] = v;
        return settings;
    }

    /// <summary>A deterministic 12x12 RGB PNG.</summary>
    public static byte[] Image(int seed = 1)
    {
        var random = new Random(seed);
        var data = new float[3 * 12 * 12];
        for (var i = 0; i < data.Length; i++) data[i] = (float)random.NextDouble();
        return TestImages.PngFromTensor(data, 3, 12, 12);
    }

    /// <summary>multipart/form-data with the image and the given fields.</summary>
    public static MultipartFormDataContent Form(byte[] image, params (string Name, string Value)[] fields)
    {
        var form = Http.Multipart(image);
        foreach (var (name, value) in fields) form.Add(new StringContent(value), name);
        return form;
    }
}
