#if canImport(Glibc)
import Glibc
#endif
import CSluice
import Sluice

/// A backend `sluice bench` can measure.
public enum BenchBackend: String, CaseIterable, Sendable {
    /// Kernel UDP sockets, `recvmmsg`/`sendmmsg`.
    case socket
    /// io_uring: multishot `recvmsg` over provided pool frames, batched `sendmsg`.
    case uring
    /// AF_XDP behind the XDP program in native (driver) mode.
    case xdpNative = "xdp-native"
    /// AF_XDP behind the XDP program in generic (skb) mode.
    case xdpGeneric = "xdp-generic"
}

/// What `sluice bench` runs.
public struct BenchConfiguration: Sendable {
    /// Backends, in this order.
    public var backends: [BenchBackend] = BenchBackend.allCases
    /// Scenarios, in this order.
    public var scenarios: [BenchScenario] = BenchScenario.allCases
    /// Frame sizes on the wire (Ethernet header to the end of the UDP payload; IPv4).
    public var sizes: [Int] = [64, 1500]
    /// How long the generator runs per cell.
    public var duration: Duration = .seconds(5)
    /// Queues (and workers) per backend.
    public var queues: Int = 1
    /// Requests per second of the latency run after each echo cell.
    public var latencyRate: Int = 20_000
    /// Length of each latency run.
    public var latencyDuration: Duration = .seconds(1)
    /// Frames per worker (and per XSK): the buffer between the kernel and a worker that is late.
    public var framesPerWorker = 4096
    /// Suffix of the namespaces and veth names this run makes.
    public var suffix: String = "b\(getpid() % 100_000)"
    /// The CPU the generator is pinned to.
    public var generatorCPU = 0
    /// The CPU the backend's single worker is pinned to (several queues: unpinned).
    public var workerCPU = 1

    public init() {}

    /// The smallest and largest frames an IPv4 UDP cell can use.
    public static let sizeRange = 60...1514
}

/// Runs every cell of a ``BenchConfiguration`` on a topology of its own and reports.
///
/// The topology is two network namespaces joined by a veth pair (``TestTopology``): the backend
/// serves in one, the generator sends from the other. The generator is Sluice's AF_XDP TX
/// blaster (copy mode on veth), pinned to its own CPU; replies and transmit-only traffic are
/// counted where they arrive by `bpf/udp_drop.bpf.o`, which drops them at XDP so counting costs
/// the receiving side next to nothing. The same program on the backend's interface gives the
/// in-kernel ceiling each size is compared with.
public final class BenchRunner {
    public let configuration: BenchConfiguration
    private let progress: (String) -> Void
    private var topology: TestTopology?
    private var replies: XDPDropCounter?
    private var report: BenchReport

    static let servicePort: UInt16 = 9000
    static let generatorPort: UInt16 = 5555
    static let headerBytes = 14 + 20 + 8

    /// - Parameter progress: receives one line per step (the CLI redraws it in place).
    public init(configuration: BenchConfiguration, progress: @escaping (String) -> Void = { _ in }) {
        self.configuration = configuration
        self.progress = progress
        report = BenchReport(environment: BenchEnvironment(
            kernel: Self.kernelRelease(), cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            link: "veth pair between two network namespaces (this machine; no NIC)",
            generator: "Sluice AF_XDP TX, copy mode, one queue, cpu \(configuration.generatorCPU)",
            durationSeconds: Double(configuration.duration.nanosecondsClamped) / 1e9,
            queues: configuration.queues, startedAt: Self.timestamp()))
    }

    /// The cells in the order they run, with the baselines first.
    var plan: [(String, () throws -> Void)] {
        var steps: [(String, () throws -> Void)] = []
        let xdpModes: [XDPAttachMode] = configuration.backends.contains(.xdpGeneric) ? [.native, .generic] : [.native]
        for size in configuration.sizes {
            for mode in xdpModes {
                steps.append(("ceiling \(mode.rawValue) \(size) B", { try self.measureCeiling(size: size, mode: mode) }))
            }
        }
        for scenario in configuration.scenarios {
            for size in configuration.sizes {
                var backends = configuration.backends
                // Transmitting from an XSK does not depend on how the XDP program is attached.
                if scenario == .txonly, backends.contains(.xdpNative), backends.contains(.xdpGeneric) {
                    backends.removeAll { $0 == .xdpGeneric }
                }
                for backend in backends {
                    steps.append(("\(scenario.rawValue) \(backend.rawValue) \(size) B", {
                        try self.measure(backend: backend, scenario: scenario, size: size)
                    }))
                }
            }
        }
        return steps
    }

