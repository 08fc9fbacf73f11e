using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using StrapVit.Core.Diagnostics;

namespace StrapVit.Api.Serving;

/// <summary>
/// Triton's dynamic batcher (docs: "Dynamic Batcher", <c>max_queue_delay_microseconds</c>, <c>preferred_batch_size</c>)
/// over a synchronous batch function. Requests go into one channel; one scheduler takes them when a run slot is
/// free and forms a batch of requests with equal keys, oldest first:
/// <list type="number">
/// <item>a key whose oldest request has waited the delay goes now, with as many requests as fit;</item>
/// <item>otherwise a key that fills <see cref="BatchingOptions.MaxBatchSize"/> or forms a preferred size goes now;</item>
/// <item>otherwise the scheduler waits for the next request or the next deadline.</item>
/// </list>
/// A request cancelled while queued leaves the queue and never runs; one cancelled while its batch runs gets its
/// cancellation at once, and the batch is cancelled only when all of its requests are. A failed run fails exactly
/// the requests of that batch. Disposing cancels what is queued, cancels the batches still running and waits for
/// them to end, so whatever the batch function uses can be disposed after the batcher.
/// </summary>
/// <typeparam name="TKey">What must be equal for requests to share a run (the defense mode).</typeparam>
/// <typeparam name="TRequest">One request's input.</typeparam>
/// <typeparam name="TResult">One request's answer.</typeparam>
internal sealed class DynamicBatcher<TKey, TRequest, TResult> : IAsyncDisposable where TKey : notnull
{
    /// <summary>Runs one batch: one answer per request, in order. Called on a thread-pool thread.</summary>
    public delegate IReadOnlyList<TResult> BatchRun(TKey key, IReadOnlyList<TRequest> requests, CancellationToken cancellationToken);

    private readonly Channel<Entry> _queue = Channel.CreateUnbounded<Entry>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _slots;
    private readonly CancellationTokenSource _stopping = new();
    private readonly BatchRun _run;
    private readonly int _maxBatch;
    private readonly TimeSpan _delay;
    private readonly int[] _preferred;
    private readonly TimeProvider _time;
    private readonly Action<int, TimeSpan[]>? _observe;
    private readonly Task _scheduler;

    // Batches started and not yet ended, waited for on disposal.
    private readonly ConcurrentDictionary<Task, byte> _running = new();
    private int _disposed;

    // Requests taken from the channel and not yet in a batch: the scheduler's alone until it has ended.
    private readonly List<Entry> _pending = [];

    /// <param name="options">Batch size, delay, preferred sizes and run slots.</param>
    /// <param name="run">The batch function.</param>
    /// <param name="time">The clock of the queue delay.</param>
    /// <param name="observe">Told each batch's size (in images) and each of its requests' time in the queue.</param>
    public DynamicBatcher(BatchingOptions options, BatchRun run, TimeProvider time, Action<int, TimeSpan[]>? observe = null)
    {
        _run = run;
        _maxBatch = options.MaxBatchSize;
        _delay = TimeSpan.FromMicroseconds(options.MaxQueueDelayMicroseconds);
        _preferred = [.. options.PreferredBatchSizes.Distinct().Order()];
        _slots = new SemaphoreSlim(options.MaxConcurrentBatches, options.MaxConcurrentBatches);
        _time = time;
        _observe = observe;
        _scheduler = Task.Run(ScheduleAsync);
    }

