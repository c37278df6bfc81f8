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
    /// `listen`; `nil` when no address was given. Says where in one line.
    static func start(_ listen: IPEndpoint?, service: String, sources: [any MetricsSource] = []) throws -> MetricsExport? {
        guard let listen else { return nil }
        // The endpoint's thread inherits this mask: SIGINT and SIGTERM must stay for the command's
        // own waiter, not end the process on the endpoint's thread.
        SignalWaiter.block([SIGINT, SIGTERM])
        bootstrapped.withLock { done in
            if !done { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
            done = true
        }
        let reporter = MetricsReporter(sources: [ProcessMetrics(service: service)] + sources)
        do {
            let endpoint = try MetricsEndpoint(host: "\(listen.address)", port: Int(listen.port), registry: registry) {
                reporter.update()
            }
            let export = MetricsExport(reporter: reporter, endpoint: endpoint)
            let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
            print("sluice \(service): metrics at http://\(host):\(endpoint.port)/metrics")
            return export
        } catch {
            writeToStandardError("sluice \(service): \(error)\n")
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
