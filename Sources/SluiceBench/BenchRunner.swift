#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import Logging
import Sluice
import Synchronization

/// A backend `sluice bench` can measure: one variant of a registered `UDPBackend` (both XDP
/// attach modes of the xdp backend, say), named as its cells are.
public struct BenchBackend: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible {
    /// The cell name, e.g. `"xdp-native"`.
    public var rawValue: String
    /// A backend by its cell name; ``variant`` tells whether any registered backend has it.
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// Every variant of every registered backend, in registration order.
    public static var allCases: [BenchBackend] {
        UDPBackendRegistry.all.flatMap { $0.variants }.map { BenchBackend(rawValue: $0.name) }
    }

    /// The registered variant behind this name.
    public var variant: UDPBackendVariant? {
        UDPBackendRegistry.all.lazy.flatMap { $0.variants }.first { $0.name == rawValue }
    }

    /// Whether the variant runs the AF_XDP backend (which sends with the XDP generator).
    var isXDP: Bool { variant?.backend == XDPBackend.name }

    /// Whether the variant serves behind a TUN or TAP device (routed to by the server's kernel).
    var isDevice: Bool { variant.map { Backend(rawValue: $0.backend).isDevice } ?? false }

    /// Kernel sockets.
    public static let socket = BenchBackend(rawValue: SocketBackend.name)
    /// io_uring.
    public static let uring = BenchBackend(rawValue: URingBackend.name)
    /// AF_XDP behind the XDP program in native (driver) mode.
    public static let xdpNative = BenchBackend(rawValue: "xdp-native")
    /// AF_XDP behind the XDP program in generic (skb) mode.
    public static let xdpGeneric = BenchBackend(rawValue: "xdp-generic")
}

/// What sends the traffic of `rxdrop` and `echo` cells and of the ceilings.
public enum BenchGenerator: String, CaseIterable, Sendable {
    /// Sluice's AF_XDP TX blaster (copy mode on veth): the fastest sender here.
    case xdp
    /// A kernel UDP socket, one `sendmmsg` per batch of 64.
    case socket
}

/// What `sluice bench` runs.
public struct BenchConfiguration: Sendable {
    /// Where fallbacks (a refused native attach) are reported; silent by default.
    public var logger: Logger = .disabled
    /// Backends, in this order.
    public var backends: [BenchBackend] = BenchBackend.allCases
    /// Scenarios, in this order.
    public var scenarios: [BenchScenario] = BenchScenario.standard
    /// Frame sizes on the wire (Ethernet header to the end of the UDP payload; IPv4).
    public var sizes: [Int] = [64, 1500]
    /// How long the generator runs per cell.
    public var duration: Duration = .seconds(5)
    /// The generator.
    public var generator: BenchGenerator = .xdp
    /// Packets per second the generator offers in all (split over the queues); `nil`: flat out.
    public var rate: Int?
    /// Queues of the veth pair, and workers per backend; the generator sends one flow per queue.
    public var queues: Int = 1
    /// Requests per second of the latency run after each echo cell.
    public var latencyRate: Int = 20_000
    /// Length of each latency run.
    public var latencyDuration: Duration = .seconds(1)
    /// How the io_uring backend's ring runs. SINGLE_ISSUER + DEFER_TASKRUN by default: the
    /// worker is the ring's only user and enters it every loop, so completions wait for it
    /// instead of interrupting it (on veth, a plain ring's wakeups cost the sending CPU).
    public var uringMode: URingMode = .deferTaskRun
    /// UDP GSO for the socket and io_uring backends: replies to one peer of one size leave as one
    /// `sendmsg` per run instead of one datagram per call.
    public var segmentationOffload = false
    /// Frames per worker (and per XSK): the buffer between the kernel and a worker that is late.
    public var framesPerWorker = 4096
    /// Two existing interfaces joined by a link (NIC ports cabled together) to measure instead of
    /// a veth pair: the backend gets `server`, the generator `client` (see
    /// `TestTopology/Configuration/devices`). AF_XDP then tries zero-copy first.
    public var devices: (server: String, client: String)?
    /// Suffix of the namespaces and veth names this run makes.
    public var suffix: String = "b\(getpid() % 100_000)"
    /// The CPU the generator is pinned to (when there are at least two).
    public var generatorCPU = 0
    /// The CPU a single worker is pinned to (when there are at least two; several workers: unpinned).
    public var workerCPU = 1

    /// The defaults: every backend and scenario, 64 and 1500-byte frames, 5 s per cell.
    public init() {}

