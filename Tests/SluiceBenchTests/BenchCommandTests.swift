#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SluiceBench
import SluiceTestSupport
import Testing

/// `sluice bench` as a user runs it: its own namespaces, the real generator, the real backends,
/// short cells; the JSON it writes must satisfy the schema and the SVG must parse.
@Suite(.serialized) struct BenchCommandTests {
    @Test func aShortRunMeasuresEveryCellNextToItsBaselinesAndCleansUp() throws {
        let suffix = "t\(getpid() % 100_000)"
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-\(suffix)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = directory.appendingPathComponent("bench.json").path
        let svg = directory.appendingPathComponent("bench.svg").path
        let bench = try ChildProcess(sluice: [
            "bench", "--duration", "0.4", "--sizes", "64,1500", "--backends", "socket", "uring", "xdp-generic",
            "--latency-rate", "2000", "--suffix", suffix, "--json", json, "--svg", svg])
        #expect(bench.waitForExit(timeout: .seconds(120)) == 0, "\(bench.text)")
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/sluice-s\(suffix)"), "the namespaces were left behind")
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/sluice-c\(suffix)"), "the namespaces were left behind")

        let data = try Data(contentsOf: URL(fileURLWithPath: json))
        let validation = try SchemaValidator(schema: "Benchmarks/sluice-bench.schema.json").validate(data)
        #expect(validation.valid, "\(validation.output)")
        let report = try BenchReport.decode(data)
        #expect(Set(report.baselines.map(\.name)) == ["xdp-drop-native", "xdp-drop-generic"])
        #expect(report.baselines.allSatisfy { $0.pps > 0 && $0.offeredPPS > 0 })
        var expected: [String] = []
        for scenario in ["rxdrop", "echo"] {
            for backend in ["socket", "uring", "xdp-generic"] { expected += ["\(scenario)/\(backend)/64", "\(scenario)/\(backend)/1500"] }
        }
        for backend in ["socket", "uring", "xdp"] { expected += ["txonly/\(backend)/64", "txonly/\(backend)/1500"] }
        #expect(report.cells.map { "\($0.scenario.rawValue)/\($0.backend)/\($0.size)" }.sorted() == expected.sorted())
        for cell in report.cells {
            let name = "\(cell.scenario.rawValue) \(cell.backend) \(cell.size)"
            #expect(cell.note == nil, "\(name): \(cell.note ?? "")")
            #expect(cell.pps > 0 && cell.pps <= cell.offeredPPS * 1.001, "\(name): handled \(cell.pps) of \(cell.offeredPPS)")
            #expect(cell.cpuPercent > 0 && cell.nsPerPacket > 0, "\(name)")
            if cell.scenario != .txonly { #expect(cell.syscallsPerPacket != nil, "\(name)") }
            if cell.scenario == .echo {
                let latency = try #require(cell.latency, "\(name)")
                #expect(latency.samples > 0 && latency.p50Microseconds > 0, "\(name)")
                #expect(latency.p50Microseconds <= latency.p99Microseconds && latency.p99Microseconds <= latency.p999Microseconds)
            }
            if cell.backend != "socket" { #expect(cell.ratioToSocket != nil, "\(name)") }
            if cell.scenario != .txonly { #expect(cell.ratioToCeiling != nil, "\(name)") }
        }
        let text = bench.text
        #expect(text.contains("baselines") && text.contains("rxdrop") && text.contains("txonly"), "\(text)")
        let document = try SVGDocument(String(decoding: try Data(contentsOf: URL(fileURLWithPath: svg)), as: UTF8.self))
        #expect(document.elements.contains { $0.name == "svg" })
    }

    /// `--dev`/`--peer-dev`, as on two NIC ports cabled together; here a veth pair the test makes
    /// in its own namespace stands in for the cable. Both ends must come back afterwards.
    @Test func measuresBorrowedInterfacesAndGivesThemBack() throws {
        let tag = "\(getpid() % 100_000)"
        let (server, client) = ("bxs\(tag)", "bxc\(tag)")
        let made = try ChildProcess("/usr/sbin/ip", ["link", "add", server, "type", "veth", "peer", "name", client])
        #expect(made.waitForExit() == 0, "\(made.text)")
        defer { _ = try? ChildProcess("/usr/sbin/ip", ["link", "del", server]).waitForExit() }
        let bench = try ChildProcess(sluice: [
            "bench", "--dev", server, "--peer-dev", client, "--duration", "0.3", "--sizes", "64",
            "--backends", "socket,xdp-native", "--scenarios", "rxdrop", "--suffix", "d\(tag)"])
        #expect(bench.waitForExit(timeout: .seconds(60)) == 0, "\(bench.text)")
        let text = bench.text
        #expect(text.contains("link: \(server) ↔ \(client)"), "\(text)")
        #expect(text.contains("xdp-drop-native") && text.contains("socket") && text.contains("xdp-native"), "\(text)")
        #expect(!text.contains("not measured:"), "\(text)")
        for device in [server, client] {
            #expect(FileManager.default.fileExists(atPath: "/sys/class/net/\(device)"), "\(device) did not come back")
        }
    }

    /// The dns scenario: the backend answering one question next to Knot DNS on sockets and XDP.
    @Test func theDNSScenarioMeasuresTheBackendsNextToKnot() throws {
        guard access("/usr/sbin/knotd", X_OK) == 0 else {
            print("skip: Knot DNS (knotd) is not installed; the README's test command installs it")
            return
        }
        let suffix = "n\(getpid() % 100_000)"
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-dns-\(suffix).json").path
        defer { try? FileManager.default.removeItem(atPath: json) }
        let bench = try ChildProcess(sluice: [
            "bench", "--scenarios", "dns", "--backends", "socket", "xdp-generic", "--duration", "0.4", "--sizes", "64",
            "--suffix", suffix, "--json", json])
        #expect(bench.waitForExit(timeout: .seconds(90)) == 0, "\(bench.text)")
        let report = try BenchReport.decode(try Data(contentsOf: URL(fileURLWithPath: json)))
        #expect(Set(report.cells.map(\.backend)) == ["socket", "xdp-generic", "knot-socket", "knot-xdp"], "\(bench.text)")
        for cell in report.cells {
            #expect(cell.scenario == .dns && cell.note == nil && cell.pps > 0, "\(cell.backend): \(cell.note ?? "")")
            // The ceiling is measured at the DNS frame's size too, whatever --sizes says.
            #expect(cell.ratioToCeiling != nil, "\(cell.backend): no ratio to the ceiling")
        }
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/sluice-s\(suffix)"), "the namespaces were left behind")
    }

    /// A run stopped by SIGTERM while Knot DNS runs takes knotd and its files down with the namespaces.
    @Test func aSignalStopsKnotToo() throws {
        guard access("/usr/sbin/knotd", X_OK) == 0 else {
            print("skip: Knot DNS (knotd) is not installed; the README's test command installs it")
            return
        }
        func knots() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid in
                guard Int(pid) != nil, let line = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
                      line.hasPrefix("/usr/sbin/knotd"), line.contains("sluice-bench-knot") else { return nil }
                return line.replacingOccurrences(of: "\0", with: " ")
            }
        }
        let suffix = "k\(getpid() % 100_000)"
        let bench = try ChildProcess(sluice: ["bench", "--scenarios", "dns", "--backends", "socket", "--duration", "2",
                                              "--sizes", "64", "--suffix", suffix])
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(60)
        while knots().isEmpty, clock.now < deadline, bench.isRunning { usleep(100_000) }
        let running = knots()
        try #require(!running.isEmpty, "knotd never started: \(bench.text)")
        kill(bench.pid, SIGTERM)
        #expect(bench.waitForExit(timeout: .seconds(20)) == 130, "\(bench.text)")
        #expect(knots().isEmpty, "left running: \(knots())")
        let directory = try #require(running[0].split(separator: " ").first { $0.contains("sluice-bench-knot") })
        #expect(!FileManager.default.fileExists(atPath: String(directory)), "\(directory) left behind")
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/sluice-s\(suffix)"), "the namespaces were left behind")
    }

    @Test func refusesWhatItCannotMeasure() throws {
        let bench = try ChildProcess(sluice: ["bench", "--sizes", "40"])
        #expect(bench.waitForExit() != 0)
        #expect(bench.text.contains("bad size list '40'") && bench.text.contains("values 60 to 1514"), "\(bench.text)")
        // Another topology's namespaces are not the run's to remove.
        let suffix = "e\(getpid() % 100_000)"
        let up = try ChildProcess(sluice: ["netns", "up", "--suffix", suffix])
        #expect(up.waitForExit(timeout: .seconds(30)) == 0, "\(up.text)")
        defer { _ = try? ChildProcess(sluice: ["netns", "down", "--suffix", suffix]).waitForExit(timeout: .seconds(30)) }
        let taken = try ChildProcess(sluice: ["bench", "--suffix", suffix])
        #expect(taken.waitForExit() == 64)
        #expect(taken.text.contains("namespaces sluice-s\(suffix) and sluice-c\(suffix) exist"), "\(taken.text)")
        #expect(FileManager.default.fileExists(atPath: "/run/netns/sluice-s\(suffix)"))
    }
}
