#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Sluice
import SluicePrometheus
import SluiceTestSupport
import Testing

/// `--metrics-listen` on the servers, scraped by curl while traffic flows, and `sluice top`
/// reading the same page.
@Suite("Prometheus metrics and sluice top", .serialized)
struct MetricsCommandTests {
    /// The `/metrics` URL a server printed ("sluice udp-echo: metrics at http://127.0.0.1:41234/metrics").
    static func metricsURL(of server: ChildProcess) throws -> String {
        let line = try #require(server.waitForLine(containing: "metrics at http://"), "no metrics line: \(server.text)")
        return String(try #require(line.split(separator: " ").last))
    }

    /// The page at `url` as curl gets it (in `namespace` when given), parsed.
    static func scrape(_ url: String, in namespace: String? = nil) throws -> [MetricsSample] {
        let (status, text) = try fetch(url, in: namespace)
        try #require(status == 0, "curl \(url): \(text)")
        return try MetricsText.parse(text)
    }

    /// Expects a `# HELP` line, with text, before every family's `# TYPE` on the page at `url`.
    static func expectHelpForEveryFamily(_ url: String, in namespace: String? = nil) throws {
        let (status, text) = try fetch(url, in: namespace)
        try #require(status == 0, "curl \(url): \(text)")
        var described = Set<String>()
        var families = 0
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 3)
            if words.count == 4, words[1] == "HELP", !words[3].isEmpty { described.insert(String(words[2])) }
            if words.count >= 3, words[1] == "TYPE" {
                families += 1
                #expect(described.contains(String(words[2])), "no # HELP for \(words[2])")
            }
        }
        #expect(families > 3, "\(text)")
    }

    /// curl's exit status and output for `url`.
    static func fetch(_ url: String, in namespace: String?) throws -> (Int32?, String) {
        let command = (namespace.map { ["/usr/sbin/ip", "netns", "exec", $0] } ?? []) + ["/usr/bin/curl", "-sS", "--fail", "--max-time", "5", url]
        let curl = try ChildProcess(command[0], Array(command.dropFirst()))
        let status = curl.waitForExit(timeout: .seconds(10))
        return (status, curl.text)
    }

    /// Scrapes until `name` sums to at least `least` (2 s at most), and returns the last page:
    /// workers publish what metrics read every `WorkerState.sampleInterval`, when their loop next
    /// turns (an idle one at its receive timeout), so a scrape right after traffic can miss it;
    /// and the endpoint starts beside the workers, so the first tries may find nothing listening.
    static func scrape(_ url: String, in namespace: String? = nil, until name: String, reaches least: Double) throws -> [MetricsSample] {
        for _ in 0..<20 {
            if case (0?, let text) = try fetch(url, in: namespace), let page = try? MetricsText.parse(text), sum(page, name) >= least {
                return page
            }
            usleep(100_000)
        }
        return try scrape(url, in: namespace)
    }

    /// The sum of `name` over the series whose labels include `labels`.
    static func sum(_ samples: [MetricsSample], _ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
            .reduce(0) { $0 + $1.value }
    }

    static func curlAvailable() -> Bool {
        guard access("/usr/bin/curl", X_OK) == 0 else {
            print("skip: curl not installed; the README's test command installs it")
            return false
        }
        return true
    }

    @Test("udp-echo: the counters move under load, scraped by curl; sluice top --json reads the rates")
    func udpEchoMetricsMoveAndTopReadsThem() throws {
        guard Self.curlAvailable() else { return }
        let server = try ChildProcess(sluice: ["udp-echo", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                               "--workers", "2", "--duration", "60", "--stats-interval", "0"])
        let url = try Self.metricsURL(of: server)
        let line = try #require(server.waitForLine(containing: "backend on"), "\(server.text)")
        let endpoint = try #require(UDPEchoTests.endpoint(in: line))
        let before = try Self.scrape(url)
        #expect(Self.sum(before, "sluice_info", ["service": "udp-echo"]) == 1)
        try Self.expectHelpForEveryFamily(url)
        #expect(Self.sum(before, "sluice_port_received_packets_total") == 0)
        let client = try ChildProcess(sluice: ["udp-client", "--target", "\(endpoint)", "--duration", "4", "--size", "100"])
        usleep(1_000_000)
        let during = try Self.scrape(url)
        let top = try ChildProcess(sluice: ["top", "--metrics", url, "--interval", "0.5", "--count", "3", "--json"])
        #expect(top.waitForExit(timeout: .seconds(20)) == 0, "\(top.text)")
        usleep(200_000)
        let later = try Self.scrape(url)
        #expect(client.waitForExit(timeout: .seconds(20)) == 0, "\(client.text)")

        let received = (Self.sum(during, "sluice_port_received_packets_total"), Self.sum(later, "sluice_port_received_packets_total"))
        #expect(received.0 > 0 && received.1 > received.0, "received: \(received)")
        #expect(Self.sum(later, "sluice_port_received_bytes_total") >= 100 * received.1)
        #expect(Self.sum(later, "sluice_udp_replies_total") > 0)
        #expect(Self.sum(later, "sluice_worker_cpu_seconds_total") > 0)
        #expect(Self.sum(later, "sluice_process_cpu_seconds_total") > Self.sum(before, "sluice_process_cpu_seconds_total"))
        #expect(Self.sum(later, "sluice_drops_total") == 0)
        // Per worker: both workers have their series, labelled.
        #expect(Set(later.filter { $0.name == "sluice_port_received_packets_total" }.compactMap { $0.labels["worker"] }) == ["0", "1"])

        let lines = top.text.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(top.text)")
        let validator = try SchemaValidator(schema: "Benchmarks/sluice-top.schema.json")
        for line in lines {
            let validation = try validator.validate(line)
            #expect(validation.valid, "\(validation.output)\n\(line)")
            let frame = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let totals = try #require(frame["totals"] as? [String: Any])
            let rx = try #require(totals["rx_pps"] as? Double)
            let tx = try #require(totals["tx_pps"] as? Double)
            #expect(rx > 1000 && tx > 1000, "\(line)")
            #expect((frame["workers"] as? [Any])?.count == 2)
            #expect(((frame["process_cpu_percent"] as? Double) ?? 0) > 0)
        }
        // top only prints: its reader gone, it ends (with status 1), where it ran on unseen.
        let piped = try ChildProcess("/bin/sh", ["-c", "\(SluiceExecutable.path) top --metrics \(url) --interval 0.5 | head -1"])
        #expect(piped.waitForExit(timeout: .seconds(10)) == 0, "\(piped.text)")
        #expect(piped.text.contains("sluice top: ") && piped.text.contains("writing standard output failed"), "\(piped.text)")
        #expect(server.stop() == 0)
    }

    @Test("sluice top refuses a metrics page with none of sluice's series (another program's port)")
    func topRefusesAnotherProgramsPage() throws {
        let directory = "/tmp/sluice-top-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "# TYPE go_goroutines gauge\ngo_goroutines 7\n".write(toFile: directory + "/metrics", atomically: true, encoding: .utf8)
        let port = 20000 + Int(getpid() % 20000) + 11
        let other = try ChildProcess("/usr/bin/python3", ["-u", "-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory", directory])
        defer { _ = other.stop(signal: SIGKILL) }
        _ = other.waitForLine(containing: "Serving HTTP")
        let top = try ChildProcess(sluice: ["top", "--metrics", "http://127.0.0.1:\(port)/metrics", "--count", "1"])
        #expect(top.waitForExit(timeout: .seconds(10)) == 1, "\(top.text)")
        #expect(top.text.contains("serves no sluice_* metrics"), "\(top.text)")
    }

    @Test("sluice top: a queue's XSK drops count on its worker's row; NaN, infinities and huge values do not trap")
    func topTakesQueueDropsAndOddValues() throws {
        // A page whose counters grow by the same step at every read.
        let script = #"""
            import http.server, sys
            reads = 0
            class Page(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    global reads
                    reads += 1
                    body = (f'sluice_port_received_packets_total{{backend="xdp",worker="0",queue="0"}} {reads * 1000}\n'
                            f'sluice_port_received_packets_total{{backend="xdp",worker="1",queue="1"}} {reads * 1000}\n'
                            f'sluice_drops_total{{backend="xdp",interface="veth1",queue="0",layer="xsk",cause="rx_ring_full"}} {reads * 500}\n'
                            'sluice_process_cpu_seconds_total{service="x"} +Inf\n'
                            'sluice_process_resident_memory_bytes{service="x"} NaN\n'
                            'sluice_tcp_open_connections 1e30\n').encode()
                    self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *args): pass
            server = http.server.HTTPServer(('127.0.0.1', 0), Page)
            print('port', server.server_address[1], flush=True)
            server.serve_forever()
            """#
        let page = try ChildProcess("/usr/bin/python3", ["-c", script])
        defer { _ = page.stop(signal: SIGKILL) }
        let line = try #require(page.waitForLine(containing: "port "), "\(page.text)")
        let url = "127.0.0.1:\(line.split(separator: " ").last!)"
        let text = try ChildProcess(sluice: ["top", "--metrics", url, "--interval", "0.5", "--count", "1"])
        #expect(text.waitForExit(timeout: .seconds(10)) == 0, "\(text.text)")
        #expect(text.text.contains("tcp: 1000000000000000019884624838656 open"), "\(text.text)")
        let json = try ChildProcess(sluice: ["top", "--metrics", url, "--interval", "0.5", "--count", "1", "--json"])
        #expect(json.waitForExit(timeout: .seconds(10)) == 0, "\(json.text)")
        let frame = try #require(json.text.split(separator: "\n").first { $0.hasPrefix("{") }, "\(json.text)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(frame.utf8)) as? [String: Any])
        let workers = try #require(object["workers"] as? [[String: Any]], "\(frame)")
        let drops = workers.map { $0["drops_per_second"] as? Double ?? -1 }
        // 500 a read over about half a second on queue 0's worker; none on queue 1's.
        #expect(drops.count == 2 && drops[0] > 400 && drops[0] < 1500 && drops[1] == 0, "\(frame)")
        #expect(object["process_cpu_percent"] == nil && !frame.contains("nan"), "\(frame)")
    }

    @Test("tls serve: handshakes and bytes from openssl s_client show in /metrics")
    func tlsServeMetrics() throws {
        guard Self.curlAvailable(), TLSInteropTests.peersAvailable() else { return }
        let server = try ChildProcess(sluice: ["tls", "serve", "--cert", TLSInteropTests.certificate, "--key", TLSInteropTests.key,
                                               "--listen", "127.0.0.1:0", "--echo", "--duration", "60", "--metrics-listen", "127.0.0.1:0"])
        let url = try Self.metricsURL(of: server)
        let line = try #require(server.waitForLine(containing: "listening on"), "\(server.text)")
        let port = try #require(line.split(separator: ":").last.flatMap { Int($0) })
        for _ in 0..<3 {
            let run = try TLSInteropTests.shell(
                "(head -c 100000 /dev/zero; sleep 1) | openssl s_client -connect 127.0.0.1:\(port) -CAfile \(TLSInteropTests.authority) "
                    + "-servername sluice.test -quiet -no_ign_eof > /dev/null 2>&1", timeout: .seconds(30))
            #expect(run.status != nil)
        }
        usleep(300_000)
        let page = try Self.scrape(url)
        #expect(Self.sum(page, "sluice_tls_handshakes_total", ["result": "completed"]) == 3, "\(page.filter { $0.name.hasPrefix("sluice_tls") })")
        #expect(Self.sum(page, "sluice_tls_plaintext_received_bytes_total") == 300_000)
        #expect(Self.sum(page, "sluice_tcp_connections_accepted_total") == 3)
        #expect(Self.sum(page, "sluice_tcp_open_connections") == 0)
        #expect(Self.sum(page, "sluice_uring_enters_total") > 0)
        try Self.expectHelpForEveryFamily(url)
        #expect(server.stop(signal: SIGINT) == 0)
    }

    @Test("dns serve: responses over UDP and TCP from dig show in /metrics")
    func dnsServeMetrics() throws {
        guard Self.curlAvailable() else { return }
        guard access("/usr/bin/dig", X_OK) == 0 else {
            print("skip: dig not installed; the README's test command installs bind9-dnsutils")
            return
        }
        let namespace = try ScratchNamespace(prefix: "slmet")
        let zone = String(#filePath.split(separator: "/").dropLast(2).joined(separator: "/")).withLeadingSlash
            + "/SluiceDNSTests/Fixtures/example.test.zone"
        let server = try ChildProcess(sluice: ["dns", "serve", "--zone", zone, "--netns", namespace.name, "--listen", "127.0.0.1:5353",
                                               "--duration", "60", "--stats-interval", "0", "--metrics-listen", "127.0.0.1:9464", "--json"])
        let url = try Self.metricsURL(of: server)
        #expect(server.text.contains("in network namespace \(namespace.name), metrics at http://127.0.0.1:9464/metrics"),
                "where the page is: \(server.text)")
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        for transport in ["+notcp", "+tcp"] {
            for name in ["example.test", "nothing.example.test"] {
                let dig = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "dig", "@127.0.0.1", "-p", "5353", name, "A", transport])
                #expect(dig.waitForExit(timeout: .seconds(10)) == 0, "\(dig.text)")
            }
        }
        usleep(300_000)
        let page = try Self.scrape(url, in: namespace.name, until: "sluice_service_responses_total", reaches: 2)
        #expect(Self.sum(page, "sluice_service_responses_total") == 2)
        #expect(Self.sum(page, "sluice_service_noerror_total") == 1)
        #expect(Self.sum(page, "sluice_service_nxdomain_total") == 1)
        #expect(Self.sum(page, "sluice_dns_tcp_responses_total") == 2)
        #expect(Self.sum(page, "sluice_tcp_connections_accepted_total") == 2)
        try Self.expectHelpForEveryFamily(url, in: namespace.name)
        #expect(server.stop() == 0)
        // --json: the summary carries both sides, under the same names.
        let (line, summary) = try JSONOutputTests.object(in: server.text)
        try JSONOutputTests.validate(line, "sluice-server-summary.schema.json")
        let counters = try #require(summary["counters"] as? [String: Double])
        #expect(counters["service_responses"] == 2 && counters["dns_tcp_responses"] == 2, "\(line)")
    }

    @Test("udp-echo --backend xdp: per-queue series, XSK ring statistics and the program's verdicts")
    func xdpMetrics() throws {
        guard Self.curlAvailable() else { return }
        let topology = try TestTopology(.init(suffix: "mx\(getpid() % 100_000)", queues: 2))
        defer { topology.destroy() }
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--queues", "0-1", "--netns", topology.serverNamespace,
            "--listen", "\(topology.serverIPv4):9000", "--duration", "60", "--stats-interval", "0", "--metrics-listen", "127.0.0.1:9464"])
        let url = try Self.metricsURL(of: server)
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let client = try ChildProcess(sluice: ["udp-client", "--target", "\(topology.serverIPv4):9000", "--netns", topology.clientNamespace,
                                               "--duration", "1"])
        #expect(client.waitForExit(timeout: .seconds(20)) == 0, "\(client.text)")
        usleep(300_000)
        let page = try Self.scrape(url, in: topology.serverNamespace)
        let received = Self.sum(page, "sluice_port_received_packets_total")
        #expect(received > 0)
        #expect(Self.sum(page, "sluice_xdp_verdicts_total", ["verdict": "redirected"]) == received)
        let queues = Set(page.filter { $0.name == "sluice_xsk_fill_ring_empty_total" }.compactMap { $0.labels["queue"] })
        #expect(queues == ["0", "1"])
        #expect(Set(page.filter { $0.name == "sluice_drops_total" && $0.labels["layer"] == "xsk" }.compactMap { $0.labels["cause"] })
                == ["rx_dropped", "rx_ring_full", "rx_invalid_descs", "tx_invalid_descs"])
        #expect(Set(page.filter { $0.name == "sluice_port_received_packets_total" }.compactMap { $0.labels["queue"] }) == ["0", "1"])
        try Self.expectHelpForEveryFamily(url, in: topology.serverNamespace)
        #expect(server.stop() == 0)
        #expect(server.text.contains("frames: all returned to their pools"))
    }
}