    /// The smallest and largest frames an IPv4 UDP cell can use.
    public static let sizeRange = 60...1514
}

/// Runs every cell of a ``BenchConfiguration`` on a topology of its own and reports.
///
/// The topology is two network namespaces joined by a veth pair (`TestTopology`): the backend
/// serves in one, the generator sends from the other. The generator is Sluice's AF_XDP TX
/// blaster (copy mode on veth), one flow per queue, pinned to its own CPU; replies and
/// transmit-only traffic are counted where they arrive by the embedded `udp_drop` program, which drops
/// them at XDP so counting costs the receiving side next to nothing. The same program on the
/// backend's interface gives the in-kernel ceiling each size is compared with. A cell that
/// fails is recorded with its error and the run goes on.
public final class BenchRunner {
    /// What this runner measures.
    public let configuration: BenchConfiguration
    private let progress: (String) -> Void
    private var topology: TestTopology?
    private var replyCounter: XDPDropCounter?
    private var report: BenchReport

    /// Kills the peer servers (knotd) a run started and removes their files: for a run stopped by a
    /// signal, whose own cleanup never comes. Safe from any thread.
    public static func stopStartedServers() { KnotServer.killAll() }

    static let servicePort: UInt16 = 9000
    /// The service's address behind a TUN or TAP device on the server, and the kernel's side of the device.
    static let deviceServiceIPv4 = IPv4Address(198, 18, 200, 2)
    static let deviceKernelIPv4 = IPv4Address(198, 18, 200, 1)
    static let devicePrefix = "198.18.200.0/24"
    static let generatorPort: UInt16 = 5555
    static let headerBytes = 14 + 20 + 8
    /// How long frames may still be crossing the veth after the generator stops.
    static let settleMicroseconds: useconds_t = 50_000

    /// A runner for `configuration`.
    ///
    /// - Parameters:
    ///   - configuration: what to measure and how.
    ///   - progress: receives one line per step (the CLI redraws it in place).
    public init(configuration: BenchConfiguration, progress: @escaping (String) -> Void = { _ in }) {
        self.configuration = configuration
        self.progress = progress
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        report = BenchReport(environment: BenchEnvironment(
            kernel: KernelRelease.current.text, cpus: cpus,
            link: configuration.devices.map { "\($0.server) ↔ \($0.client), each moved into a network namespace of the run" }
                ?? "veth pair between two network namespaces (this machine; no NIC)",
            generator: (configuration.generator == .xdp
                         ? "Sluice AF_XDP TX, " + (configuration.devices == nil ? "copy mode" : "zero-copy where the driver has it")
                         : "kernel UDP socket, sendmmsg")
                + (configuration.queues == 1 ? ", one flow" : ", \(configuration.queues) flows on as many queues")
                + (configuration.rate.map { ", \($0) packets/s" } ?? ", flat out")
                + (cpus >= 2 ? ", cpu \(configuration.generatorCPU)" : ""),
            durationSeconds: Double(configuration.duration.nanosecondsClamped) / 1e9,
            queues: configuration.queues, startedAt: Self.timestamp()))
    }

    /// The steps in the order they run: the ceilings first, then every cell.
    var plan: [(name: String, run: () -> Void)] {
        var steps: [(name: String, run: () -> Void)] = []
        let xdpModes: [XDPAttachMode] = configuration.backends.contains(.xdpGeneric) ? [.native, .generic] : [.native]
        // The DNS cells' one frame size gets its ceiling too, for their "vs ceiling".
        var ceilingSizes = configuration.sizes
        if configuration.scenarios.contains(.dns), !ceilingSizes.contains(BenchZone.frameSize) {
            ceilingSizes.append(BenchZone.frameSize)
        }
        for size in ceilingSizes {
            for mode in xdpModes {
                steps.append(("ceiling \(mode.rawValue) \(size) B", { self.measureCeiling(size: size, mode: mode) }))
            }
        }
        for scenario in configuration.scenarios {
            if scenario == .dns {
                // One question, one frame size; Knot DNS on the same path as the baseline.
                let size = BenchZone.frameSize
                for backend in configuration.backends {
                    steps.append(("dns \(backend.rawValue)", { self.measure(backend: backend, scenario: .dns, size: size) }))
                }
                for xdp in [false, true] {
                    steps.append(("dns knot-\(xdp ? "xdp" : "socket")", { self.measureKnot(xdp: xdp) }))
                }
                continue
            }
            for size in configuration.sizes {
                var backends = configuration.backends
                // Transmitting from an XSK does not depend on how the XDP program is attached.
                if scenario == .txonly, backends.contains(.xdpNative), backends.contains(.xdpGeneric) {
                    backends.removeAll { $0 == .xdpGeneric }
                }
                // A device's service answers what is routed to it; it has no sender of its own.
                if scenario == .txonly { backends.removeAll { $0.isDevice } }
                for backend in backends {
                    steps.append(("\(scenario.rawValue) \(backend.rawValue) \(size) B", {
                        self.measure(backend: backend, scenario: scenario, size: size)
                    }))
                }
            }
        }
        return steps
    }

