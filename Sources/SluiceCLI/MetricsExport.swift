#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CoreMetrics
import Prometheus
import Sluice
import SluicePrometheus
import Synchronization

/// `--metrics-listen ADDR:PORT`: the running service's metrics at `http://ADDR:PORT/metrics`,
/// sampled from the services' published snapshots at each scrape.
final class MetricsExport: Sendable {
    /// The reporter the endpoint updates before each scrape.
    let reporter: MetricsReporter
    let endpoint: MetricsEndpoint

    private static let registry = PrometheusCollectorRegistry()
    private static let bootstrapped = Mutex(false)

    /// Serves the metrics of `sources`, and of the process (`ProcessMetrics` for `service`), on
    /// `listen` (in `namespace`, which the process entered); `nil` when no address was given.
    /// Says where in one line, through `say`.
    static func start(_ listen: IPEndpoint?, service: String, sources: [any MetricsSource] = [], namespace: String? = nil,
                      say: (String) -> Void) throws -> MetricsExport? {
        guard let listen else { return nil }
        // The endpoint's thread inherits this mask: the stopping signals must stay for the command's
        // own waiter, not end the process on the endpoint's thread.
        SignalWaiter.block(SignalWaiter.stopping)
        bootstrapped.withLock { done in
            if !done { MetricsSystem.bootstrap(DescribedMetricsFactory(registry: registry, help: MetricHelp.text(for:))) }
            done = true
        }
        let reporter = MetricsReporter(sources: [ProcessMetrics(service: service)] + sources)
        do {
            let endpoint = try MetricsEndpoint(host: "\(listen.address)", port: Int(listen.port), registry: registry) {
                reporter.update()
            }
            let export = MetricsExport(reporter: reporter, endpoint: endpoint)
            let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
            say("sluice \(service): \(namespace.map { "in network namespace \($0), " } ?? "")metrics at http://\(host):\(endpoint.port)/metrics")
            return export
        } catch {
            writeToStandardError("sluice \(service): serving metrics on \(listen) failed: \(error); pick another --metrics-listen address or port\n")
            throw ExitCode(1)
        }
    }

    private init(reporter: MetricsReporter, endpoint: MetricsEndpoint) {
        self.reporter = reporter
        self.endpoint = endpoint
    }

    /// Stops serving.
    func close() { endpoint.close() }
}

/// `--metrics-listen` and `--json`, for every server command.
struct ReportOptions: ParsableArguments {
    @Option(help: "Serve Prometheus metrics at http://ADDR:PORT/metrics while running, e.g. 127.0.0.1:9464.")
    var metricsListen: IPEndpoint?

    @Flag(help: "Print the summary as one JSON object (schema: Benchmarks/sluice-server-summary.schema.json); the other lines go to stderr.")
    var json = false

    func validate() throws {
        if let metricsListen { try checkStreamAddress(metricsListen, "--metrics-listen") }
    }

    /// Where the lines other than the summary go: stderr with `--json`, so stdout is the summary alone.
    var say: @Sendable (String) -> Void {
        if json { return { line in writeToStandardError(line + "\n") } }
        return { line in print(line) }
    }
}

/// How a server on the TCP engine ended, for its summary.
struct StreamServerOutcome {
    var endpoint: IPEndpoint
    var seconds: Double
    var framesBalanced: Bool
    /// The text summary.
    var text: String
    /// The exit status it calls for (3: a frame or an operation was not accounted for).
    var status: Int32 = 0
}

extension ReportOptions {
    /// Runs a server on the TCP engine under `command`'s name: hands `body` the metrics to
    /// publish (with `--metrics-listen` or `--json`), serves them meanwhile, then prints the
    /// summary, as text or JSON.
    func runStreamServer(_ command: String, mode: String,
                         _ body: (PublishedMetrics?) throws -> StreamServerOutcome) throws {
        let metrics = metricsListen != nil || json ? PublishedMetrics() : nil
        let process = ProcessMetrics(service: command)
        let export = try MetricsExport.start(metricsListen, service: command, sources: metrics.map { [$0] } ?? [], say: say)
        defer { export?.close() }
        let outcome = try body(metrics)
        if json, let metrics {
            var snapshot = MetricsSnapshot()
            metrics.collectMetrics(into: &snapshot)
            process.collectMetrics(into: &snapshot)
            try printJSON(ServerSummary(command: command, endpoint: outcome.endpoint, backend: "uring", mode: mode,
                                        seconds: outcome.seconds, metrics: snapshot, framesBalanced: outcome.framesBalanced))
        } else {
            print(outcome.text)
        }
        if outcome.status != 0 { throw ExitCode(outcome.status) }
    }
}
