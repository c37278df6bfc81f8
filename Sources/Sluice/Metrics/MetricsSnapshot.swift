import Synchronization

/// One value a running service exposes as a metric: a Prometheus-style name (`sluice_…`), its
/// labels and the value, a counter (only ever grows) or a gauge.
public struct MetricValue: Sendable {
    /// What the value means over time.
    public enum Kind: Sendable, Equatable {
        /// A running total (Prometheus `counter`); its name ends in `_total`.
        case counter
        /// A value that goes up and down (Prometheus `gauge`).
        case gauge
    }

    /// The metric's name, e.g. `sluice_port_received_packets_total`.
    public var name: String
    /// Its labels, e.g. `[("worker", "0"), ("backend", "xdp")]`.
    public var labels: [(String, String)]
    /// The value.
    public var value: Double
    /// Counter or gauge.
    public var kind: Kind

    /// A value.
    public init(name: String, labels: [(String, String)], value: Double, kind: Kind) {
        self.name = name
        self.labels = labels
        self.value = value
        self.kind = kind
    }
}

/// The metrics of one or more running services at one moment.
public struct MetricsSnapshot: Sendable {
    /// The values, in the order they were added.
    public var values: [MetricValue] = []

    /// An empty snapshot.
    public init() {}

    /// Adds a counter.
    public mutating func counter(_ name: String, _ value: UInt64, _ labels: [(String, String)]) {
        values.append(MetricValue(name: name, labels: labels, value: Double(value), kind: .counter))
    }

    /// Adds a counter measured in a fractional unit (seconds).
    public mutating func counter(_ name: String, _ value: Double, _ labels: [(String, String)]) {
        values.append(MetricValue(name: name, labels: labels, value: value, kind: .counter))
    }

    /// Adds a gauge.
    public mutating func gauge(_ name: String, _ value: Double, _ labels: [(String, String)]) {
        values.append(MetricValue(name: name, labels: labels, value: value, kind: .gauge))
    }

    /// The value of `name` with exactly `labels` (in any order), if present.
    public func value(_ name: String, _ labels: [(String, String)] = []) -> Double? {
        values.first { $0.name == name && Self.sameLabels($0.labels, labels) }?.value
    }

    static func sameLabels(_ a: [(String, String)], _ b: [(String, String)]) -> Bool {
        a.count == b.count && a.allSatisfy { pair in b.contains { $0 == pair } }
    }
}

/// Something whose metrics can be read at any moment from any thread: a ``UDPServer``, a
/// ``PublishedMetrics`` a serving thread fills. Reading must be cheap and never block the
/// packet path (the workers publish snapshots; a source only reads the latest).
public protocol MetricsSource: Sendable {
    /// Appends the current values to `snapshot`.
    func collectMetrics(into snapshot: inout MetricsSnapshot)
}

/// Metrics a serving thread publishes now and then (every ``PublishedMetrics/interval``) for
/// other threads to read: the shape of a server that runs on one thread, such as `tls serve`.
public final class PublishedMetrics: MetricsSource {
    /// How often a serving loop should publish: often enough for a live view that redraws once
    /// a second, rare enough to cost nothing next to the traffic.
    public static let interval = Duration.milliseconds(100)

    private let latest = Mutex(MetricsSnapshot())

    /// Nothing published yet.
    public init() {}

    /// Replaces what readers see.
    public func publish(_ snapshot: MetricsSnapshot) {
        latest.withLock { $0 = snapshot }
    }

    public func collectMetrics(into snapshot: inout MetricsSnapshot) {
        snapshot.values += latest.withLock { $0.values }
    }
}