    /// Builds the topology, runs every step, tears the topology down (also on failure) and
    /// returns the report with ratios filled in.
    ///
    /// - Throws: only when the topology cannot be built; a failing cell is recorded instead.
    public func run() throws -> BenchReport {
        let topology = try TestTopology(.init(suffix: configuration.suffix, queues: configuration.queues,
                                              staticNeighbours: true, devices: configuration.devices))
        self.topology = topology
        defer {
            if let replyCounter { try? TestTopology.run(inNamespace: topology.clientNamespace) { replyCounter.detach() } }
            replyCounter = nil
            topology.destroy()
        }
        if configuration.devices != nil {
            bindModes = (Self.probeBindMode(interface: topology.serverInterface, namespace: topology.serverNamespace),
                         Self.probeBindMode(interface: topology.clientInterface, namespace: topology.clientNamespace))
        }
        let steps = plan
        for (index, step) in steps.enumerated() {
            progress(BenchReport.progressLine(done: index, total: steps.count, current: step.name, lastCell: report.cells.last))
            step.run()
        }
        progress(BenchReport.progressLine(done: steps.count, total: steps.count, current: "done", lastCell: report.cells.last))
        report.cells = Self.withRatios(report.cells, baselines: report.baselines)
        return report
    }

    // MARK: - Cells

    /// XDP_DROP on the backend's interface: the most this path can take in with this generator.
    func measureCeiling(size: Int, mode: XDPAttachMode) {
        let name = "xdp-drop-\(mode.rawValue)"
        do {
            let topology = try requireTopology()
            let logger = configuration.logger
            let sink = try TestTopology.run(inNamespace: topology.serverNamespace) {
                try XDPDropCounter(interface: topology.serverInterface, mode: mode, ports: [Self.servicePort], logger: logger)
            }
            defer { try? TestTopology.run(inNamespace: topology.serverNamespace) { sink.detach() } }
            let before = try sink.packets()
            let generated = try generate(size: size)
            usleep(Self.settleMicroseconds)
            let handled = Self.difference(try sink.packets(), before)
            let fallback = sink.mode == mode ? "" : " (native refused: ran in generic mode)"
            report.baselines.append(BenchBaseline(
                name: name,
                detail: "XDP_DROP (udp_drop, \(mode.rawValue) mode) on \(topology.serverInterface): "
                    + "the in-kernel ceiling\(fallback)",
                size: size, offeredPPS: generated.rate, pps: Double(handled) / generated.seconds,
                generatorCPUPercent: generated.cpuPercent))
        } catch {
            report.baselines.append(BenchBaseline(name: name, detail: "not measured: \(error)", size: size,
                                                  offeredPPS: 0, pps: 0, generatorCPUPercent: 0))
        }
    }

    /// One cell, recorded with its error when it fails (io_uring disabled, no XDP, ...).
    func measure(backend: BenchBackend, scenario: BenchScenario, size: Int) {
        do {
            let cell: BenchCell
            switch scenario {
            case .rxdrop: cell = try measureReceive(backend: backend, size: size, scenario: .rxdrop) { UDPDiscardService() }
            case .echo: cell = try measureReceive(backend: backend, size: size, scenario: .echo) { UDPEchoService() }
            case .txonly: cell = try measureTransmit(backend: backend, size: size)
            case .dns: cell = try measureReceive(backend: backend, size: size, scenario: .dns) { DNSService(authority: BenchZone.authority) }
            }
            report.cells.append(cell)
        } catch {
            report.cells.append(BenchCell(
                backend: scenario == .txonly && backend.isXDP ? "xdp" : backend.rawValue,
                scenario: scenario, size: size, mode: "-", offeredPPS: 0, pps: 0, nsPerPacket: 0, cpuPercent: 0,
                generatorCPUPercent: 0, generatorBound: false, note: "not measured: \(error)"))
        }
    }