    /// <summary>Queues a request of <paramref name="size"/> images and completes with its answer.</summary>
    public Task<TResult> RunAsync(TKey key, TRequest request, int size, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var entry = new Entry(key, request, size, _time.GetTimestamp(), cancellationToken);
        // Registered before it is queued, so the run that takes it can always dispose the registration.
        entry.Registration = cancellationToken.Register(static e => ((Entry)e!).Cancel(), entry);
        if (!_queue.Writer.TryWrite(entry))
        {
            entry.Registration.Dispose();
            throw new ObjectDisposedException(nameof(DynamicBatcher<TKey, TRequest, TResult>), "The batcher is shutting down.");
        }

        return entry.Answer.Task;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // ConfigureAwait(false) throughout: a host disposed synchronously (IHost.Dispose, WebApplicationFactory.Dispose)
        // blocks its thread on this method, so a continuation posted back to that thread's synchronization context
        // (a test framework's, for one) would wait for a thread that is waiting for it.
        _queue.Writer.TryComplete();
        await _stopping.CancelAsync().ConfigureAwait(false);
        try
        {
            await _scheduler.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopping is how the scheduler ends.
        }

        // Every running batch's token is linked to stopping, so these end soon; Execute never throws.
        await Task.WhenAll(_running.Keys).ConfigureAwait(false);

        while (_queue.Reader.TryRead(out var entry))
        {
            _pending.Add(entry);
        }

        foreach (var entry in _pending)
        {
            entry.Registration.Dispose();
            entry.Answer.TrySetCanceled(_stopping.Token);
        }

        _stopping.Dispose();
        _slots.Dispose();
    }

    private async Task ScheduleAsync()
    {
        var stop = _stopping.Token;
        var pending = _pending;
        while (true)
        {
            await _slots.WaitAsync(stop);
            Batch? batch;
            while (true)
            {
                while (_queue.Reader.TryRead(out var entry))
                {
                    pending.Add(entry);
                }

                pending.RemoveAll(e => e.Canceled);
                if (pending.Count == 0)
                {
                    if (!await _queue.Reader.WaitToReadAsync(stop))
                    {
                        return;
                    }

                    continue;
                }

                var now = _time.GetTimestamp();
                (batch, var wait) = Form(pending, now);
                if (batch is not null)
                {
                    break;
                }

                // The clock runs on while the timer is set up: the timer waits only what is left of the delay, and a
                // deadline that passed meanwhile (checked after the timer exists, so no tick falls in between) forms
                // again at once. Otherwise a batch could wait a second delay, or for ever on a clock that has stopped.
                var remaining = wait - _time.GetElapsedTime(now);
                if (remaining <= TimeSpan.Zero)
                {
                    continue;
                }

                using var timeout = new CancellationTokenSource(remaining, _time);
                if (_time.GetElapsedTime(now) >= wait)
                {
                    continue;
                }

                using var either = CancellationTokenSource.CreateLinkedTokenSource(stop, timeout.Token);
                try
                {
                    await _queue.Reader.WaitToReadAsync(either.Token);
                }
                catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                {
                    // A key's queue delay is up: form again.
                }
            }

            var run = new Task(() => Execute(batch));
            _running.TryAdd(run, 0);
            _ = run.ContinueWith(static (t, running) => ((ConcurrentDictionary<Task, byte>)running!).TryRemove(t, out _),
                _running, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            run.Start(TaskScheduler.Default);
        }
    }

    /// <summary>The batch to send at <paramref name="now"/>, or how long from then to wait for more requests.</summary>
    private (Batch? Batch, TimeSpan Wait) Form(List<Entry> pending, long now)
    {
        var groups = pending.GroupBy(e => e.Key).Select(g => g.ToList()).ToList();
        var wait = TimeSpan.MaxValue;
        foreach (var group in groups)
        {
            var waited = _time.GetElapsedTime(group[0].Enqueued, now);
            if (waited >= _delay)
            {
                return (Take(pending, group, Fitting(group)), TimeSpan.Zero);
            }

            wait = TimeSpan.FromTicks(Math.Min(wait.Ticks, (_delay - waited).Ticks));
        }

        foreach (var group in groups)
        {
            var count = Fitting(group);
            var sizes = group.Take(count).Select(e => e.Size).ToArray();
            if (sizes.Sum() >= _maxBatch)
            {
                return (Take(pending, group, count), TimeSpan.Zero);
            }

            // The largest preferred size that a prefix of the group forms exactly.
            var total = 0;
            var preferred = 0;
            for (var i = 0; i < count; i++)
            {
                total += sizes[i];
                if (Array.BinarySearch(_preferred, total) >= 0)
                {
                    preferred = i + 1;
                }
            }

            if (preferred > 0)
            {
                return (Take(pending, group, preferred), TimeSpan.Zero);
            }
        }

        return (null, wait);
    }

    /// <summary>How many of the group's oldest requests fit in one batch (at least one, however large).</summary>
    private int Fitting(List<Entry> group)
    {
        var count = 1;
        var total = group[0].Size;
        while (count < group.Count && total + group[count].Size <= _maxBatch)
        {
            total += group[count].Size;
            count++;
        }

        return count;
    }

    private Batch Take(List<Entry> pending, List<Entry> group, int count)
    {
        var members = group.Take(count).ToArray();
        foreach (var member in members)
        {
            pending.Remove(member);
        }

        var batch = new Batch(members, CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token));
        var started = _time.GetTimestamp();
        batch.Running = members.Where(m => m.Start(batch)).ToArray();
        batch.Waited = batch.Running.Select(m => _time.GetElapsedTime(m.Enqueued, started)).ToArray();
        return batch;
    }

