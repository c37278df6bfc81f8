import CoreMetrics
import Glibc
import Prometheus
import Sluice
import SluicePrometheus
import Synchronization
import Testing

@Suite struct MetricsTextTests {
    @Test func readsWhatSwiftPrometheusWrites() throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "sluice", metricName: "drops", unitName: "total", helpText: "Drops."),
                             labels: [("cause", "a \"quoted\\\" name\nwith a newline")]).increment(by: Int64(7))
        registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "sluice", metricName: "open", unitName: "connections", helpText: "Open."), labels: [("worker", "0")]).set(2.5)
        let histogram = registry.makeDurationHistogram(descriptor: MetricNameDescriptor(namespace: "sluice", metricName: "wait", unitName: "seconds", helpText: "Waits."),
                                                       labels: [("worker", "1")], buckets: [.milliseconds(1), .seconds(1)])
        histogram.record(.milliseconds(5))
        let samples = try MetricsText.parse(registry.emitToString())
        let drops = try #require(samples.first { $0.name == "sluice_drops_total" })
        #expect(drops.value == 7)
        #expect(drops.labels == ["cause": "a \"quoted\\\" name\nwith a newline"])
        #expect(samples.contains { $0.name == "sluice_open_connections" && $0.value == 2.5 && $0.labels == ["worker": "0"] })
        #expect(samples.contains { $0.name == "sluice_wait_seconds_bucket" && $0.labels["le"] == "+Inf" && $0.value == 1 })
        #expect(samples.contains { $0.name == "sluice_wait_seconds_bucket" && $0.labels["le"] == "0.001" && $0.value == 0 })
    }

    @Test func takesSpecialValuesTimestampsCommentsAndBlankLines() throws {
        let text = "# HELP x something\n# TYPE x gauge\n\nx NaN\ny{a=\"1\"} +Inf 1700000000000\nz -Inf\r\nw{} 1e3\n  v 2\n"
        let samples = try MetricsText.parse(text)
        #expect(samples.map(\.name) == ["x", "y", "z", "w", "v"])
        #expect(samples[0].value.isNaN)
        #expect(samples[1].value == .infinity && samples[1].labels == ["a": "1"])
        #expect(samples[2].value == -.infinity)
        #expect(samples[3].value == 1000)
    }

    @Test(arguments: [
        ("x", 1, "no value"), ("x 0x10", 1, "is not a number"), ("x nan", 1, "is not a number"), ("x{a=1} 2", 1, "quoted"),
        ("ok 1\nx{a=\"1\" 2", 2, "expected ',' or '}'"), ("x{a=\"1\",a=\"2\"} 3", 1, "twice"), ("x{a=\"\\t\"} 1", 1, "escape"),
        ("9x 1", 1, "metric name"), ("x 1 2 3", 1, "after the value"), ("x{a=\"open", 1, "not closed"), ("x{=\"1\"} 1", 1, "label name"),
    ])
    func refusesWhatIsNotTheFormat(text: String, line: Int, reason: String) {
        #expect {
            _ = try MetricsText.parse(text)
        } throws: { error in
            guard let error = error as? MetricsTextError else { return false }
            return error.line == line && error.reason.contains(reason)
        }
    }

    @Test func readsURLs() {
        #expect(MetricsURL("http://127.0.0.1:9464/metrics") == MetricsURL("127.0.0.1:9464"))
        #expect(MetricsURL("http://[2001:2::1]:9464/x")?.host == "2001:2::1")
        #expect(MetricsURL("http://[2001:2::1]:9464/x")?.path == "/x")
        #expect(MetricsURL("http://example.test")?.port == 80)
        #expect(MetricsURL("https://example.test") == nil)
        #expect(MetricsURL("host:0") == nil)
        #expect(MetricsURL("host:99999") == nil)
        #expect(MetricsURL("[::1") == nil)
        #expect(MetricsURL("a:b:c") == nil)
        #expect(MetricsURL("host:1/with space") == nil)
        #expect(MetricsURL("[::1]:9464")?.description == "http://[::1]:9464/metrics")
    }
}