    /// rxdrop and echo: the backend serves, the generator floods it.
    func measureReceive<S: UDPService>(backend: BenchBackend, size: Int, scenario: BenchScenario,
                                       makeService: @escaping @Sendable () -> S) throws -> BenchCell {
        let topology = try requireTopology()
        let replies = scenario == .rxdrop ? nil : try attachedReplyCounter()
        var settings = UDPServerConfiguration(listen: IPEndpoint(address: .v4(topology.serverIPv4), port: Self.servicePort))
        settings.workers = configuration.queues
        settings.cpus = configuration.queues == 1 && report.environment.cpus >= 2 ? [configuration.workerCPU] : []
        settings.handlesSignals = false
        settings.describesRings = false
        settings.segmentationOffload = configuration.segmentationOffload
        settings.uringMode = configuration.uringMode
        settings.maximumDatagram = BenchConfiguration.sizeRange.upperBound - Self.headerBytes
        // A few milliseconds of traffic at these rates, so a worker waking late does not lose it.
        settings.framesPerWorker = configuration.framesPerWorker
        guard let variant = backend.variant else {
            throw RuntimeError("no registered backend has a variant named '\(backend)'")
        }
        settings.backend = Backend(rawValue: variant.backend)
        var xdp = XDPBackendConfiguration(interface: topology.serverInterface)
        xdp.queues = (0..<UInt32(configuration.queues)).map { $0 }
        xdp.bindMode = bindModes.server
        settings.xdp = xdp
        variant.configure(&settings)
        var serviceAddress = topology.serverIPv4
        if backend.isDevice {
            // The server's kernel routes the generator's traffic into the device, as a VPN gateway does.
            serviceAddress = Self.deviceServiceIPv4
            try topology.routeThroughServer(Self.devicePrefix)
            var device = TUNBackendConfiguration(name: "slbench\(variant.backend)")
            device.addresses = [(.v4(Self.deviceKernelIPv4), 24)]
            device.queues = configuration.queues
            settings.tun = device
            settings.listen = IPEndpoint(address: .v4(serviceAddress), port: Self.servicePort)
        }
        let server = try TestTopology.run(inNamespace: topology.serverNamespace) { [settings] in
            try UDPServer(configuration: settings) { _ in makeService() }
        }
        var stopped = false
        defer { if !stopped { try? TestTopology.run(inNamespace: topology.serverNamespace) { server.stop() } } }

        let clock = MonotonicTimeSource()
        let snmpBefore = try TestTopology.run(inNamespace: topology.serverNamespace) { UDPStatistics.read() }
        let repliesBefore = try replies?.packets() ?? 0
        let before = server.totals()
        let wallBefore = clock.now()
        let cpuBefore = ThreadCPU.threads(named: "sluice-w")
        let generated = try generate(size: size, to: serviceAddress, payload: scenario == .dns ? BenchZone.query : nil)
        usleep(Self.settleMicroseconds)
        let after = server.totals()
        let workerCPU = Self.difference(ThreadCPU.threads(named: "sluice-w"), cpuBefore)
        let wall = Double((clock.now() - wallBefore).nanosecondsClamped) / 1e9
        let repliesAfter = try replies?.packets() ?? 0
        let snmpAfter = try TestTopology.run(inNamespace: topology.serverNamespace) { UDPStatistics.read() }

        var latency: BenchLatency?
        if scenario == .echo {
            let target = IPEndpoint(address: .v4(serviceAddress), port: Self.servicePort)
            let rate = configuration.latencyRate
            let count = Int(Double(rate) * Double(configuration.latencyDuration.nanosecondsClamped) / 1e9)
            // On the generator's CPU: unpinned, the busy-polling probe can land on the worker's.
            let pin = report.environment.cpus >= 2 ? configuration.generatorCPU : nil
            latency = try TestTopology.run(inNamespace: topology.clientNamespace) {
                if let pin { _ = sluice_pin_current_thread(Int32(pin)) }
                return try LatencyProbe.run(target: target, rate: rate, count: count, payloadSize: size - Self.headerBytes)
            }
        }
        try TestTopology.run(inNamespace: topology.serverNamespace) { server.stop() }
        stopped = true

        let received = Self.difference(after.received, before.received)
        let transmitted = Self.difference(after.transmitted, before.transmitted)
        let arrived = Self.difference(repliesAfter, repliesBefore)
        // Over the flood alone: the latency probe's packets after it take a call each.
        let calls = Self.difference(after.calls, before.calls)
        let packets = received
        var known: [(String, UInt64)] = []
        if let kernelDrops = server.backend.kernelDrops {
            known += kernelDrops.map { ($0.cause, $0.count) }
        } else {
            known.append(("socket receive buffer full",
                          Self.difference(snmpAfter.receiveBufferErrors, snmpBefore.receiveBufferErrors)))
        }
        var drops = Self.attributeDrops(unhandled: Self.difference(generated.sent, received), known: known,
                                        remainder: "lost before the backend (veth, backlog)")
        if scenario != .rxdrop {
            if received > transmitted { drops["received, not answered"] = received - transmitted }
            if transmitted > arrived { drops["answered, lost on the way back"] = transmitted - arrived }
        }
        let mode = server.backend.modeDescription
        return Self.makeCell(
            backend: backend.rawValue, scenario: scenario, size: size, mode: mode, generated: generated,
            handled: scenario == .rxdrop ? received : arrived, workerCPU: workerCPU, workerSeconds: wall, drops: drops,
            syscallsPerPacket: packets > 0 ? Double(calls) / Double(packets) : nil, latency: latency,
            rateLimited: configuration.rate != nil)
    }

