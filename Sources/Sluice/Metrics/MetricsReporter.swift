import CoreMetrics
import Synchronization

/// Hands the metrics of running services to swift-metrics: whatever `MetricsSystem` was
/// bootstrapped with (a Prometheus registry, StatsD, OpenTelemetry) sees them as counters and
/// gauges with the names and labels of ``MetricValue``.
///
/// It samples when asked (``update()``: a Prometheus endpoint calls it before each scrape) or on
/// a schedule (``run(every:)``), never per packet: the sources only read what the workers last
/// published. A counter is reported as the increase since the last update; a counter that went
/// back (a source that restarted) counts from zero again.
///
/// ```swift
/// let reporter = MetricsReporter(sources: [server, ProcessMetrics(service: "udp-echo")])
/// try await reporter.run(every: .seconds(10))
/// ```
public final class MetricsReporter: Sendable {
    private let sources: Mutex<[any MetricsSource]>
    private let series = Mutex<[String: Series]>([:])
    private let factory: any MetricsFactory

    /// A reporter for `sources`, into `factory` (by default the one `MetricsSystem` was
    /// bootstrapped with).
    public init(sources: [any MetricsSource] = [], factory: any MetricsFactory = MetricsSystem.factory) {
        self.sources = Mutex(sources)
        self.factory = factory
    }

    /// Adds a source (a server started after the reporter).
    public func add(_ source: any MetricsSource) {
        sources.withLock { $0.append(source) }
    }

    /// Samples every source and reports what changed.
    public func update() {
        var snapshot = MetricsSnapshot()
        for source in sources.withLock({ $0 }) { source.collectMetrics(into: &snapshot) }
        report(snapshot)
    }

    /// Samples every `interval` until the task is cancelled.
    public func run(every interval: Duration = .seconds(1)) async {
        while !Task.isCancelled {
            update()
            try? await Task.sleep(for: interval)
        }
    }

    /// Reports `snapshot`: gauges as they are, counters by their increase.
    public func report(_ snapshot: MetricsSnapshot) {
        series.withLock { table in
            for value in snapshot.values {
                let key = value.name + "\u{0}" + value.labels.map { "\($0.0)=\($0.1)" }.joined(separator: "\u{0}")
                switch value.kind {
                case .gauge:
                    if case .gauge(let gauge)? = table[key] {
                        gauge.record(value.value)
                    } else {
                        let gauge = Gauge(label: value.name, dimensions: value.labels, factory: factory)
                        gauge.record(value.value)
                        table[key] = .gauge(gauge)
                    }
                case .counter:
                    let last: Double
                    let series: Series
                    if let known = table[key], case .counter(_, let previous) = known {
                        (series, last) = (known, previous)
                    } else {
                        // Seconds are fractional; everything else counts whole events and is shown whole.
                        series = value.name.hasSuffix("_seconds_total")
                            ? .counter(.fractional(FloatingPointCounter(label: value.name, dimensions: value.labels, factory: factory)), last: 0)
                            : .counter(.whole(Counter(label: value.name, dimensions: value.labels, factory: factory)), last: 0)
                        last = 0
                    }
                    let increase = value.value >= last ? value.value - last : value.value
                    guard case .counter(let handle, _) = series else { continue }
                    switch handle {
                    case .whole(let counter): if increase >= 1 { counter.increment(by: Int64(increase)) }
                    case .fractional(let counter): if increase > 0 { counter.increment(by: increase) }
                    }
                    table[key] = .counter(handle, last: value.value)
                }
            }
        }
    }

    private enum Series {
        case gauge(Gauge)
        case counter(CounterHandle, last: Double)
    }

    private enum CounterHandle {
        case whole(Counter)
        case fractional(FloatingPointCounter)
    }
}
