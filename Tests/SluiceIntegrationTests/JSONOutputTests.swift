#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Sluice
import SluiceTestSupport
import Testing

/// `--json` on the servers' summaries, `udp-client` and `xdp status`, each checked against its
/// schema by Python's jsonschema, and against the traffic that was sent.
@Suite("JSON output", .serialized)
struct JSONOutputTests {
    /// The one JSON object line among what a child printed (stdout and stderr share the file).
    static func object(in text: String) throws -> (line: String, value: [String: Any]) {
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("{") }
        try #require(lines.count == 1, "expected one JSON line in: \(text)")
        let line = String(lines[0])
        let value = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        return (line, value)
    }

    static func validate(_ line: String, _ schema: String) throws {
        let validation = try SchemaValidator(schema: "Benchmarks/\(schema)").validate(line)
        #expect(validation.valid, "\(validation.output)\n\(line)")
    }

    @Test("udp-echo --json and udp-client --json agree on the datagrams")
    func udpEchoAndClient() throws {
        let server = try ChildProcess(sluice: ["udp-echo", "--listen", "127.0.0.1:0", "--json", "--duration", "60", "--stats-interval", "0"])
        let line = try #require(server.waitForLine(containing: "backend on"), "\(server.text)")
        let endpoint = try #require(UDPEchoTests.endpoint(in: line))
        let client = try ChildProcess(sluice: ["udp-client", "--target", "\(endpoint)", "--count", "5000", "--size", "200", "--json"])
        #expect(client.waitForExit(timeout: .seconds(30)) == 0, "\(client.text)")
        #expect(server.stop() == 0)
        let (clientLine, report) = try Self.object(in: client.text)
        try Self.validate(clientLine, "sluice-udp-client.schema.json")
        #expect(report["sent"] as? Int == 5000 && report["received"] as? Int == 5000 && report["corrupt"] as? Int == 0, "\(clientLine)")
        let (serverLine, summary) = try Self.object(in: server.text)
        try Self.validate(serverLine, "sluice-server-summary.schema.json")
        let counters = try #require(summary["counters"] as? [String: Double])
        #expect(counters["port_received_packets"] == 5000 && counters["port_transmitted_packets"] == 5000, "\(serverLine)")
        #expect(counters["port_received_bytes"] == 1_000_000)
        #expect((counters["process_cpu_seconds"] ?? 0) > 0)
        #expect(summary["frames_balanced"] as? Bool == true)
        #expect((summary["drops"] as? [Any])?.isEmpty == true)
        #expect(summary["endpoint"] as? String == "\(endpoint)")
    }

    /// Stopped by a signal, a server's standard output under `--json` is still the summary alone:
    /// "SIGTERM received" is one of the other lines, on stderr.
    @Test(arguments: [["udp-echo", "--listen", "127.0.0.1:0"], ["tcp-echo", "--listen", "127.0.0.1:0"],
                      ["tls", "serve", "--cert", TLSInteropTests.certificate, "--key", TLSInteropTests.key, "--listen", "127.0.0.1:0"]])
    func aSignalLeavesStandardOutputTheSummaryAlone(command: [String]) throws {
        let quoted = command.map { "'\($0)'" }.joined(separator: " ")
        let run = try ChildProcess("/bin/sh", ["-c", "exec \"$0\" \(quoted) --json --duration 60 2>/dev/null", SluiceExecutable.path])
        usleep(700_000)
        #expect(run.stop(signal: SIGTERM) == 0, "\(run.text)")
        let text = run.text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(text.hasPrefix("{") && !text.contains("\n"), "stdout is one JSON object: \(text)")
        #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil, "\(text)")
    }

    @Test("a summary that cannot be written (stdout on /dev/full) is said on stderr and fails the run")
    func aLostSummaryFailsTheRun() throws {
        let run = try ChildProcess("/bin/sh", ["-c", "exec \"$0\" udp-echo --listen 127.0.0.1:0 --json --duration 0.2 > /dev/full",
                                              SluiceExecutable.path])
        #expect(run.waitForExit(timeout: .seconds(20)) == 1, "\(run.text)")
        #expect(run.text.contains("sluice: writing standard output failed"), "\(run.text)")
    }

    @Test("tls serve --json and tcp-echo --json count what their peers sent")
    func streamServers() throws {
        guard TLSInteropTests.peersAvailable() else { return }
        let tls = try ChildProcess(sluice: ["tls", "serve", "--cert", TLSInteropTests.certificate, "--key", TLSInteropTests.key,
                                            "--listen", "127.0.0.1:0", "--sink", "--duration", "60", "--json"])
        let tlsLine = try #require(tls.waitForLine(containing: "listening on"), "\(tls.text)")
        let tlsPort = try #require(tlsLine.split(separator: ":").last.flatMap { Int($0) })
        _ = try TLSInteropTests.shell("head -c 250000 /dev/zero | openssl s_client -connect 127.0.0.1:\(tlsPort) "
                                      + "-CAfile \(TLSInteropTests.authority) -servername sluice.test -quiet -no_ign_eof > /dev/null 2>&1",
                                      timeout: .seconds(30))
        usleep(200_000)
        #expect(tls.stop() == 0)
        let (tlsJSON, tlsSummary) = try Self.object(in: tls.text)
        try Self.validate(tlsJSON, "sluice-server-summary.schema.json")
        let tlsCounters = try #require(tlsSummary["counters"] as? [String: Double])
        #expect(tlsCounters["tls_handshakes_completed"] == 1 && tlsCounters["tls_handshakes_failed"] == 0
                && tlsCounters["tls_plaintext_received_bytes"] == 250_000, "\(tlsJSON)")
        #expect(tlsCounters["tls_handshakes"] == nil, "a handshake's result is not added to the others': \(tlsJSON)")
        // How the connection ended, as the text summary says it.
        #expect(tlsCounters["tls_connections_ended_completed"] == 1 && tlsCounters["tls_connections_ended_cut_short"] == 0,
                "\(tlsJSON)")
        #expect(tlsSummary["command"] as? String == "tls serve")

        let echo = try ChildProcess(sluice: ["tcp-echo", "--listen", "127.0.0.1:0", "--duration", "60", "--json"])
        let echoLine = try #require(echo.waitForLine(containing: "listening on"), "\(echo.text)")
        let echoPort = try #require(echoLine.split(separator: ":").last.flatMap { Int($0) })
        let peer = try KernelTCPSocket(connectingTo: IPEndpoint("127.0.0.1:\(echoPort)")!)
        let payload = [UInt8](repeating: 7, count: 100_000)
        var sent = 0
        while sent < payload.count {
            let n = payload[sent...].withUnsafeBytes { send(peer.descriptor, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            sent += n
        }
        shutdown(peer.descriptor, Int32(SHUT_WR))
        var echoed = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(peer.descriptor, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            echoed += n
        }
        #expect(sent == payload.count && echoed == payload.count)
        #expect(echo.stop() == 0)
        let (echoJSON, echoSummary) = try Self.object(in: echo.text)
        try Self.validate(echoJSON, "sluice-server-summary.schema.json")
        let echoCounters = try #require(echoSummary["counters"] as? [String: Double])
        #expect(echoCounters["tcp_received_bytes"] == 100_000 && echoCounters["tcp_sent_bytes"] == 100_000, "\(echoJSON)")
        #expect(echoCounters["tcp_connections_accepted"] == 1)
        // The connection ended cleanly: a failed count, and it is 0.
        #expect(echoCounters["tcp_failed_connections"] == 0, "\(echoJSON)")
    }

    @Test("xdp status without --dev lists every interface with a sluice program; --json follows its schema")
    func xdpStatus() throws {
        let topology = try TestTopology(.init(suffix: "js\(getpid() % 100_000)"))
        defer { topology.destroy() }
        let namespace = topology.serverNamespace
        let none = try ChildProcess(sluice: ["xdp", "status", "--netns", namespace])
        #expect(none.waitForExit() == 0)
        #expect(none.text.contains("no interface in this namespace has a sluice XDP program"), "\(none.text)")
        let load = try ChildProcess(sluice: ["xdp", "load", "--dev", topology.serverInterface, "--netns", namespace, "--ports", "53,9000"])
        #expect(load.waitForExit() == 0, "\(load.text)")
        defer { _ = try? ChildProcess(sluice: ["xdp", "unload", "--dev", topology.serverInterface, "--netns", namespace]).waitForExit() }
        let text = try ChildProcess(sluice: ["xdp", "status", "--netns", namespace])
        #expect(text.waitForExit() == 0)
        #expect(text.text.contains("\(topology.serverInterface): sluice XDP program id"), "\(text.text)")
        #expect(text.text.contains("ports: 53, 9000"))
        #expect(!text.text.contains("lo:"))
        let json = try ChildProcess(sluice: ["xdp", "status", "--netns", namespace, "--json"])
        #expect(json.waitForExit() == 0)
        let (line, status) = try Self.object(in: json.text)
        try Self.validate(line, "sluice-xdp-status.schema.json")
        let interfaces = try #require(status["interfaces"] as? [[String: Any]])
        #expect(interfaces.count == 1 && interfaces[0]["interface"] as? String == topology.serverInterface, "\(line)")
        let program = try #require(interfaces[0]["sluice_program"] as? [String: Any])
        #expect(program["ports"] as? [Int] == [53, 9000])
        let lo = try ChildProcess(sluice: ["xdp", "status", "--netns", namespace, "--dev", "lo", "--json"])
        #expect(lo.waitForExit() == 0)
        let (loLine, _) = try Self.object(in: lo.text)
        try Self.validate(loLine, "sluice-xdp-status.schema.json")
        #expect(loLine == "{\"interfaces\":[{\"interface\":\"lo\"}]}")
    }
}