    /// A `dns` baseline: Knot DNS serving the bench zone on the backend's side, on sockets or in
    /// its XDP mode, flooded by the same generator with the same question.
    func measureKnot(xdp: Bool) {
        let name = "knot-\(xdp ? "xdp" : "socket")"
        let size = BenchZone.frameSize
        do {
            let topology = try requireTopology()
            let replies = try attachedReplyCounter()
            let pin = configuration.queues == 1 && report.environment.cpus >= 2 ? configuration.workerCPU : nil
            let knot = try KnotServer(namespace: topology.serverNamespace,
                                      listen: IPEndpoint(address: .v4(topology.serverIPv4), port: Self.servicePort),
                                      xdpInterface: xdp ? topology.serverInterface : nil, workers: configuration.queues, cpu: pin)
            defer { knot.stop() }
            let clock = MonotonicTimeSource()
            let before = try replies.packets()
            let cpuBefore = knot.cpuNanoseconds
            let wallBefore = clock.now()
            let generated = try generate(size: size, payload: BenchZone.query)
            usleep(Self.settleMicroseconds)
            let cpu = Self.difference(knot.cpuNanoseconds, cpuBefore)
            let wall = Double((clock.now() - wallBefore).nanosecondsClamped) / 1e9
            let arrived = Self.difference(try replies.packets(), before)
            let drops = Self.attributeDrops(unhandled: Self.difference(generated.sent, arrived), known: [],
                                            remainder: "not answered, or lost on the way")
            report.cells.append(Self.makeCell(
                backend: name, scenario: .dns, size: size, mode: "Knot DNS, \(xdp ? "XDP" : "sockets"), \(configuration.queues) UDP worker(s)",
                generated: generated, handled: arrived, workerCPU: cpu, workerSeconds: wall, drops: drops,
                syscallsPerPacket: nil, latency: nil, rateLimited: configuration.rate != nil))
        } catch {
            report.cells.append(BenchCell(
                backend: name, scenario: .dns, size: size, mode: "-", offeredPPS: 0, pps: 0, nsPerPacket: 0, cpuPercent: 0,
                generatorCPUPercent: 0, generatorBound: false, note: "not measured: \(error)"))
        }
    }

