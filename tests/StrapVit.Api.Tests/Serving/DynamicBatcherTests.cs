using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;
using StrapVit.Api.Serving;

namespace StrapVit.Api.Tests.Serving;

/// <summary>
/// The dynamic batcher's scheduling on a recording batch function: what runs together, when, and what a
/// cancellation or a failure does. A request is (key, id, images); its answer is computed from the request alone.
/// </summary>
public sealed class DynamicBatcherTests
{
    private sealed record Request(string Id, int Images = 1, bool Fails = false);

    /// <summary>A batch function that records each batch's ids and can hold a run until released.</summary>
    private sealed class Recorder
    {
        private readonly ConcurrentQueue<TaskCompletionSource> _gates = new();

        public ConcurrentQueue<string[]> Batches { get; } = new();

        /// <summary>Released once per run as it starts.</summary>
        public SemaphoreSlim Started { get; } = new(0);

        public TaskCompletionSource<CancellationToken> Canceled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Makes the next run wait until the returned gate is opened.</summary>
        public TaskCompletionSource HoldNext()
        {
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _gates.Enqueue(gate);
            return gate;
        }

        public string[] Run(string key, IReadOnlyList<Request> requests, CancellationToken cancellationToken)
        {
            using var registration = cancellationToken.Register(() => Canceled.TrySetResult(cancellationToken));
            Batches.Enqueue(requests.Select(r => $"{key}:{r.Id}").ToArray());
            Started.Release();
            if (_gates.TryDequeue(out var gate))
            {
                Task.WaitAny([gate.Task], cancellationToken);
            }

            if (requests.FirstOrDefault(r => r.Fails) is { } failing)
            {
                throw new InvalidOperationException($"run failed on {failing.Id}");
            }

            return requests.Select(r => Answer(key, r)).ToArray();
        }

        public static string Answer(string key, Request request) => $"{key}/{request.Id}x{request.Images}";
    }

    /// <summary>Longest wait for an answer: a batcher that never answers fails the test instead of hanging the run.</summary>
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private static DynamicBatcher<string, Request, string> Batcher(Recorder recorder, BatchingOptions options, TimeProvider? time = null) =>
        new(options, recorder.Run, time ?? TimeProvider.System);

    private static Task<string> Send(DynamicBatcher<string, Request, string> batcher, string key, Request request, CancellationToken ct = default) =>
        batcher.RunAsync(key, request, request.Images, ct);

    [Fact]
    public async Task Requests_that_queue_while_every_slot_is_busy_run_as_one_batch_each_with_its_own_answer()
    {
        var recorder = new Recorder();
        await using var batcher = Batcher(recorder, new BatchingOptions { MaxConcurrentBatches = 1 });
        var gate = recorder.HoldNext();
        var first = Send(batcher, "off", new Request("r0"));
        Assert.True(await recorder.Started.WaitAsync(Limit));

        var queued = Enumerable.Range(1, 5).Select(i => new Request($"r{i}", Images: i % 2 + 1)).ToArray();
        var answers = queued.Select(r => Send(batcher, "off", r)).ToArray();
        gate.SetResult();

        Assert.Equal("off/r0x1", await first.WaitAsync(Limit));
        Assert.Equal(queued.Select(r => Recorder.Answer("off", r)), await Task.WhenAll(answers).WaitAsync(Limit));
        Assert.Equal([["off:r0"], ["off:r1", "off:r2", "off:r3", "off:r4", "off:r5"]], recorder.Batches.ToArray());
    }

    [Fact]
    public async Task A_batch_holds_requests_of_one_key_oldest_first_and_at_most_the_maximum_images()
    {
        var recorder = new Recorder();
        await using var batcher = Batcher(recorder, new BatchingOptions { MaxConcurrentBatches = 1, MaxBatchSize = 4 });
        var gate = recorder.HoldNext();
        var first = Send(batcher, "detect", new Request("r0"));
        Assert.True(await recorder.Started.WaitAsync(Limit));

        (string Key, Request Request)[] sent =
        [
            ("mitigate", new("a1")), ("off", new("b1")), ("mitigate", new("a2", Images: 2)), ("mitigate", new("a3")),
            ("mitigate", new("a4")), ("off", new("b2", Images: 3)), ("off", new("b3", Images: 7)),
        ];
        var answers = sent.Select(s => Send(batcher, s.Key, s.Request)).ToArray();
        gate.SetResult();

        await first.WaitAsync(Limit);
        Assert.Equal(sent.Select(s => Recorder.Answer(s.Key, s.Request)), await Task.WhenAll(answers).WaitAsync(Limit));
        // a1+a2+a3 = 4 images fill the first batch; then b1+b2 (4); a4; b3 alone is larger than the maximum and runs alone.
        Assert.Equal(
            [["detect:r0"], ["mitigate:a1", "mitigate:a2", "mitigate:a3"], ["off:b1", "off:b2"], ["mitigate:a4"], ["off:b3"]],
            recorder.Batches.ToArray());
    }