    /// Builds the topology, runs every cell, tears the topology down (also on failure) and
    /// returns the report with ratios filled in.
    public func run() throws -> BenchReport {
        let topology = try TestTopology(.init(suffix: configuration.suffix, queues: configuration.queues,
                                              staticNeighbours: true))
        self.topology = topology
        defer {
            if let replies { try? TestTopology.run(inNamespace: topology.clientNamespace) { replies.detach() } }
            replies = nil
            topology.destroy()
        }
        replies = try TestTopology.run(inNamespace: topology.clientNamespace) {
            try XDPDropCounter(interface: topology.clientInterface, mode: .native, ports: [Self.generatorPort])
        }
        let steps = plan
        for (index, (name, step)) in steps.enumerated() {
            progress(BenchReport.progressLine(done: index, total: steps.count, current: name, lastCell: report.cells.last))
            try step()
        }
        progress(BenchReport.progressLine(done: steps.count, total: steps.count, current: "done", lastCell: report.cells.last))
        fillRatios()
        return report
    }

    // MARK: - Cells

    /// XDP_DROP on the backend's interface: the most this path can take in with this generator.
    func measureCeiling(size: Int, mode: XDPAttachMode) throws {
        let topology = try requireTopology()
        let sink = try TestTopology.run(inNamespace: topology.serverNamespace) {
            try XDPDropCounter(interface: topology.serverInterface, mode: mode, ports: [Self.servicePort])
        }
        defer { try? TestTopology.run(inNamespace: topology.serverNamespace) { sink.detach() } }
        let before = sink.counts().packets
        let generated = try generate(size: size)
        usleep(50_000)
        let handled = sink.counts().packets &- before
        report.baselines.append(BenchBaseline(
            name: "xdp-drop-\(sink.mode.rawValue)",
            detail: "XDP_DROP (bpf/udp_drop.bpf.o, \(sink.mode.rawValue) mode) on \(topology.serverInterface): the in-kernel ceiling",
            size: size, offeredPPS: generated.rate, pps: Double(handled) / generated.seconds,
            generatorCPUPercent: generated.cpuPercent))
    }

    func measure(backend: BenchBackend, scenario: BenchScenario, size: Int) throws {
        let cell: BenchCell
        do {
            switch scenario {
            case .rxdrop: cell = try measureReceive(backend: backend, size: size, scenario: .rxdrop) { UDPDiscardService() }
            case .echo: cell = try measureReceive(backend: backend, size: size, scenario: .echo) { UDPEchoService() }
            case .txonly: cell = try measureTransmit(backend: backend, size: size)
            }
        } catch {
            // One backend refused here (io_uring disabled, no XDP): the others still run.
            report.cells.append(BenchCell(
                backend: backend.rawValue, scenario: scenario, size: size, mode: "-", offeredPPS: 0, pps: 0,
                nsPerPacket: 0, cpuPercent: 0, generatorCPUPercent: 0, generatorBound: false,
                note: "not measured: \(error)"))
            return
        }
        report.cells.append(cell)
    }