    /// txonly: the backend sends from the server side, one sender per queue; `udp_drop` counts
    /// what arrives on the client side.
    func measureTransmit(backend: BenchBackend, size: Int) throws -> BenchCell {
        let topology = try requireTopology()
        let replies = try attachedReplyCounter()
        let payload = size - Self.headerBytes
        let duration = configuration.duration
        let pin = report.environment.cpus >= 2 ? configuration.workerCPU : nil
        let bindMode = bindModes.server
        let before = try replies.packets()
        let sent: Transmission
        let mode: String
        if !backend.isXDP {
            let useRing = backend.variant?.backend == URingBackend.name
            let uringMode = configuration.uringMode
            mode = useRing ? "io_uring (\(uringMode))" : "kernel socket"
            sent = try onQueues(namespace: topology.serverNamespace, cpu: pin) { queue in
                let target = IPEndpoint(address: .v4(topology.clientIPv4), port: Self.generatorPort + UInt16(queue))
                return try Self.flood(from: IPEndpoint(address: .v4(topology.serverIPv4), port: 0), to: target,
                                      payload: payload, duration: duration, rate: nil, ring: useRing ? uringMode : nil)
            }
        } else {
            mode = "copy"
            sent = try onQueues(namespace: topology.serverNamespace, cpu: pin) { queue in
                var settings = XDPTrafficGenerator.Configuration(
                    interface: topology.serverInterface,
                    source: IPEndpoint(address: .v4(topology.serverIPv4), port: Self.servicePort),
                    destination: IPEndpoint(address: .v4(topology.clientIPv4), port: Self.generatorPort + UInt16(queue)))
                settings.queue = UInt32(queue)
                settings.destinationMAC = topology.clientMAC
                settings.payloadSize = payload
                settings.duration = duration
                settings.bindMode = bindMode
                return Transmission(try XDPTrafficGenerator.run(settings))
            }
        }
        usleep(Self.settleMicroseconds)
        let arrived = Self.difference(try replies.packets(), before)
        let drops = Self.attributeDrops(unhandled: Self.difference(sent.sent, arrived), known: [], remainder: "not arrived")
        let cpuPercent = sent.cpuPercent
        return BenchCell(
            backend: backend.isXDP ? "xdp" : backend.rawValue, scenario: .txonly,
            size: size, mode: mode, offeredPPS: sent.rate, pps: Double(arrived) / sent.seconds,
            nsPerPacket: arrived > 0 ? Double(sent.cpuNanoseconds) / Double(arrived) : 0,
            // The sender is the backend here: no generator of its own.
            cpuPercent: cpuPercent, generatorCPUPercent: cpuPercent, generatorBound: false, drops: drops,
            syscallsPerPacket: sent.calls.map { sent.sent > 0 ? Double($0) / Double(sent.sent) : 0 })
    }

    // MARK: - Pieces

    /// What one or more senders did, summed.
    struct Transmission: Sendable {
        var sent: UInt64
        var seconds: Double
        var cpuNanoseconds: UInt64
        var calls: UInt64?

        init(sent: UInt64, seconds: Double, cpuNanoseconds: UInt64, calls: UInt64?) {
            self.sent = sent
            self.seconds = max(seconds, 1e-9)
            self.cpuNanoseconds = cpuNanoseconds
            self.calls = calls
        }

        init(_ report: UDPLoadReport) {
            self.init(sent: report.sent, seconds: report.seconds, cpuNanoseconds: report.senderCPUNanoseconds ?? 0, calls: nil)
        }

        var rate: Double { Double(sent) / seconds }
        /// Percent of one core (above 100 with several senders).
        var cpuPercent: Double { Double(cpuNanoseconds) / (seconds * 1e9) * 100 }

        static func + (a: Transmission, b: Transmission) -> Transmission {
            Transmission(sent: a.sent + b.sent, seconds: max(a.seconds, b.seconds),
                         cpuNanoseconds: a.cpuNanoseconds + b.cpuNanoseconds,
                         calls: a.calls.flatMap { x in b.calls.map { x + $0 } })
        }
    }

    /// The generator, flat out or at the configured rate, for the configured duration from the
    /// client side to `address` (the server's own by default): one flow per queue, each from its
    /// own source port.
    func generate(size: Int, to address: IPv4Address? = nil, payload bytes: [UInt8]? = nil) throws -> Transmission {
        let topology = try requireTopology()
        let duration = configuration.duration
        let generator = configuration.generator
        let rate = configuration.rate.map { max(1, $0 / configuration.queues) }
        let pin = report.environment.cpus >= 2 ? configuration.generatorCPU : nil
        let bindMode = bindModes.client
        let destination = IPEndpoint(address: .v4(address ?? topology.serverIPv4), port: Self.servicePort)
        let payload = size - Self.headerBytes
        return try onQueues(namespace: topology.clientNamespace, cpu: pin) { queue in
            let source = IPEndpoint(address: .v4(topology.clientIPv4), port: Self.generatorPort + UInt16(queue))
            switch generator {
            case .xdp:
                var settings = XDPTrafficGenerator.Configuration(interface: topology.clientInterface, source: source,
                                                                 destination: destination)
                settings.queue = UInt32(queue)
                settings.destinationMAC = topology.serverMAC
                settings.payloadSize = payload
                settings.payload = bytes
                settings.duration = duration
                settings.rate = rate
                settings.bindMode = bindMode
                return Transmission(try XDPTrafficGenerator.run(settings))
            case .socket:
                // The sender's system calls are not the backend's: left out of the cell.
                var sent = try Self.flood(from: source, to: destination, payload: payload, bytes: bytes, duration: duration,
                                          rate: rate, ring: nil)
                sent.calls = nil
                return sent
            }
        }
    }

