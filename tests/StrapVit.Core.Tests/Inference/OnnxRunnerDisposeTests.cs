using Microsoft.Extensions.Logging.Abstractions;
using StrapVit.Core.Inference;
using StrapVit.Core.Models;
using StrapVit.Testing;

namespace StrapVit.Core.Tests.Inference;

/// <summary>
/// A host that stops while requests still run disposes the sessions under them. The runner terminates those runs and
/// frees the native session only after the last one has left it (freeing it under a running call crashes the process).
/// </summary>
public sealed class OnnxRunnerDisposeTests
{
    [Fact]
    public async Task Disposing_during_runs_ends_them_and_refuses_later_ones()
    {
        var options = new InferenceOptions { Device = InferenceDevice.Cpu, MaxBatchSize = 256, IntraOpThreads = 1 };
        var classifier = new VitClassifier(ModelPackage.Load(RepoPaths.DefaultModel),
            new OnnxSessionFactory(options, NullLogger<OnnxSessionFactory>.Instance), options);
        var pixels = new float[256 * 28 * 28];
        var started = new CountdownEvent(2);
        var runs = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            var completed = 0;
            started.Signal();
            try
            {
                while (true)
                {
                    Assert.Equal(256 * 10, classifier.Logits(pixels, 256).Length);
                    completed++;
                }
            }
            catch (ObjectDisposedException)
            {
                return completed;
            }
        })).ToArray();
        started.Wait(TimeSpan.FromSeconds(30));
        await Task.Delay(200);

        classifier.Dispose();

        // Every run ended with ObjectDisposedException (none hung, none crashed the process), and a new one is refused.
        var done = await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.All(done, n => Assert.True(n >= 0));
        Assert.Throws<ObjectDisposedException>(() => classifier.Logits(pixels.AsSpan(0, 784), 1));
        classifier.Dispose();
    }
}