    [Fact]
    public async Task A_preferred_size_runs_at_once_and_a_smaller_batch_waits_for_the_queue_delay()
    {
        var recorder = new Recorder();
        var time = new FakeTimeProvider();
        await using var batcher = Batcher(recorder,
            new BatchingOptions { MaxConcurrentBatches = 1, MaxBatchSize = 8, MaxQueueDelayMicroseconds = 1000, PreferredBatchSizes = [3] }, time);

        // The fake clock stands still: nothing may run before the queue forms three images.
        var a1 = Send(batcher, "off", new Request("a1"));
        var a2 = Send(batcher, "off", new Request("a2", Images: 2));
        Assert.Equal(["off/a1x1", "off/a2x2"], await Task.WhenAll(a1, a2).WaitAsync(Limit));

        var a3 = Send(batcher, "off", new Request("a3"));
        var a4 = Send(batcher, "off", new Request("a4"));
        time.Advance(TimeSpan.FromMicroseconds(999));
        Assert.False(a3.IsCompleted);
        time.Advance(TimeSpan.FromMicroseconds(1));
        Assert.Equal(["off/a3x1", "off/a4x1"], await Task.WhenAll(a3, a4).WaitAsync(Limit));
        Assert.Equal([["off:a1", "off:a2"], ["off:a3", "off:a4"]], recorder.Batches.ToArray());
    }

    [Fact]
    public async Task A_clock_that_moves_on_while_the_delay_timer_is_set_up_does_not_strand_the_queue()
    {
        // The clock passes the whole queue delay between the scheduler reading it and its timer existing (another
        // thread's tick, here made certain). A timer set for the full delay from then would never fire on a clock that
        // then stands still; the scheduler must see that the deadline has passed and send the batch.
        var recorder = new Recorder();
        var time = new ClockThatMovesOnTimerCreation(TimeSpan.FromMicroseconds(1000));
        await using var batcher = Batcher(recorder,
            new BatchingOptions { MaxConcurrentBatches = 1, MaxBatchSize = 8, MaxQueueDelayMicroseconds = 1000, PreferredBatchSizes = [3] }, time);

        Assert.Equal("off/a1x1", await Send(batcher, "off", new Request("a1")).WaitAsync(Limit));
    }