    /// Runs `body(queue)` for every queue at once, each on a thread of its own in `namespace`
    /// (pinned to `cpu` when given), and sums what they report.
    func onQueues(namespace: String, cpu: Int?,
                  _ body: @escaping @Sendable (Int) throws -> Transmission) throws -> Transmission {
        let results = Mutex<[Result<Transmission, any Error>]>([])
        var threads: [WorkerThread] = []
        for queue in 0..<configuration.queues {
            threads.append(try WorkerThread(name: "sluice-gen\(queue)") {
                let result = Result {
                    try TestTopology.run(inNamespace: namespace) {
                        if let cpu { _ = sluice_pin_current_thread(Int32(cpu)) }
                        return try body(queue)
                    }
                }
                results.withLock { $0.append(result) }
            })
        }
        for thread in threads { thread.join() }
        let all = try results.withLock { $0 }.map { try $0.get() }
        guard let first = all.first else { throw RuntimeError("no sender ran") }
        return all.dropFirst().reduce(first, +)
    }

    /// Sends `payload`-byte datagrams from `local` to `target` for `duration` (at `rate`, or flat
    /// out) through a kernel socket, or through io_uring in `ring` mode; reports what went out,
    /// the calling thread's CPU time over the send loop and the system calls it took.
    static func flood(from local: IPEndpoint, to target: IPEndpoint, payload: Int, bytes: [UInt8]? = nil, duration: Duration,
                      rate: Int?, ring: URingMode?) throws -> Transmission {
        let clock = MonotonicTimeSource()
        let fill = datagram(to: target, payload: payload, bytes: bytes)
        func run<P: Port & ~Copyable>(_ port: inout P, _ pool: FramePool) throws -> Transmission {
            let cpuStart = threadCPUNanoseconds()
            let start = clock.now()
            let sent = try UDPLoadClient.flood(port: &port, pool: pool, batchCapacity: PacketBatch.defaultCapacity,
                                               until: start + duration, rate: rate, fill: fill)
            return Transmission(sent: sent, seconds: Double((clock.now() - start).nanosecondsClamped) / 1e9,
                                cpuNanoseconds: difference(threadCPUNanoseconds(), cpuStart),
                                calls: port.counters.transmitCalls + port.counters.receiveCalls)
        }
        let frameSize = DatagramHeader.frameSize(forPayload: payload)
        let pool = try FramePool(frameCount: 1024, frameSize: frameSize, headroom: DatagramHeader.minimumHeadroom)
        if let ring {
            var settings = URingUDPConfiguration(listen: local)
            settings.mode = ring
            var port = try URingUDPPort(configuration: settings, pool: pool)
            return try run(&port, pool)
        }
        var settings = UDPSocketConfiguration(listen: local)
        settings.reusePort = false
        var port = try UDPSocketPort(configuration: settings, pool: pool)
        return try run(&port, pool)
    }