@Suite struct MetricsReporterTests {
    /// A source whose values the test sets.
    final class FixedSource: MetricsSource {
        let values = Mutex(MetricsSnapshot())
        func collectMetrics(into snapshot: inout MetricsSnapshot) { snapshot.values += values.withLock { $0.values } }
    }

    func emitted(_ registry: PrometheusCollectorRegistry) throws -> [MetricsSample] {
        try MetricsText.parse(registry.emitToString())
    }

    @Test func reportsCountersByTheirIncreaseAndGaugesAsTheyAre() throws {
        let registry = PrometheusCollectorRegistry()
        let source = FixedSource()
        let reporter = MetricsReporter(sources: [source], factory: PrometheusMetricsFactory(registry: registry))
        func set(_ packets: UInt64, _ seconds: Double, _ open: Double) {
            var snapshot = MetricsSnapshot()
            snapshot.counter("sluice_port_received_packets_total", packets, [("worker", "0")])
            snapshot.counter("sluice_worker_cpu_seconds_total", seconds, [("worker", "0")])
            snapshot.gauge("sluice_tcp_open_connections", open, [("backend", "uring")])
            source.values.withLock { $0 = snapshot }
        }
        func value(_ name: String) throws -> Double {
            try #require(try emitted(registry).first { $0.name == name }).value
        }
        set(5, 0.25, 3)
        reporter.update()
        #expect(try value("sluice_port_received_packets_total") == 5)
        #expect(try value("sluice_worker_cpu_seconds_total") == 0.25)
        #expect(try value("sluice_tcp_open_connections") == 3)
        set(12, 0.75, 1)
        reporter.update()
        reporter.update()
        #expect(try value("sluice_port_received_packets_total") == 12)
        #expect(try value("sluice_worker_cpu_seconds_total") == 0.75)
        #expect(try value("sluice_tcp_open_connections") == 1)
        // A source that restarted counts from zero: the exported counter never goes back.
        set(3, 0.5, 0)
        reporter.update()
        #expect(try value("sluice_port_received_packets_total") == 15)
        #expect(try value("sluice_worker_cpu_seconds_total") == 1.25)
        // Whole counts print whole.
        #expect(registry.emitToString().contains("sluice_port_received_packets_total{worker=\"0\"} 15\n"))
    }

    @Test func everyFamilyGetsItsHelpText() throws {
        let registry = PrometheusCollectorRegistry()
        let source = FixedSource()
        var snapshot = MetricsSnapshot()
        snapshot.counter("sluice_port_received_packets_total", UInt64(5), [("worker", "0")])
        snapshot.counter("sluice_port_received_packets_total", UInt64(7), [("worker", "1")])
        snapshot.counter("sluice_tcp_sent_bytes_total", UInt64(9), [("backend", "uring")])
        snapshot.counter("sluice_worker_cpu_seconds_total", 0.5, [("worker", "0")])
        snapshot.gauge("sluice_tcp_open_connections", 2, [("backend", "uring")])
        snapshot.counter("other_program_total", UInt64(1), [])
        source.values.withLock { $0 = snapshot }
        let factory = DescribedMetricsFactory(registry: registry, help: MetricHelp.text(for:))
        MetricsReporter(sources: [source], factory: factory).update()
        let page = registry.emitToString()
        #expect(page.contains("# HELP sluice_port_received_packets_total Received packets, at the port"), "\(page)")
        #expect(page.contains("# HELP sluice_tcp_sent_bytes_total Sent bytes, counted by the io_uring TCP engine.\n"))
        #expect(page.contains("# HELP sluice_worker_cpu_seconds_total CPU time of each worker thread"))
        #expect(page.contains("# HELP sluice_tcp_open_connections TCP connections open now"))
        #expect(page.contains("sluice_port_received_packets_total{worker=\"1\"} 7\n"))
        #expect(!page.contains("# HELP other_program_total"))
        #expect(try MetricsText.parse(page).count == 6)
        // Histograms and timers are swift-prometheus's own.
        Timer(label: "sluice_test_seconds", factory: factory).recordNanoseconds(1_000)
        #expect(registry.emitToString().contains("# TYPE sluice_test_seconds histogram"))
    }