    private void Execute(Batch batch)
    {
        try
        {
            var members = batch.Running;
            if (members.Length == 0)
            {
                return;
            }

            try
            {
                var images = members.Sum(m => m.Size);
                _observe?.Invoke(images, batch.Waited);
                // Spans of the run (defense, ONNX Runtime) belong to the request's trace: one request's batch runs under
                // that request's span, exactly as unbatched; a shared batch gets a span linked to every request.
                // (The scheduler's own context may carry whichever request created it: never let that be the parent.)
                Activity.Current = members.Length == 1 ? members[0].Trace : null;
                using var span = members.Length == 1 ? null : CoreActivities.Batch([.. members.Select(m => m.Trace?.Context ?? default)], images);

                var answers = _run(members[0].Key, members.Select(m => m.Request).ToArray(), batch.Cancellation.Token);
                if (answers.Count != members.Length)
                {
                    throw new InvalidOperationException($"The batch function answered {answers.Count} of {members.Length} requests.");
                }

                for (var i = 0; i < members.Length; i++)
                {
                    members[i].Answer.TrySetResult(answers[i]);
                }
            }
            catch (OperationCanceledException ex)
            {
                foreach (var member in members)
                {
                    member.Answer.TrySetCanceled(ex.CancellationToken);
                }
            }
            catch (Exception ex)
            {
                // The batch's requests get the failure (the handler maps it as it would their own run's); others are untouched.
                foreach (var member in members)
                {
                    member.Answer.TrySetException(ex);
                }
            }
        }
        finally
        {
            foreach (var member in batch.Members)
            {
                member.Registration.Dispose();
            }

            batch.Cancellation.Dispose();
            _slots.Release();
        }
    }

    private sealed class Batch(Entry[] members, CancellationTokenSource cancellation)
    {
        private int _canceled;

        public Entry[] Members { get; } = members;

        public CancellationTokenSource Cancellation { get; } = cancellation;

        public Entry[] Running { get; set; } = [];

        public TimeSpan[] Waited { get; set; } = [];

        /// <summary>A running member was cancelled: the run stops once none of its requests still wants the answer.</summary>
        public void MemberCanceled()
        {
            if (Interlocked.Increment(ref _canceled) == Running.Length)
            {
                try
                {
                    Cancellation.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // The run already finished.
                }
            }
        }
    }

    private sealed class Entry(TKey key, TRequest request, int size, long enqueued, CancellationToken cancellationToken)
    {
        private const int Queued = 0, Running = 1, CanceledState = 2;
        private int _state;
        private Batch? _batch;

        public TKey Key { get; } = key;

        public TRequest Request { get; } = request;

        public int Size { get; } = size;

        public long Enqueued { get; } = enqueued;

        /// <summary>The span of the request that queued this, if it is traced.</summary>
        public Activity? Trace { get; } = Activity.Current;

        public TaskCompletionSource<TResult> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public CancellationTokenRegistration Registration { get; set; }

        public bool Canceled => Volatile.Read(ref _state) == CanceledState;

        /// <summary>Moves a queued request into <paramref name="batch"/>; false when it was cancelled first.</summary>
        public bool Start(Batch batch)
        {
            _batch = batch;
            return Interlocked.CompareExchange(ref _state, Running, Queued) == Queued;
        }

        public void Cancel()
        {
            var was = Interlocked.Exchange(ref _state, CanceledState);
            Answer.TrySetCanceled(cancellationToken);
            if (was == Running)
            {
                _batch!.MemberCanceled();
            }
        }
    }
}