    /// rxdrop and echo: the backend serves, the generator floods it.
    func measureReceive<S: UDPService>(backend: BenchBackend, size: Int, scenario: BenchScenario,
                                       makeService: @escaping @Sendable () -> S) throws -> BenchCell {
        let topology = try requireTopology()
        var settings = UDPServerConfiguration(listen: IPEndpoint(address: .v4(topology.serverIPv4), port: Self.servicePort))
        settings.workers = configuration.queues
        settings.cpus = configuration.queues == 1 ? [configuration.workerCPU] : []
        settings.handlesSignals = false
        settings.describesRings = false
        settings.maximumDatagram = Self.sizeRangeUpperPayload
        // A few milliseconds of traffic at these rates, so a worker waking late does not lose it.
        settings.framesPerWorker = configuration.framesPerWorker
        switch backend {
        case .socket: settings.backend = .socket
        case .uring: settings.backend = .uring
        case .xdpNative, .xdpGeneric:
            settings.backend = .xdp
            var xdp = XDPBackendConfiguration(interface: topology.serverInterface)
            xdp.queues = (0..<UInt32(configuration.queues)).map { $0 }
            xdp.attachMode = backend == .xdpNative ? .native : .generic
            xdp.bindMode = .copy   // veth has no zero-copy; asking would only print the fallback
            settings.xdp = xdp
        }
        let server = try TestTopology.run(inNamespace: topology.serverNamespace) { [settings] in
            try UDPServer(configuration: settings) { _ in makeService() }
        }
        var stopped = false
        defer { if !stopped { try? TestTopology.run(inNamespace: topology.serverNamespace) { server.stop() } } }
        let snmpBefore = try TestTopology.run(inNamespace: topology.serverNamespace) { UDPStatistics.read() }
        let before = server.totals()
        let cpuBefore = ThreadCPU.threads(named: "sluice-w")
        let generated = try generate(size: size)
        usleep(50_000)
        let after = server.totals()
        let workerCPU = ThreadCPU.threads(named: "sluice-w") &- cpuBefore
        let snmpAfter = try TestTopology.run(inNamespace: topology.serverNamespace) { UDPStatistics.read() }
        var latency: BenchLatency?
        if scenario == .echo {
            let count = configuration.latencyRate * Int(configuration.latencyDuration.nanosecondsClamped / 1_000_000) / 1000
            let target = IPEndpoint(address: .v4(topology.serverIPv4), port: Self.servicePort)
            let rate = configuration.latencyRate
            latency = try TestTopology.run(inNamespace: topology.clientNamespace) {
                try LatencyProbe.run(target: target, rate: rate, count: count, payloadSize: size - Self.headerBytes)
            }
        }
        try TestTopology.run(inNamespace: topology.serverNamespace) { server.stop() }
        stopped = true

        let received = after.received &- before.received
        let transmitted = after.transmitted &- before.transmitted
        let handled = scenario == .echo ? transmitted : received
        let offered = generated.sent
        let reports = server.workerReports
        let calls = reports.reduce(0) { $0 + $1.port.receiveCalls + $1.port.transmitCalls }
        let packets = reports.reduce(0) { $0 + $1.port.receivedPackets }
        // Disjoint causes that add up to what was offered and not handled: first what the
        // kernel counted where it dropped, then the rest as lost on the way.
        var known: [(String, UInt64)] = []
        if let xsk = server.xskStatistics {
            known.append(("xsk: no fill-ring frame", xsk.receiveDropped))
            known.append(("xsk: rx ring full", xsk.receiveRingFull))
        } else {
            known.append(("socket receive buffer full", snmpAfter.receiveBufferErrors &- snmpBefore.receiveBufferErrors))
        }
        var drops: [String: UInt64] = [:]
        var unexplained = offered > received ? offered - received : 0
        for (cause, count) in known where count > 0 {
            let counted = min(count, unexplained)
            if counted > 0 { drops[cause] = counted }
            unexplained -= counted
        }
        if unexplained > 0 { drops["lost before the backend (veth, backlog)"] = unexplained }
        if scenario == .echo, received > transmitted { drops["received, not echoed"] = received - transmitted }
        let mode: String
        switch backend {
        case .socket: mode = "kernel socket"
        case .uring: mode = "io_uring (plain)"
        case .xdpNative: mode = "native, \(server.xskMode ?? "copy")"
        case .xdpGeneric: mode = "generic, \(server.xskMode ?? "copy")"
        }
        return makeCell(backend: backend.rawValue, scenario: scenario, size: size, mode: mode, generated: generated,
                        handled: handled, workerCPU: workerCPU, drops: drops,
                        syscallsPerPacket: packets > 0 ? Double(calls) / Double(packets) : nil, latency: latency)
    }

