import CoreMetrics
import Prometheus

/// A swift-metrics factory over a Prometheus registry that gives counters and gauges a help
/// text, printed as `# HELP` on the page (swift-metrics has no place for one, and
/// `PrometheusMetricsFactory` leaves it empty). Histograms and timers are made as
/// `PrometheusMetricsFactory` makes them.
///
/// ```swift
/// let registry = PrometheusCollectorRegistry()
/// MetricsSystem.bootstrap(DescribedMetricsFactory(registry: registry, help: MetricHelp.text(for:)))
/// ```
public struct DescribedMetricsFactory: MetricsFactory {
    private let registry: PrometheusCollectorRegistry
    private let plain: PrometheusMetricsFactory
    private let help: @Sendable (String) -> String?

    /// A factory into `registry`, with `help` giving each metric name its text (`nil`: none).
    /// A name must always get the same text: the registry refuses two texts for one name.
    public init(registry: PrometheusCollectorRegistry, help: @escaping @Sendable (String) -> String?) {
        self.registry = registry
        self.plain = PrometheusMetricsFactory(registry: registry)
        self.help = help
    }

    /// The whole name as the metric name (no namespace or unit to join), with its text.
    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help(label) ?? "")
    }

    /// A counter with its help text.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    /// A counter of fractional amounts (seconds) with its help text.
    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    /// A gauge with its help text; an aggregating recorder is a histogram, as `PrometheusMetricsFactory` makes it.
    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard !aggregate else { return plain.makeRecorder(label: label, dimensions: dimensions, aggregate: true) }
        return registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    /// A gauge with its help text.
    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    /// A duration histogram, as `PrometheusMetricsFactory` makes it.
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        plain.makeTimer(label: label, dimensions: dimensions)
    }

    /// Removes the counter from the registry.
    public func destroyCounter(_ handler: any CounterHandler) { plain.destroyCounter(handler) }
    /// Removes the counter from the registry.
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { plain.destroyFloatingPointCounter(handler) }
    /// Removes the gauge or histogram from the registry.
    public func destroyRecorder(_ handler: any RecorderHandler) { plain.destroyRecorder(handler) }
    /// Removes the gauge from the registry.
    public func destroyMeter(_ handler: any MeterHandler) { plain.destroyMeter(handler) }
    /// Removes the histogram from the registry.
    public func destroyTimer(_ handler: any TimerHandler) { plain.destroyTimer(handler) }
}
