#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CSluiceSystem
import Foundation
import Sluice
import SluiceCore
import SluiceBench
import Synchronization

extension BenchBackend: ExpressibleByArgument {}
extension BenchScenario: ExpressibleByArgument {}
extension BenchGenerator: ExpressibleByArgument {}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure every backend on namespaces of its own: rxdrop, echo and txonly per frame size, next to the in-kernel ceiling.",
        discussion: """
            Builds two network namespaces joined by a veth pair (removed afterwards, also on failure), \
            floods the backend from the other side with Sluice's AF_XDP generator (or a kernel socket: \
            --generator socket), and prints a table. \
            Needs root. Every load is bounded by --duration per cell.
            """)

    @Option(parsing: .unconditional, help: "Seconds per cell.")
    var duration: Double = 5

    @Option(help: "Frame sizes in bytes, Ethernet header to end of payload (60 to 1514), comma-separated.")
    var sizes: String = "64,1500"

    @Option(parsing: .upToNextOption, help: "Backends, space- or comma-separated: \(BenchBackend.allCases.map(\.rawValue).joined(separator: ", ")).")
    var backends: [String] = BenchBackend.allCases.map(\.rawValue)

    @Option(parsing: .upToNextOption, help: "Scenarios, space- or comma-separated: \(BenchScenario.allCases.map(\.rawValue).joined(separator: ", ")) (dns when named: the backends answering DNS next to Knot DNS).")
    var scenarios: [String] = BenchScenario.standard.map(\.rawValue)

    /// The names given, each argument split at its commas.
    static func names(_ arguments: [String]) -> [String] {
        arguments.flatMap { $0.split(separator: ",").map { String($0) } }
    }

    /// The backends asked for, each one a registered backend's variant.
    func selectedBackends() throws -> [BenchBackend] {
        try Self.names(backends).map { name in
            let backend = BenchBackend(rawValue: name)
            guard backend.variant != nil else {
                throw ValidationError("no backend '\(name)'; pick from \(BenchBackend.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return backend
        }
    }

    /// The scenarios asked for.
    func selectedScenarios() throws -> [BenchScenario] {
        try Self.names(scenarios).map { name in
            guard let scenario = BenchScenario(rawValue: name) else {
                throw ValidationError("no scenario '\(name)'; pick from \(BenchScenario.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return scenario
        }
    }

    @Option(parsing: .unconditional, help: "Queues of the veth pair, and workers per backend; the generator sends one flow per queue.")
    var queues: Int = 1

    @Option(parsing: .unconditional, help: "Requests per second of the latency run after each echo cell.")
    var latencyRate: Int = 20_000

    @Option(help: "Traffic generator: xdp (AF_XDP TX blaster) or socket (kernel sendmmsg).")
    var generator: BenchGenerator = .xdp

    @Option(parsing: .unconditional, help: "Packets per second the generator offers in all (default: flat out).")
    var rate: Int?

    @Option(help: "How the io_uring backend's ring runs: \(RingMode.allCases.map(\.rawValue).joined(separator: ", ")).")
    var uringMode: RingMode = .deferTaskrun

    @Flag(help: "UDP GSO for the socket and io_uring backends' replies (one sendmsg per run of equal-size datagrams to one peer).")
    var gso = false

    @Option(help: "Write the report as JSON to this file (schema: Benchmarks/sluice-bench.schema.json).")
    var json: String?

    @Option(help: "Draw the pps per backend and size as an SVG bar chart in this file.")
    var svg: String?

    @Option(help: "Measure this interface (a NIC port) instead of a veth end: the backend serves on it. Needs --peer-dev.")
    var dev: String?

    @Option(help: "The interface linked to --dev (the other port of the cable): the generator sends from it.")
    var peerDev: String?

    @Option(help: "Suffix of this run's namespaces (default: from the process id).")
    var suffix: String?

    func validate() throws {
        guard try !selectedBackends().isEmpty, try !selectedScenarios().isEmpty else {
            throw ValidationError("give at least one backend and one scenario")
        }
        try checkSeconds(duration, "--duration", in: 0.1...600)
        let sizes: [Int] = try parseNumberList(sizes, of: "size", in: BenchConfiguration.sizeRange)
        guard (1...16).contains(sizes.count), sizes.allSatisfy({ BenchConfiguration.sizeRange.contains($0) }) else {
            throw ValidationError("--sizes must be 1 to 16 frame sizes from \(BenchConfiguration.sizeRange.lowerBound) to \(BenchConfiguration.sizeRange.upperBound)")
        }
        guard (1...16).contains(queues) else { throw ValidationError("--queues must be 1 to 16") }
        if let rate, !(1_000...100_000_000).contains(rate) { throw ValidationError("--rate must be 1000 to 100000000 packets/s") }
        guard (100...1_000_000).contains(latencyRate) else { throw ValidationError("--latency-rate must be 100 to 1000000") }
        guard (dev == nil) == (peerDev == nil) else { throw ValidationError("--dev and --peer-dev go together") }
        if let suffix { try checkSuffix(suffix) }
        if let suffix, TestTopology.exists(suffix: suffix) {
            throw ValidationError("namespaces sluice-s\(suffix) and sluice-c\(suffix) exist (`sluice netns up`, or another run): "
                                  + "give another --suffix, or remove them with `sluice netns down --suffix \(suffix)`")
        }
        for (option, path) in [("--json", json), ("--svg", svg)] {
            guard let path else { continue }
            // Checked now, not after a run of minutes: opened for writing as the run will (a
            // directory, an empty name, /proc fail here), and a file made for the check removed.
            let existed = access(path, F_OK) == 0
            let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0o644)
            guard descriptor >= 0 else {
                throw ValidationError("cannot write \(option) \(path): \(String(cString: strerror(errno))) (errno \(errno))")
            }
            close(descriptor)
            if !existed { unlink(path) }
        }
        let needed: [Capability] = [.sysAdmin, .netAdmin, .netRaw, .bpf, .perfmon]
        if let held = Capability.set(), !needed.allSatisfy(held.contains) {
            throw ValidationError(Capability.requirement(needed, for: "sluice bench (it makes network namespaces and attaches XDP programs)"))
        }
    }

    func run() throws {
        sluice_line_buffer_stdout()
        var configuration = BenchConfiguration()
        configuration.logger = .terminal
        configuration.duration = Duration(checkedSeconds: duration)
        configuration.sizes = try parseNumberList(sizes, of: "size")
        configuration.backends = try selectedBackends()
        configuration.scenarios = try selectedScenarios()
        configuration.queues = queues
        configuration.latencyRate = latencyRate
        configuration.segmentationOffload = gso
        configuration.uringMode = uringMode.mode
        configuration.generator = generator
        configuration.rate = rate
        if let suffix { configuration.suffix = suffix }
        if let dev, let peerDev { configuration.devices = (dev, peerDev) }
        let interactive = isatty(1) != 0
        let cleanup = InterruptCleanup(suffix: configuration.suffix)
        defer { cleanup.finish() }
        let runner = BenchRunner(configuration: configuration) { line in
            if interactive {
                print("\r\u{1B}[2K" + line, terminator: "")
                fflush(nil)
            } else {
                print(line)
            }
        }
        let report: BenchReport
        do {
            report = try runner.run()
        } catch {
            if interactive { print("") }
            print("sluice bench: \(error)")
            throw ExitCode(1)
        }
        if interactive { print("") }
        print(report.table())
        for (path, data, kind) in [(json, try report.jsonData(), "JSON"), (svg, Data(report.svg().utf8), "SVG")] {
            guard let path else { continue }
            guard FileManager.default.createFile(atPath: path, contents: data) else {
                writeToStandardError("sluice bench: cannot write the \(kind) to \(path): \(String(cString: strerror(errno))) (errno \(errno))\n")
                throw ExitCode(1)
            }
            print("\(kind): \(path)")
        }
    }
}

/// Removes the run's namespaces (and with their veth pair, every XDP program on it) when the
/// user interrupts `sluice bench`, then exits 130: a `defer` does not run on a signal.
final class InterruptCleanup: Sendable {
    private final class Flag: Sendable { let raised = Atomic<Bool>(false) }
    private let done = Flag()
    private let watcher: WorkerThread?

    init(suffix: String) {
        // Blocked before any worker or generator thread exists, so only the watcher takes them.
        SignalWaiter.block(SignalWaiter.stopping)
        let done = self.done
        watcher = try? WorkerThread(name: "sluice-signals") {
            let signals = SignalWaiter(SignalWaiter.stopping)
            while !done.raised.load(ordering: .relaxed) {
                guard let signal = signals.wait(for: .milliseconds(200)) else { continue }
                writeToStandardError("\nsluice bench: \(SignalWaiter.name(signal)), removing sluice-s\(suffix) and sluice-c\(suffix)\n")
                BenchRunner.stopStartedServers()
                TestTopology.destroy(suffix: suffix)
                _exit(130)
            }
        }
    }

    /// The run is over (its own cleanup ran): stop watching.
    func finish() {
        done.raised.store(true, ordering: .relaxed)
        watcher?.join()
    }
}