    /// txonly: the backend sends from the server side; `udp_drop` counts what arrives.
    func measureTransmit(backend: BenchBackend, size: Int) throws -> BenchCell {
        let topology = try requireTopology()
        guard let replies else { throw RuntimeError("the reply counter is not attached") }
        let target = IPEndpoint(address: .v4(topology.clientIPv4), port: Self.generatorPort)
        let source = IPEndpoint(address: .v4(topology.serverIPv4), port: Self.servicePort)
        let payload = size - Self.headerBytes
        let duration = configuration.duration
        let cpu = configuration.workerCPU
        let before = replies.counts().packets
        let sent: Transmission
        let mode: String
        switch backend {
        case .socket, .uring:
            let useRing = backend == .uring
            mode = useRing ? "io_uring (plain)" : "kernel socket"
            sent = try TestTopology.run(inNamespace: topology.serverNamespace) {
                _ = sluice_pin_current_thread(Int32(cpu))
                let cpuStart = ThreadCPU.current()
                let clock = MonotonicTimeSource()
                let start = clock.now()
                let batch = 64
                let transmitted: UInt64
                let calls: UInt64
                if useRing {
                    let settings = URingUDPConfiguration(listen: IPEndpoint(address: source.address, port: 0))
                    let pool = try FramePool(frameCount: 1024, frameSize: settings.frameSize(maximumDatagram: payload),
                                             headroom: DatagramHeader.minimumHeadroom)
                    var port = try URingUDPPort(configuration: settings, pool: pool, batchCapacity: batch)
                    transmitted = try PortFlood.run(port: &port, pool: pool, target: target, payloadSize: payload,
                                                    batchCapacity: batch, until: start + duration)
                    calls = port.counters.transmitCalls + port.counters.receiveCalls
                } else {
                    var settings = UDPSocketConfiguration(listen: IPEndpoint(address: source.address, port: 0))
                    settings.reusePort = false
                    let pool = try FramePool(frameCount: 1024, frameSize: settings.frameSize(maximumDatagram: payload),
                                             headroom: DatagramHeader.minimumHeadroom)
                    var port = try UDPSocketPort(configuration: settings, pool: pool, batchCapacity: batch)
                    transmitted = try PortFlood.run(port: &port, pool: pool, target: target, payloadSize: payload,
                                                    batchCapacity: batch, until: start + duration)
                    calls = port.counters.transmitCalls + port.counters.receiveCalls
                }
                let seconds = Double((clock.now() - start).nanosecondsClamped) / 1e9
                return Transmission(sent: transmitted, seconds: seconds, cpuNanoseconds: ThreadCPU.current() &- cpuStart,
                                    calls: calls)
            }
        case .xdpNative, .xdpGeneric:
            mode = "copy"
            let mac = topology.clientMAC
            let interface = topology.serverInterface
            sent = try TestTopology.run(inNamespace: topology.serverNamespace) {
                _ = sluice_pin_current_thread(Int32(cpu))
                let cpuStart = ThreadCPU.current()
                var settings = XDPTrafficGenerator.Configuration(interface: interface, source: source, destination: target)
                settings.destinationMAC = mac
                settings.payloadSize = payload
                settings.duration = duration
                settings.bindMode = .copy
                let result = try XDPTrafficGenerator.run(settings)
                return Transmission(sent: result.sent, seconds: result.seconds,
                                    cpuNanoseconds: ThreadCPU.current() &- cpuStart, calls: nil)
            }
        }
        usleep(50_000)
        let arrived = replies.counts().packets &- before
        var drops: [String: UInt64] = [:]
        if sent.sent > arrived { drops["not arrived"] = sent.sent - arrived }
        let seconds = max(sent.seconds, 1e-9)
        let handledPPS = Double(arrived) / seconds
        let backendCPU = Double(sent.cpuNanoseconds) / (seconds * 1e9) * 100
        // The sender is the backend here: nothing else generates.
        return BenchCell(
            backend: backend == .xdpNative || backend == .xdpGeneric ? "xdp" : backend.rawValue, scenario: .txonly,
            size: size, mode: mode, offeredPPS: Double(sent.sent) / seconds, pps: handledPPS,
            nsPerPacket: arrived > 0 ? Double(sent.cpuNanoseconds) / Double(arrived) : 0,
            cpuPercent: backendCPU, generatorCPUPercent: backendCPU, generatorBound: false, drops: drops,
            syscallsPerPacket: sent.calls.map { sent.sent > 0 ? Double($0) / Double(sent.sent) : 0 })
    }

    // MARK: - Pieces

    struct Transmission: Sendable {
        var sent: UInt64
        var seconds: Double
        var cpuNanoseconds: UInt64
        var calls: UInt64?
        var rate: Double { sent > 0 ? Double(sent) / seconds : 0 }
        var cpuPercent: Double { Double(cpuNanoseconds) / (seconds * 1e9) * 100 }
    }

