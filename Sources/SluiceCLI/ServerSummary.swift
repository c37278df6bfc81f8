import Sluice

/// What `--json` prints when a server stops: one object, the same for `udp-echo`, `dns serve`,
/// `tls serve` and `tcp-echo` (schema: Benchmarks/sluice-server-summary.schema.json). Its counters
/// are the server's final metrics under their metric names without `sluice_` and `_total`, summed
/// over workers and queues, so a script reads the same names as a Prometheus query.
struct ServerSummary: Encodable {
    /// Labels whose series are added up in a counter: where it was counted, not what.
    static let summedLabels: Set<String> = ["worker", "queue", "backend", "interface", "service"]

    /// One worker's traffic.
    struct Worker: Encodable {
        var worker: String
        var queue: String?
        var receivedPackets: UInt64
        var transmittedPackets: UInt64
    }

    /// One drop cause with a count.
    struct Drop: Encodable {
        var layer: String
        var cause: String
        var count: UInt64
    }

    var command: String
    var endpoint: String
    var backend: String
    var mode: String
    var seconds: Double
    var workers: [Worker] = []
    var counters: [String: Double] = [:]
    var drops: [Drop] = []
    var xdpVerdicts: [String: UInt64]?
    var framesBalanced: Bool
    var failure: String?

    init(command: String, endpoint: IPEndpoint, backend: String, mode: String, seconds: Double, metrics: MetricsSnapshot,
         framesBalanced: Bool, failure: String? = nil) {
        self.command = command
        self.endpoint = "\(endpoint)"
        self.backend = backend
        self.mode = mode
        self.seconds = seconds
        self.framesBalanced = framesBalanced
        self.failure = failure
        var drops: [String: Drop] = [:]
        var verdicts: [String: UInt64] = [:]
        for value in metrics.values where value.kind == .counter {
            let labels = Dictionary(value.labels, uniquingKeysWith: { first, _ in first })
            switch value.name {
            case "sluice_drops_total":
                let layer = labels["layer"] ?? "", cause = labels["cause"] ?? ""
                drops["\(layer)/\(cause)", default: Drop(layer: layer, cause: cause, count: 0)].count += UInt64(value.value)
            case "sluice_xdp_verdicts_total":
                verdicts[labels["verdict"] ?? "", default: 0] += UInt64(value.value)
            default:
                // Summed over workers, queues and the like; a label that splits what is counted
                // (a handshake's result, a KeyUpdate's direction) joins the name.
                let base = String(value.name.dropFirst(value.name.hasPrefix("sluice_") ? 7 : 0).dropLast(value.name.hasSuffix("_total") ? 6 : 0))
                let key = ([base] + value.labels.filter { !Self.summedLabels.contains($0.0) }.map(\.1)).joined(separator: "_")
                counters[key, default: 0] += value.value
            }
            if value.name == "sluice_port_received_packets_total", let worker = labels["worker"] {
                workers.append(Worker(worker: worker, queue: labels["queue"], receivedPackets: UInt64(value.value),
                                      transmittedPackets: UInt64(metrics.value("sluice_port_transmitted_packets_total", value.labels) ?? 0)))
            }
        }
        xdpVerdicts = verdicts.isEmpty ? nil : verdicts
        self.drops = drops.values.filter { $0.count > 0 }.sorted { ($0.layer, $0.cause) < ($1.layer, $1.cause) }
        workers.sort { (Int($0.worker) ?? 0) < (Int($1.worker) ?? 0) }
    }
}
