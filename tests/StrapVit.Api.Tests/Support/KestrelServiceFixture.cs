using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace StrapVit.Api.Tests.Support;

/// <summary>
/// The service on a loopback port of its own (real Kestrel, so request body limits apply as in production, and
/// processes outside the test, a browser or a client example, can reach it).
/// </summary>
public class KestrelServiceFixture : IAsyncLifetime, IDisposable
{
    private readonly ServiceFactory _factory;

    public KestrelServiceFixture()
        : this(null)
    {
    }

    /// <summary>The same with extra settings (see <see cref="ServiceFactory"/>).</summary>
    protected KestrelServiceFixture(IReadOnlyDictionary<string, string?>? settings) => _factory = new ServiceFactory(settings);

    public HttpClient Client { get; private set; } = null!;

    /// <summary>Where the service listens, <c>http://127.0.0.1:port</c> without a trailing slash.</summary>
    public string BaseAddress { get; private set; } = "";

    public Task InitializeAsync()
    {
        _factory.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        _factory.StartServer();
        BaseAddress = _factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single().TrimEnd('/');
        Client = new HttpClient { BaseAddress = new Uri(BaseAddress), Timeout = TimeSpan.FromMinutes(1) };
        return Task.CompletedTask;
    }

    /// <summary>
    /// Sends a request whose body is over the limit. Kestrel answers 413 and closes the connection as soon as it knows,
    /// which can be while the client is still uploading: the client then sees a broken pipe instead of the answer (a
    /// race of the test's client, not of the service). Such a try is repeated; the answer is what the test checks.
    /// </summary>
    public async Task<HttpResponseMessage> SendOversizedAsync(Func<HttpRequestMessage> request)
    {
        for (var attempt = 1; ; attempt++)
        {
            using var message = request();
            try
            {
                return await Client.SendAsync(message);
            }
            catch (HttpRequestException ex) when (attempt < 5 && ex.InnerException is IOException)
            {
                // The upload was cut off by the refusal before the answer could be read: try again.
            }
        }
    }

    public async Task DisposeAsync()
    {
        // Asynchronously: a synchronous dispose would block a test-framework thread on the host's shutdown.
        Client?.Dispose();
        await _factory.DisposeAsync();
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            Client?.Dispose();
            _factory.Dispose();
        }
    }
}