    /// The AF_XDP TX generator, flat out for the configured duration, from the client side.
    func generate(size: Int) throws -> Transmission {
        let topology = try requireTopology()
        var settings = XDPTrafficGenerator.Configuration(
            interface: topology.clientInterface,
            source: IPEndpoint(address: .v4(topology.clientIPv4), port: Self.generatorPort),
            destination: IPEndpoint(address: .v4(topology.serverIPv4), port: Self.servicePort))
        settings.destinationMAC = topology.serverMAC
        settings.payloadSize = size - Self.headerBytes
        settings.duration = configuration.duration
        settings.bindMode = .copy
        let cpu = configuration.generatorCPU
        return try TestTopology.run(inNamespace: topology.clientNamespace) { [settings] in
            _ = sluice_pin_current_thread(Int32(cpu))
            let start = ThreadCPU.current()
            let result = try XDPTrafficGenerator.run(settings)
            return Transmission(sent: result.sent, seconds: max(result.seconds, 1e-9),
                                cpuNanoseconds: ThreadCPU.current() &- start, calls: nil)
        }
    }

    func makeCell(backend: String, scenario: BenchScenario, size: Int, mode: String, generated: Transmission,
                  handled: UInt64, workerCPU: UInt64, drops: [String: UInt64], syscallsPerPacket: Double?,
                  latency: BenchLatency?) -> BenchCell {
        let pps = Double(handled) / generated.seconds
        // The generator is the bottleneck when it ran flat out and the backend took all it got.
        let generatorBound = generated.cpuPercent >= 95 && Double(handled) >= 0.97 * Double(generated.sent)
        return BenchCell(
            backend: backend, scenario: scenario, size: size, mode: mode, offeredPPS: generated.rate, pps: pps,
            nsPerPacket: handled > 0 ? Double(workerCPU) / Double(handled) : 0,
            cpuPercent: Double(workerCPU) / (generated.seconds * 1e9) * 100,
            generatorCPUPercent: generated.cpuPercent, generatorBound: generatorBound, drops: drops,
            syscallsPerPacket: syscallsPerPacket, latency: latency)
    }

    /// Ratios to the socket backend (same scenario and size) and to the ceiling (same size; the
    /// generic ceiling for generic XDP, the native one for everything else).
    func fillRatios() {
        for index in report.cells.indices {
            let cell = report.cells[index]
            if cell.backend != BenchBackend.socket.rawValue,
               let socket = report.cells.first(where: { $0.backend == "socket" && $0.scenario == cell.scenario && $0.size == cell.size }),
               socket.pps > 0 {
                report.cells[index].ratioToSocket = cell.pps / socket.pps
            }
            guard cell.scenario != .txonly else { continue }
            let name = cell.backend == BenchBackend.xdpGeneric.rawValue ? "xdp-drop-generic" : "xdp-drop-native"
            if let ceiling = report.baselines.first(where: { $0.name == name && $0.size == cell.size }), ceiling.pps > 0 {
                report.cells[index].ratioToCeiling = cell.pps / ceiling.pps
            }
        }
    }

    func requireTopology() throws -> TestTopology {
        guard let topology else { throw RuntimeError("the bench topology is not up") }
        return topology
    }

    /// The largest UDP payload of the largest frame a cell may use.
    static let sizeRangeUpperPayload = BenchConfiguration.sizeRange.upperBound - headerBytes

    static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}

/// The UDP counters of `/proc/net/snmp` in the calling thread's network namespace.
struct UDPStatistics: Sendable {
    var receiveBufferErrors: UInt64 = 0

    static func read() -> UDPStatistics {
        guard let file = fopen("/proc/net/snmp", "r") else { return UDPStatistics() }
        defer { fclose(file) }
        var lines: [[Substring]] = []
        var buffer = [CChar](repeating: 0, count: 1024)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if line.hasPrefix("Udp:") { lines.append(line.split(whereSeparator: { $0 == " " || $0 == "\n" })) }
        }
        // Two lines: the names, then the values.
        guard lines.count >= 2, let column = lines[0].firstIndex(of: "RcvbufErrors"), column < lines[1].count,
              let value = UInt64(lines[1][column]) else { return UDPStatistics() }
        return UDPStatistics(receiveBufferErrors: value)
    }
}