    @Test func processMetricsSayWhatRuns() throws {
        var snapshot = MetricsSnapshot()
        ProcessMetrics(service: "test").collectMetrics(into: &snapshot)
        #expect(snapshot.value("sluice_info", [("version", SluiceVersion.current), ("service", "test")]) == 1)
        #expect((snapshot.value("sluice_process_cpu_seconds_total", [("service", "test")]) ?? 0) > 0)
        #expect((snapshot.value("sluice_process_resident_memory_bytes", [("service", "test")]) ?? 0) > 1_048_576.0)
    }
}

@Suite struct MetricsEndpointTests {
    @Test func servesTheRegistryAndScrapesItBack() throws {
        let registry = PrometheusCollectorRegistry()
        let counter = registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "sluice", metricName: "scrapes", unitName: "total", helpText: "Scrapes."),
                                           labels: [("worker", "0")])
        let endpoint = try MetricsEndpoint(host: "127.0.0.1", port: 0, registry: registry) { counter.increment() }
        defer { endpoint.close() }
        #expect(endpoint.port > 0)
        let url = try #require(MetricsURL("127.0.0.1:\(endpoint.port)"))
        for expected in 1...3 {
            let page = try MetricsText.parse(try MetricsScraper.fetch(url))
            let scrapes = page.first { $0.name == "sluice_scrapes_total" }?.value
            #expect(scrapes == Double(expected))
        }
        #expect {
            _ = try MetricsScraper.fetch(MetricsURL("127.0.0.1:\(endpoint.port)/nothing")!)
        } throws: { "\($0)".contains("404") }
    }

    /// A client that pipelines requests and never reads: pages are made only as fast as it takes
    /// them (the socket buffers' worth), not one per request it sent.
    @Test func aClientThatNeverReadsIsNotAnsweredAheadOfItsReading() throws {
        let registry = PrometheusCollectorRegistry()
        // A page of about 60 KB.
        for worker in 0..<600 {
            registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "sluice", metricName: "padding", unitName: "total",
                                                                  helpText: "Padding."),
                                 labels: [("worker", "\(worker)")]).increment()
        }
        let scrapes = Atomic(0)
        let endpoint = try MetricsEndpoint(host: "127.0.0.1", port: 0, registry: registry) { scrapes.add(1, ordering: .relaxed) }
        defer { endpoint.close() }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(client >= 0)
        defer { close(client) }
        var size: Int32 = 4096
        setsockopt(client, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(endpoint.port).bigEndian),
                                  sin_addr: in_addr(s_addr: UInt32(0x7F00_0001).bigEndian), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
        let request = Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        var sent = 0
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(3)
        while sent < 3000, clock.now < deadline {
            if send(client, request, request.count, Int32(MSG_NOSIGNAL)) == request.count { sent += 1 } else { usleep(1000) }
        }
        usleep(500_000)
        let made = scrapes.load(ordering: .relaxed)
        // About 8 MB fit in the two sockets' buffers on loopback: 150-odd pages, not 3000.
        #expect(sent == 3000 && made > 0 && made < 400, "\(sent) requests sent, \(made) pages made")
    }

    @Test func saysWhyItCannotListen() throws {
        let registry = PrometheusCollectorRegistry()
        let first = try MetricsEndpoint(host: "127.0.0.1", port: 0, registry: registry)
        defer { first.close() }
        #expect {
            _ = try MetricsEndpoint(host: "127.0.0.1", port: first.port, registry: registry)
        } throws: { error in
            "\(error)".contains("cannot serve /metrics on 127.0.0.1:\(first.port)") && "\(error)".contains("in use")
        }
        #expect {
            _ = try MetricsScraper.fetch(MetricsURL("127.0.0.1:1")!, timeout: .seconds(2))
        } throws: { "\($0)" == "cannot read http://127.0.0.1:1/metrics: Connection refused (errno 111); is the service running with --metrics-listen on this address?" }
        #expect {
            _ = try MetricsScraper.fetch(MetricsURL("nosuchhost.invalid:9")!, timeout: .seconds(2))
        } throws: { "\($0)" == "cannot read http://nosuchhost.invalid:9/metrics: no address for nosuchhost.invalid" }
    }
}
