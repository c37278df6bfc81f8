#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CSluiceSystem
import Foundation
import SluicePrometheus

struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Watch a running Sluice service: per-worker and per-queue rates, drops by cause and CPU, from its /metrics.",
        discussion: """
            Reads the page a service started with --metrics-listen serves, every --interval seconds, and shows what \
            changed since the last read. With --json, prints one JSON object per interval instead \
            (schema: Benchmarks/sluice-top.schema.json).
            """)

    @Option(help: "The metrics page: http://HOST:PORT/metrics, or HOST:PORT.")
    var metrics: String = "http://127.0.0.1:9464/metrics"

    @Option(parsing: .unconditional, help: "Seconds between reads.")
    var interval: Double = 1

    @Option(parsing: .unconditional, help: "Stop after this many intervals (default: until SIGINT).")
    var count: Int?

    @Flag(help: "One JSON object per interval, one per line, for scripts.")
    var json = false

    func validate() throws {
        guard MetricsURL(metrics) != nil else { throw ValidationError("bad --metrics '\(metrics)': give http://HOST:PORT/PATH or HOST:PORT") }
        // Workers publish their counters every 0.1 s: shorter reads would show their steps, not rates.
        try checkSeconds(interval, "--interval", in: 0.5...3600)
        if let count { guard count >= 1 else { throw ValidationError("--count must be at least 1") } }
    }

    func run() throws {
        sluice_line_buffer_stdout()
        let url = MetricsURL(metrics)!
        // Before the first read starts NIO's threads, so that they inherit the blocked signals.
        let stop = stopCondition(duration: nil) { [json] line in json ? writeToStandardError(line + "\n") : print(line) }
        let clock = ContinuousClock()
        var previous = try read(url)
        var previousTime = clock.now
        let redraws = !json && isatty(STDOUT_FILENO) == 1
        var shown = 0
        while count.map({ shown < $0 }) ?? true {
            let wake = previousTime + Duration(checkedSeconds: interval)
            while clock.now < wake {
                if stop() { return }
                usleep(UInt32(Self.seconds(min(.milliseconds(100), wake - clock.now)) * 1e6))
            }
            let current = try read(url)
            let now = clock.now
            let frame = TopFrame(previous: previous, current: current, seconds: Self.seconds(now - previousTime),
                                 time: Date().timeIntervalSince1970)
            if json {
                try printJSON(frame)
            } else {
                if redraws { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                print(frame.text(url: url, interval: interval))
                if !redraws { print("") }
            }
            // top only prints: with its reader gone (`| head -1`) or its output lost, it is done.
            if sluice_flush_stdout() != 0 { throw ExitCode(1) }
            (previous, previousTime) = (current, now)
            shown += 1
        }
    }

    private func read(_ url: MetricsURL) throws -> MetricsPage {
        let page: MetricsPage
        do {
            page = MetricsPage(try MetricsText.parse(try MetricsScraper.fetch(url, timeout: .seconds(max(interval, 2)))))
        } catch {
            writeToStandardError("sluice top: \(error)\n")
            throw ExitCode(1)
        }
        // Another program's page would show as an idle sluice service.
        guard page.samples.contains(where: { $0.name.hasPrefix("sluice_") }) else {
            writeToStandardError("sluice top: \(metrics) serves no sluice_* metrics: is it a sluice service's --metrics-listen?\n")
            throw ExitCode(1)
        }
        return page
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// One read of a metrics page, by series.
struct MetricsPage {
    let samples: [MetricsSample]

    /// Keeps the finite samples: NaN or an infinity (legal in the format) has no rate.
    init(_ samples: [MetricsSample]) { self.samples = samples.filter { $0.value.isFinite } }

    /// The samples of `name`.
    func series(_ name: String) -> [MetricsSample] { samples.filter { $0.name == name } }

    /// The sum of `name` over every series whose labels include `labels`.
    func sum(_ name: String, where labels: [String: String] = [:]) -> Double? {
        let matching = series(name).filter { sample in labels.allSatisfy { sample.labels[$0.key] == $0.value } }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }
}

/// What changed between two reads: the rates `sluice top` shows and prints as JSON.
struct TopFrame: Encodable {
    /// A worker (and its queue).
    struct Worker: Encodable {
        var backend: String
        var worker: String
        var queue: String?
        var rxPps: Double
        var txPps: Double
        var rxBitsPerSecond: Double
        var dropsPerSecond: Double
        var cpuPercent: Double?
    }

    /// A drop cause.
    struct Drop: Encodable {
        var layer: String
        var cause: String
        var perSecond: Double
        var total: Double
    }

    /// The sums over workers.
    struct Totals: Encodable {
        var rxPps: Double
        var txPps: Double
        var rxBitsPerSecond: Double
        var dropsPerSecond: Double
    }

    /// The TCP engine's view (TLS and DNS over TCP).
    struct TCP: Encodable {
        var openConnections: Double
        var acceptedPerSecond: Double
        var receivedBitsPerSecond: Double
        var sentBitsPerSecond: Double
    }

    /// The TLS handler's view.
    struct TLS: Encodable {
        var handshakesPerSecond: Double
        var failedHandshakesPerSecond: Double
        var plaintextBitsPerSecond: Double
    }

    var time: Double
    var intervalSeconds: Double
    var workers: [Worker] = []
    var totals: Totals
    var drops: [Drop] = []
    var processCpuPercent: Double?
    var residentMemoryBytes: Double?
    var xdpVerdictsPerSecond: [String: Double] = [:]
    var servicePerSecond: [String: Double] = [:]
    var tcp: TCP?
    var tls: TLS?

    init(previous: MetricsPage, current: MetricsPage, seconds: Double, time: Double) {
        self.time = time
        intervalSeconds = seconds
        func rate(_ name: String, _ labels: [String: String] = [:]) -> Double {
            guard let now = current.sum(name, where: labels) else { return 0 }
            let before = previous.sum(name, where: labels) ?? 0
            // A counter that went back (the service restarted) counts from zero.
            return max(now >= before ? now - before : now, 0) / max(seconds, 1e-9)
        }
        for sample in current.series("sluice_port_received_packets_total") {
            var labels = ["worker": sample.labels["worker"] ?? "", "backend": sample.labels["backend"] ?? ""]
            if let queue = sample.labels["queue"] { labels["queue"] = queue }
            // The XSK rings' drops are the queue's (labelled with the queue, not a worker).
            let queueDrops = labels["queue"].map { rate("sluice_drops_total", ["backend": labels["backend"]!, "queue": $0, "layer": "xsk"]) } ?? 0
            let cpu = current.sum("sluice_worker_cpu_seconds_total", where: labels) != nil
                ? rate("sluice_worker_cpu_seconds_total", labels) * 100 : nil
            workers.append(Worker(
                backend: labels["backend"]!, worker: labels["worker"]!, queue: labels["queue"],
                rxPps: rate("sluice_port_received_packets_total", labels), txPps: rate("sluice_port_transmitted_packets_total", labels),
                rxBitsPerSecond: rate("sluice_port_received_bytes_total", labels) * 8,
                dropsPerSecond: rate("sluice_drops_total", labels) + queueDrops, cpuPercent: cpu))
        }
        workers.sort { (Int($0.worker) ?? 0, $0.backend) < (Int($1.worker) ?? 0, $1.backend) }
        totals = Totals(rxPps: workers.reduce(0) { $0 + $1.rxPps }, txPps: workers.reduce(0) { $0 + $1.txPps },
                        rxBitsPerSecond: workers.reduce(0) { $0 + $1.rxBitsPerSecond }, dropsPerSecond: rate("sluice_drops_total"))
        var causes: [String: (layer: String, cause: String)] = [:]
        for sample in current.series("sluice_drops_total") {
            let layer = sample.labels["layer"] ?? "", cause = sample.labels["cause"] ?? ""
            causes["\(layer)/\(cause)"] = (layer, cause)
        }
        for (_, key) in causes.sorted(by: { $0.key < $1.key }) {
            let labels = ["layer": key.layer, "cause": key.cause]
            let total = current.sum("sluice_drops_total", where: labels) ?? 0
            if total > 0 { drops.append(Drop(layer: key.layer, cause: key.cause, perSecond: rate("sluice_drops_total", labels), total: total)) }
        }
        if current.sum("sluice_process_cpu_seconds_total") != nil { processCpuPercent = rate("sluice_process_cpu_seconds_total") * 100 }
        residentMemoryBytes = current.sum("sluice_process_resident_memory_bytes")
        for sample in current.series("sluice_xdp_verdicts_total") {
            guard let verdict = sample.labels["verdict"] else { continue }
            xdpVerdictsPerSecond[verdict] = rate("sluice_xdp_verdicts_total", ["verdict": verdict])
        }
        for name in Set(current.samples.map(\.name)) where name.hasPrefix("sluice_service_") && name.hasSuffix("_total") {
            servicePerSecond[String(name.dropFirst("sluice_service_".count).dropLast("_total".count))] = rate(name)
        }
        if let open = current.sum("sluice_tcp_open_connections") {
            tcp = TCP(openConnections: open, acceptedPerSecond: rate("sluice_tcp_connections_accepted_total"),
                      receivedBitsPerSecond: rate("sluice_tcp_received_bytes_total") * 8,
                      sentBitsPerSecond: rate("sluice_tcp_sent_bytes_total") * 8)
        }
        if current.sum("sluice_tls_handshakes_total") != nil {
            tls = TLS(handshakesPerSecond: rate("sluice_tls_handshakes_total", ["result": "completed"]),
                      failedHandshakesPerSecond: rate("sluice_tls_handshakes_total", ["result": "failed"]),
                      plaintextBitsPerSecond: rate("sluice_tls_plaintext_received_bytes_total") * 8)
        }
    }

    /// The frame as a screen, like `xdp-bench`: a row per worker, the drops, the CPU.
    func text(url: MetricsURL, interval: Double) -> String {
        func column(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(width - text.count, 0)) + text }
        func rate(_ value: Double) -> String {
            if value >= 1e9 { return String(format: "%.2fG", value / 1e9) }
            if value >= 1e6 { return String(format: "%.2fM", value / 1e6) }
            if value >= 1e3 { return String(format: "%.2fk", value / 1e3) }
            return whole(value)
        }
        // Not Int(_:), which traps past Int.max.
        func whole(_ value: Double) -> String { String(format: "%.0f", value) }
        var heading = "sluice top: \(url), every \(String(format: "%.2f", interval)) s"
        if let processCpuPercent { heading += ", process CPU \(whole(processCpuPercent)) %" }
        if let residentMemoryBytes { heading += ", RSS \(rate(residentMemoryBytes))B" }
        var lines = [heading]
        if !workers.isEmpty {
            lines.append(["worker", "queue", "backend", "rx pps", "tx pps", "rx bit/s", "drops/s", "CPU %"]
                .enumerated().map { column($1, $0 < 3 ? 8 : 10) }.joined(separator: " "))
            for worker in workers {
                lines.append([worker.worker, worker.queue ?? "-", worker.backend, rate(worker.rxPps), rate(worker.txPps),
                              rate(worker.rxBitsPerSecond), rate(worker.dropsPerSecond),
                              worker.cpuPercent.map { whole($0) } ?? "-"]
                    .enumerated().map { column($1, $0 < 3 ? 8 : 10) }.joined(separator: " "))
            }
            if workers.count > 1 {
                lines.append(["total", "", "", rate(totals.rxPps), rate(totals.txPps), rate(totals.rxBitsPerSecond),
                              rate(totals.dropsPerSecond), ""].enumerated().map { column($1, $0 < 3 ? 8 : 10) }.joined(separator: " "))
            }
        }
        if let tcp {
            lines.append("tcp: \(whole(tcp.openConnections)) open, \(rate(tcp.acceptedPerSecond)) accepted/s, "
                         + "in \(rate(tcp.receivedBitsPerSecond))bit/s, out \(rate(tcp.sentBitsPerSecond))bit/s")
        }
        if let tls {
            lines.append("tls: handshakes \(rate(tls.handshakesPerSecond))/s completed, \(rate(tls.failedHandshakesPerSecond))/s failed, "
                         + "plaintext in \(rate(tls.plaintextBitsPerSecond))bit/s")
        }
        let verdicts = xdpVerdictsPerSecond.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        if !verdicts.isEmpty { lines.append("xdp program: " + verdicts.map { "\($0.key) \(rate($0.value))/s" }.joined(separator: ", ")) }
        let service = servicePerSecond.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        if !service.isEmpty { lines.append("service: " + service.map { "\($0.key) \(rate($0.value))/s" }.joined(separator: ", ")) }
        lines.append("drops: " + (drops.isEmpty ? "none" : drops.map { "\($0.layer)/\($0.cause) \(rate($0.perSecond))/s (\(whole($0.total)))" }
            .joined(separator: ", ")))
        return lines.joined(separator: "\n")
    }
}