    /// Fills a datagram port's frame: `payload` bytes (left as they are) to `target`.
    static func datagram(to target: IPEndpoint, payload: Int, bytes: [UInt8]? = nil) -> (inout Packet, UInt64) -> Void {
        { packet, _ in
            if let bytes {
                bytes.withUnsafeBytes { packet.dataStart.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                packet.length = bytes.count
                return
            }
            packet.length = payload
            DatagramHeader.store(target, sockaddrAt: packet.frameStart + DatagramHeader.peerOffset, mapIPv4: false)
            DatagramHeader(frameStart: packet.frameStart).local = IPEndpoint(address: .v4(.any), port: 0)
        }
    }

    /// How XSKs bind on the server's and the client's interface: copy on veth, which has no
    /// zero-copy; on borrowed devices, what a probe at the start found (so a driver without
    /// zero-copy is announced once, not in every cell).
    private var bindModes: (server: XSKBindMode, client: XSKBindMode) = (.copy, .copy)

    /// Opens one XSK on `interface` in `namespace`, zero-copy first, and says which mode stuck.
    static func probeBindMode(interface: String, namespace: String) -> XSKBindMode {
        let zeroCopy = try? TestTopology.run(inNamespace: namespace) { () -> Bool in
            let pool = try FramePool(frameCount: 64, frameSize: 2048, headroom: 0)
            let umem = try XSKUmem(pool: pool)
            var settings = XDPPortConfiguration(interface: interface, queue: 0)
            settings.bindMode = .automatic
            settings.reservedFrames = pool.frameCount
            return try XDPPort(configuration: settings, umem: umem, pool: pool).isZeroCopy
        }
        return zeroCopy == true ? .zeroCopy : .copy
    }

    /// `udp_drop` on the client's interface, attached on first use: replies and txonly traffic
    /// to the generator's ports are counted there.
    func attachedReplyCounter() throws -> XDPDropCounter {
        if let replyCounter { return replyCounter }
        let topology = try requireTopology()
        let ports = (0..<configuration.queues).map { Self.generatorPort + UInt16($0) }
        let logger = configuration.logger
        let counter = try TestTopology.run(inNamespace: topology.clientNamespace) {
            try XDPDropCounter(interface: topology.clientInterface, mode: .native, ports: ports, logger: logger)
        }
        replyCounter = counter
        return counter
    }

    /// A cell from what was measured; rates over the generator's time, CPU over the worker's.
    static func makeCell(backend: String, scenario: BenchScenario, size: Int, mode: String, generated: Transmission,
                         handled: UInt64, workerCPU: UInt64, workerSeconds: Double, drops: [String: UInt64],
                         syscallsPerPacket: Double?, latency: BenchLatency?, rateLimited: Bool = false) -> BenchCell {
        // The generator set the rate when it ran flat out (or at a fixed rate) and the backend
        // took all it got.
        let generatorBound = (rateLimited || generated.cpuPercent >= 95) && Double(handled) >= 0.97 * Double(generated.sent)
        return BenchCell(
            backend: backend, scenario: scenario, size: size, mode: mode, offeredPPS: generated.rate,
            pps: Double(handled) / generated.seconds,
            nsPerPacket: handled > 0 ? Double(workerCPU) / Double(handled) : 0,
            cpuPercent: workerSeconds > 0 ? Double(workerCPU) / (workerSeconds * 1e9) * 100 : 0,
            generatorCPUPercent: generated.cpuPercent, generatorBound: generatorBound, drops: drops,
            syscallsPerPacket: syscallsPerPacket, latency: latency)
    }

    /// Splits `unhandled` packets over the `known` causes in order, each capped by what is left,
    /// and puts the rest under `remainder`: disjoint causes that add up to `unhandled`.
    static func attributeDrops(unhandled: UInt64, known: [(cause: String, count: UInt64)],
                               remainder: String) -> [String: UInt64] {
        var drops: [String: UInt64] = [:]
        var left = unhandled
        for (cause, count) in known {
            let counted = min(count, left)
            if counted > 0 { drops[cause] = counted }
            left -= counted
        }
        if left > 0 { drops[remainder] = left }
        return drops
    }

    /// The cells with their ratios to the socket backend (same scenario and size) and to the
    /// ceiling (same size; the generic ceiling for generic XDP, the native one for the rest).
    /// Cells and baselines that were not measured get none.
    static func withRatios(_ cells: [BenchCell], baselines: [BenchBaseline]) -> [BenchCell] {
        cells.map { cell in
            var cell = cell
            guard cell.note == nil else { return cell }
            if cell.backend != BenchBackend.socket.rawValue,
               let socket = cells.first(where: { $0.backend == "socket" && $0.scenario == cell.scenario && $0.size == cell.size }),
               socket.note == nil, socket.pps > 0 {
                cell.ratioToSocket = cell.pps / socket.pps
            }
            if cell.scenario != .txonly {
                let name = cell.backend == BenchBackend.xdpGeneric.rawValue ? "xdp-drop-generic" : "xdp-drop-native"
                if let ceiling = baselines.first(where: { $0.name == name && $0.size == cell.size }), ceiling.pps > 0 {
                    cell.ratioToCeiling = cell.pps / ceiling.pps
                }
            }
            return cell
        }
    }

    /// `a - b` for counters that only grow, 0 if a thread or counter went away in between.
    static func difference(_ a: UInt64, _ b: UInt64) -> UInt64 { a > b ? a - b : 0 }

    func requireTopology() throws -> TestTopology {
        guard let topology else { throw RuntimeError("the bench topology is not up") }
        return topology
    }

    /// Now, as ISO 8601 in UTC.
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}

/// The UDP counters of the calling thread's network namespace (`/proc/thread-self/net/snmp`:
/// `/proc/net` follows the main thread's namespace, not this thread's).
struct UDPStatistics: Sendable {
    /// `RcvbufErrors`: datagrams dropped because a socket's receive buffer was full.
    var receiveBufferErrors: UInt64 = 0

    static func read() -> UDPStatistics {
        guard let file = fopen("/proc/thread-self/net/snmp", "r") else { return UDPStatistics() }
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