    private sealed class ClockThatMovesOnTimerCreation(TimeSpan step) : FakeTimeProvider
    {
        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Advance(step);
            return base.CreateTimer(callback, state, dueTime, period);
        }
    }

    [Fact]
    public async Task A_request_cancelled_while_queued_leaves_the_queue_without_running()
    {
        var recorder = new Recorder();
        await using var batcher = Batcher(recorder, new BatchingOptions { MaxConcurrentBatches = 1 });
        var gate = recorder.HoldNext();
        var first = Send(batcher, "off", new Request("r0"));
        Assert.True(await recorder.Started.WaitAsync(Limit));

        using var cancel = new CancellationTokenSource();
        var leaving = Send(batcher, "off", new Request("r1"), cancel.Token);
        var staying = Send(batcher, "off", new Request("r2"));
        await cancel.CancelAsync();

        var thrown = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => leaving);
        Assert.Equal(cancel.Token, thrown.CancellationToken);
        gate.SetResult();
        Assert.Equal("off/r2x1", await staying.WaitAsync(Limit));
        await first.WaitAsync(Limit);
        Assert.Equal([["off:r0"], ["off:r2"]], recorder.Batches.ToArray());
    }

    [Fact]
    public async Task A_running_batch_is_cancelled_only_when_every_one_of_its_requests_is()
    {
        var recorder = new Recorder();
        await using var batcher = Batcher(recorder, new BatchingOptions { MaxConcurrentBatches = 1 });
        var gate = recorder.HoldNext();
        var first = Send(batcher, "off", new Request("r0"));
        Assert.True(await recorder.Started.WaitAsync(Limit));

        // r1 and r2 queue behind r0 and then run together, held by a second gate.
        var second = recorder.HoldNext();
        using var cancel1 = new CancellationTokenSource();
        using var cancel2 = new CancellationTokenSource();
        var r1 = Send(batcher, "off", new Request("r1"), cancel1.Token);
        var r2 = Send(batcher, "off", new Request("r2"), cancel2.Token);
        gate.SetResult();
        await first.WaitAsync(Limit);
        Assert.True(await recorder.Started.WaitAsync(Limit));

        await cancel1.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => r1);
        Assert.False(recorder.Canceled.Task.IsCompleted);
        await cancel2.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => r2);
        Assert.True((await recorder.Canceled.Task.WaitAsync(Limit)).IsCancellationRequested);
        Assert.Equal([["off:r0"], ["off:r1", "off:r2"]], recorder.Batches.ToArray());
        second.TrySetResult();
    }

    [Fact]
    public async Task A_failed_run_fails_exactly_the_requests_of_its_batch()
    {
        var recorder = new Recorder();
        await using var batcher = Batcher(recorder, new BatchingOptions { MaxConcurrentBatches = 1 });
        var gate = recorder.HoldNext();
        var first = Send(batcher, "off", new Request("r0"));
        Assert.True(await recorder.Started.WaitAsync(Limit));

        var failing = Send(batcher, "mitigate", new Request("m1", Fails: true));
        var sharing = Send(batcher, "mitigate", new Request("m2"));
        var other = Send(batcher, "detect", new Request("d1"));
        gate.SetResult();

        await first.WaitAsync(Limit);
        Assert.Equal("run failed on m1", (await Assert.ThrowsAsync<InvalidOperationException>(() => failing)).Message);
        Assert.Equal("run failed on m1", (await Assert.ThrowsAsync<InvalidOperationException>(() => sharing)).Message);
        Assert.Equal("detect/d1x1", await other.WaitAsync(Limit));
        Assert.Equal("mitigate/m3x1", await Send(batcher, "mitigate", new Request("m3")));
        Assert.Equal([["off:r0"], ["mitigate:m1", "mitigate:m2"], ["detect:d1"], ["mitigate:m3"]], recorder.Batches.ToArray());
    }

    [Fact]
    public async Task Disposing_cancels_what_is_queued_and_waits_for_the_running_batch_to_end()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ended = 0;
        var batcher = new DynamicBatcher<string, Request, string>(new BatchingOptions { MaxConcurrentBatches = 1 }, (key, requests, ct) =>
        {
            started.TrySetResult();
            ct.WaitHandle.WaitOne();
            // Still running a while after its cancellation, as an ONNX Runtime run does before it sees Terminate.
            Thread.Sleep(200);
            Volatile.Write(ref ended, 1);
            ct.ThrowIfCancellationRequested();
            return requests.Select(r => Recorder.Answer(key, r)).ToArray();
        }, TimeProvider.System);
        var running = Send(batcher, "off", new Request("r0"));
        await started.Task.WaitAsync(Limit);
        var queued = Send(batcher, "off", new Request("r1"));

        await batcher.DisposeAsync();

        Assert.Equal(1, Volatile.Read(ref ended));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        Assert.Throws<ObjectDisposedException>(() =>
        {
            _ = Send(batcher, "off", new Request("r2"));
        });
        await batcher.DisposeAsync();
    }

    public static TheoryData<BatchingOptions, string> OutOfRange => new()
    {
        { new BatchingOptions { MaxBatchSize = 0 }, "Batching:MaxBatchSize must be in [1, 4096]." },
        { new BatchingOptions { MaxQueueDelayMicroseconds = -1 }, "Batching:MaxQueueDelayMicroseconds must be in [0, 1000000]." },
        { new BatchingOptions { MaxBatchSize = 8, PreferredBatchSizes = [4, 9] }, "Batching:PreferredBatchSizes must each be in [1, Batching:MaxBatchSize]." },
        { new BatchingOptions { MaxConcurrentBatches = 0 }, "Batching:MaxConcurrentBatches must be in [1, 64]." },
    };

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public void Settings_out_of_range_are_refused_with_the_setting_named(BatchingOptions options, string message)
    {
        Assert.Equal(message, options.Validate());
        Assert.Null(new BatchingOptions().Validate());
    }
}
