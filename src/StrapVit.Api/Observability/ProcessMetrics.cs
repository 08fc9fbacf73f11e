using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace StrapVit.Api.Observability;

/// <summary>
/// Process and .NET runtime gauges under the names the Grafana dashboard reads (the classic Prometheus client names:
/// process_cpu_seconds_total, process_working_set_bytes, dotnet_total_memory_bytes, dotnet_collection_count_total and
/// their siblings). .NET's own System.Runtime meter has these values under other names and labels
/// (dotnet.process.cpu.time by cpu.mode, dotnet.gc.collections by gc.heap.generation), which a rename cannot map.
/// Observed at scrape time only.
/// </summary>
internal static class ProcessMetrics
{
    public static void Register(Meter meter)
    {
        meter.CreateObservableCounter("process_cpu_seconds_total", () => Environment.CpuUsage.TotalTime.TotalSeconds, "s",
            "Total user and system CPU time spent in seconds.");
        meter.CreateObservableGauge("process_start_time_seconds", () => StartTime, "s",
            "Start time of the process since unix epoch in seconds.");
        meter.CreateObservableGauge("process_working_set_bytes", () => Environment.WorkingSet, "By",
            "Process working set.");
        meter.CreateObservableGauge("process_virtual_memory_bytes", () => Observe(p => p.VirtualMemorySize64), "By",
            "Virtual memory size in bytes.");
        meter.CreateObservableGauge("process_private_memory_bytes", () => Observe(p => p.PrivateMemorySize64), "By",
            "Process private memory size.");
        meter.CreateObservableGauge("process_num_threads", () => Observe(p => (long)p.Threads.Count), null,
            "Total number of threads.");
        meter.CreateObservableGauge("process_open_handles", () => Observe(p => (long)p.HandleCount), null,
            "Number of open handles.");
        meter.CreateObservableGauge("dotnet_total_memory_bytes", () => GC.GetTotalMemory(false), "By",
            "Total known allocated memory.");
        meter.CreateObservableCounter("dotnet_collection_count_total", ObserveCollections, null,
            "GC collection count, by generation.");
    }

    private static readonly double StartTime = new DateTimeOffset(Process.GetCurrentProcess().StartTime.ToUniversalTime()).ToUnixTimeMilliseconds() / 1000.0;

    private static long Observe(Func<Process, long> read)
    {
        using var process = Process.GetCurrentProcess();
        return read(process);
    }

    private static IEnumerable<Measurement<long>> ObserveCollections()
    {
        for (var generation = 0; generation <= GC.MaxGeneration; generation++)
        {
            yield return new Measurement<long>(GC.CollectionCount(generation), new KeyValuePair<string, object?>("generation", generation.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
    }
}
