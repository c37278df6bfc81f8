#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import SluiceCore
import SluicePackets
import SluiceSockets
import SluiceUDP
import SluiceURing
import SluiceXDP

/// Which kernel path a service's packets take.
public enum Backend: String, Sendable, CaseIterable {
    /// Kernel UDP sockets with recvmmsg/sendmmsg (GSO/GRO optional): works everywhere, no privileges.
    case socket
    /// AF_XDP sockets fed by Sluice's XDP program, one per receive queue: needs root (CAP_NET_ADMIN, CAP_BPF).
    case xdp
    /// io_uring: multishot recvmsg over a buffer ring of pool frames, batched sendmsg.
    case uring
}

/// Where an AF_XDP backend takes its frames from.
public struct XDPBackendConfiguration: Sendable {
    /// The interface.
    public var interface: String
    /// The receive queues to serve, one worker each.
    public var queues: [UInt32] = [0]
    /// Native (driver) or generic (skb) XDP; native falls back to generic when refused.
    public var attachMode: XDPAttachMode = .native
    /// Zero-copy, copy, or try zero-copy first.
    public var bindMode: XSKBindMode = .automatic
    /// Replace a foreign XDP program on the interface.
    public var force: Bool = false
    /// Frame size in the UMEM (2048 or 4096).
    public var frameSize: Int = 2048

    /// Serve queue 0 of `interface`.
    public init(interface: String) { self.interface = interface }
}

/// How to run a UDP service.
public struct UDPServerConfiguration: Sendable {
    /// The backend.
    public var backend: Backend = .socket
    /// Where to listen.
    public var listen: IPEndpoint
    /// Worker threads, each with its own socket (`SO_REUSEPORT`) or queue, pool and service.
    public var workers: Int = 1
    /// CPUs to pin workers to, in order (worker `i` takes `cpus[i % cpus.count]`); empty for no pinning.
    public var cpus: [Int] = []
    /// UDP GSO on send (socket backend).
    public var segmentationOffload: Bool = false
    /// UDP GRO on receive (socket backend).
    public var receiveOffload: Bool = false
    /// How the io_uring backend's rings run (SQPOLL, DEFER_TASKRUN, ...).
    public var uringMode: URingMode = .plain
    /// The largest datagram payload taken whole; larger ones are counted and dropped.
    public var maximumDatagram: Int = 65507
    /// Frames per worker pool.
    public var framesPerWorker: Int = 512
    /// Packets per batch.
    public var batchCapacity: Int = PacketBatch.defaultCapacity
    /// For ``Backend/xdp``: the interface, queues and modes. Workers follow the queues.
    public var xdp: XDPBackendConfiguration?
    /// Whether ``UDPServer/run(for:progressInterval:progress:)`` stops on SIGINT/SIGTERM
    /// (they are then blocked in every thread and taken with `sigtimedwait`).
    public var handlesSignals: Bool = true
    /// Whether io_uring workers print, when they stop, their ring's setup and the kernel ops it used.
    public var describesRings: Bool = true

    /// A configuration listening on `listen`, everything else at its default.
    public init(listen: IPEndpoint) { self.listen = listen }
}

/// What one worker did, collected when it stops.
public struct WorkerReport: Sendable {
    /// The worker's number.
    public var index: Int
    /// Its port's counters.
    public var port: PortCounters
    /// Its UDP stage's counters.
    public var stage: UDPStageCounters
    /// Where its frames were at the end: all must be back.
    public var frames: FrameTally
}

/// A UDP service running on worker threads over one backend: the runtime's front door.
///
/// ```swift
/// let server = try UDPServer(configuration: .init(listen: IPEndpoint("0.0.0.0:9000")!)) { _ in UDPEchoService() }
/// try server.run(for: .seconds(10))   // or until SIGINT/SIGTERM
/// print(server.summary())
/// ```
public final class UDPServer<Service: UDPService>: Sendable {
    /// The configuration.
    public let configuration: UDPServerConfiguration
    /// One state per worker.
    public let states: [WorkerState]
    /// The address the first worker bound (with the kernel's port when 0 was asked for).
    public var boundEndpoint: IPEndpoint { bound.withLock { $0 } ?? configuration.listen }
    private let bound = Locked<IPEndpoint?>(nil)
    private let threads: Mutex<[WorkerThread]>
    private let reports: Locked<[WorkerReport]>
    private let started: Instant
    private let xdp: XDPSession?

    /// Starts the workers, each making its own service with `makeService(workerIndex)`, and
    /// returns once all are receiving.
    ///
    /// - Throws: ``RuntimeError`` naming the first worker that could not start and why.
    public init(configuration: UDPServerConfiguration,
                makeService: @escaping @Sendable (Int) -> Service) throws(RuntimeError) {
        self.configuration = configuration
        reports = Locked([])
        threads = Mutex([])
        started = MonotonicTimeSource().now()
        // Signals must be blocked before the workers start, so only `run` receives them.
        if configuration.handlesSignals { SignalWaiter.block([SIGINT, SIGTERM]) }
        switch configuration.backend {
        case .socket, .uring:
            precondition(configuration.workers > 0, "at least one worker")
            states = (0..<configuration.workers).map { WorkerState(index: $0) }
            xdp = nil
            do {
                if configuration.backend == .uring { try startURingWorkers(makeService) } else { try startSocketWorkers(makeService) }
            } catch {
                // Workers that did start would keep the port and its traffic: stop them first.
                stop()
                throw error
            }
        case .xdp:
            guard let settings = configuration.xdp else {
                throw RuntimeError("the xdp backend needs an interface (--dev IF)")
            }
            states = settings.queues.indices.map { WorkerState(index: $0) }
            let session = try XDPSession(settings: settings, port: configuration.listen.port,
                                         framesPerQueue: configuration.framesPerWorker)
            xdp = session
            do {
                try startXDPWorkers(session, settings, makeService)
            } catch {
                stop()
                throw error
            }
        }
    }

    private func startSocketWorkers(_ makeService: @escaping @Sendable (Int) -> Service) throws(RuntimeError) {
        var settings = UDPSocketConfiguration(listen: configuration.listen)
        settings.reusePort = true
        settings.segmentationOffload = configuration.segmentationOffload
        settings.receiveOffload = configuration.receiveOffload
        let batchCapacity = configuration.batchCapacity
        try startDatagramWorkers(makeService, frameSize: settings.frameSize(maximumDatagram: configuration.maximumDatagram),
                                 open: { [settings] listen, pool in
                                     var settings = settings
                                     settings.listen = listen
                                     return try UDPSocketPort(configuration: settings, pool: pool, batchCapacity: batchCapacity)
                                 },
                                 localEndpoint: { $0.localEndpoint }, finish: { _, _ in })
    }

    private func startURingWorkers(_ makeService: @escaping @Sendable (Int) -> Service) throws(RuntimeError) {
        var settings = URingUDPConfiguration(listen: configuration.listen)
        settings.segmentationOffload = configuration.segmentationOffload
        settings.mode = configuration.uringMode
        settings.defersSubmission = true   // WorkerLoop receives after every transmit
        // Half the pool in the buffer ring; the rest covers the batches and sends in flight.
        while Int(settings.bufferRingEntries) * 4 <= configuration.framesPerWorker {
            settings.bufferRingEntries *= 2
        }
        let (batchCapacity, describesRings) = (configuration.batchCapacity, configuration.describesRings)
        try startDatagramWorkers(makeService, frameSize: settings.frameSize(maximumDatagram: configuration.maximumDatagram),
                                 open: { [settings] listen, pool in
                                     var settings = settings
                                     settings.listen = listen
                                     return try URingUDPPort(configuration: settings, pool: pool, batchCapacity: batchCapacity)
                                 },
                                 localEndpoint: { $0.localEndpoint },
                                 finish: { port, index in
                                     if describesRings { print("sluice: worker \(index): \(port.ring.describe())") }
                                 })
    }

    /// One worker per state, each with its own pool and a port from `open(listen, pool)` bound to
    /// the same address (`SO_REUSEPORT`); `finish` sees the port after the worker's loop ends.
    private func startDatagramWorkers<P: Port & SendableMetatype & ~Copyable>(
        _ makeService: @escaping @Sendable (Int) -> Service, frameSize: Int,
        open: @escaping @Sendable (IPEndpoint, FramePool) throws -> P,
        localEndpoint: @escaping @Sendable (borrowing P) -> IPEndpoint,
        finish: @escaping @Sendable (borrowing P, Int) -> Void
    ) throws(RuntimeError) {
        let bound = self.bound
        var listen = configuration.listen
        for (index, state) in states.enumerated() {
            let workerListen = listen
            let (configuration, reports) = (self.configuration, self.reports)
            try startWorker(state) {
                let pool: FramePool
                var port: P
                do {
                    pool = try FramePool(frameCount: configuration.framesPerWorker, frameSize: frameSize,
                                         headroom: DatagramHeader.minimumHeadroom)
                    port = try open(workerListen, pool)
                } catch {
                    state.markFailed("\(error)")
                    return
                }
                let endpoint = localEndpoint(port)
                bound.withLock { if $0 == nil { $0 = endpoint } }
                Self.serve(port: &port, pool: pool, service: makeService(index), state: state,
                           batchCapacity: configuration.batchCapacity, reports: reports)
                finish(port, index)
            }
            // Port 0 means "any": the other workers must join the port the first one got.
            if index == 0, let endpoint = bound.withLock({ $0 }) { listen = endpoint }
        }
    }

    private func startXDPWorkers(_ session: XDPSession, _ settings: XDPBackendConfiguration,
                                 _ makeService: @escaping @Sendable (Int) -> Service) throws(RuntimeError) {
        for (index, state) in states.enumerated() {
            let queue = settings.queues[index]
            let pool = session.pools[index]
            let (batchCapacity, reports) = (configuration.batchCapacity, self.reports)
            try startWorker(state) {
                var portConfiguration = XDPPortConfiguration(interface: settings.interface, queue: queue)
                portConfiguration.bindMode = settings.bindMode
                do {
                    var port = try XDPPort(configuration: portConfiguration, umem: session.umem, pool: pool)
                    try session.program.insertSocket(port.descriptor, queue: queue)
                    session.record(zeroCopy: port.isZeroCopy)
                    Self.serve(port: &port, pool: pool, service: makeService(index), state: state,
                               batchCapacity: batchCapacity, reports: reports)
                    session.record(port.statistics)
                    try session.program.removeSocket(queue: queue)
                } catch {
                    state.markFailed("\(error)")
                }
            }
        }
    }

    /// Starts one worker thread running `body` and waits until it runs or fails.
    private func startWorker(_ state: WorkerState, _ body: @escaping @Sendable () -> Void) throws(RuntimeError) {
        let cpus = configuration.cpus
        let cpu = cpus.isEmpty ? nil : cpus[state.index % cpus.count]
        let thread = try WorkerThread(name: "sluice-w\(state.index)", cpu: cpu, body)
        threads.withLock { $0.append(thread) }
        try Self.waitUntilStarted(state)
    }

    private static func waitUntilStarted(_ state: WorkerState) throws(RuntimeError) {
        var waited = 0
        while state.currentPhase == .starting {
            usleep(1000)
            waited += 1
            if waited > 10_000 { throw RuntimeError("worker \(state.index) did not start within 10 s") }
        }
        if state.currentPhase == .failed {
            throw RuntimeError("worker \(state.index): \(state.failureReason ?? "failed")")
        }
    }

    /// The part of every worker after its port is open: the loop, then the report.
    private static func serve<P: Port & ~Copyable>(port: inout P, pool: FramePool, service: Service, state: WorkerState,
                                                  batchCapacity: Int, reports: Locked<[WorkerReport]>) {
        var stage = UDPStage(service: service, format: port.format)
        state.markRunning()
        do {
            let tally = try WorkerLoop.run(port: &port, stage: &stage, pool: pool, state: state,
                                           batchCapacity: batchCapacity)
            state.publish(port.counters)
            let report = WorkerReport(index: state.index, port: port.counters, stage: stage.counters, frames: tally)
            reports.withLock { $0.append(report) }
            state.markFinished()
        } catch {
            state.markFailed("\(error)")
        }
    }

    /// Asks every worker to stop and waits for them.
    public func stop() {
        for state in states { state.requestStop() }
        let joined = threads.withLock { threads -> [WorkerThread] in
            defer { threads = [] }
            return threads
        }
        for thread in joined { thread.join() }
        xdp?.finish()
    }

    /// Runs until SIGINT or SIGTERM, or until `duration` has passed, printing a progress line
    /// every `progressInterval` when given; then stops the workers.
    public func run(for duration: Duration? = nil, progressInterval: Duration? = nil,
                    progress: (String) -> Void = { print($0) }) throws(RuntimeError) {
        let clock = MonotonicTimeSource()
        let deadline = duration.map { clock.now() + $0 }
        var lastReport = clock.now()
        var last = totals()
        let signals = SignalWaiter(configuration.handlesSignals ? [SIGINT, SIGTERM] : [])
        while true {
            let now = clock.now()
            if let deadline, now >= deadline { break }
            var wait = Duration.milliseconds(200)
            if let deadline { wait = min(wait, deadline - now) }
            if let signal = signals.wait(for: wait) {
                progress("sluice: \(signal == SIGINT ? "SIGINT" : "SIGTERM") received, stopping")
                break
            }
            if states.contains(where: { $0.currentPhase == .failed }) { break }
            if let progressInterval, clock.now() - lastReport >= progressInterval {
                let current = totals()
                let seconds = Double((clock.now() - lastReport).nanosecondsClamped) / 1e9
                let rx = Double(current.received &- last.received) / seconds
                let tx = Double(current.transmitted &- last.transmitted) / seconds
                progress("rx \(Self.rate(rx)) pps  tx \(Self.rate(tx)) pps  drops \(current.dropped)")
                last = current
                lastReport = clock.now()
            }
        }
        stop()
        if let failed = states.first(where: { $0.currentPhase == .failed }) {
            throw RuntimeError("worker \(failed.index) failed: \(failed.failureReason ?? "unknown")")
        }
    }

    /// Totals over all workers from their last published counters.
    public func totals() -> TrafficSnapshot {
        states.reduce(TrafficSnapshot()) { $0 + $1.snapshot }
    }

    /// For the xdp backend after ``stop()``: the sockets' kernel drop counters, summed.
    public var xskStatistics: XSKStatistics? { xdp?.statistics }

    /// For the xdp backend: "copy", "zero-copy" or "mixed zero-copy/copy", over the sockets opened.
    public var xskMode: String? { xdp?.modeDescription }

    /// The workers' final reports (after ``stop()``), in worker order.
    public var workerReports: [WorkerReport] {
        reports.withLock { $0 }.sorted { $0.index < $1.index }
    }

    /// A few lines saying what the server did: packets, rates, drops by cause, frame accounting.
    public func summary() -> String {
        let reports = workerReports
        var port = PortCounters()
        var stage = UDPStageCounters()
        for r in reports {
            port.add(r.port)
            stage.add(r.stage)
        }
        let seconds = max(Double((MonotonicTimeSource().now() - started).nanosecondsClamped) / 1e9, 1e-9)
        var backend = configuration.backend.rawValue
        if let xdp { backend += " (\(xdp.interface), \(xdp.program.mode.rawValue) XDP, \(xdp.modeDescription))" }
        var lines = [
            "sluice udp \(backend) on \(boundEndpoint): \(reports.count) worker(s), \(String(format2: seconds)) s",
            "  received \(port.receivedPackets) datagrams (\(Self.rate(Double(port.receivedPackets) / seconds)) pps avg), "
                + "sent \(port.transmittedPackets), \(port.receiveCalls + port.transmitCalls) syscalls",
        ]
        let drops = port.fields.filter { $0.0.hasPrefix("drop") && $0.1 > 0 }
            + stage.fields.filter { ($0.0.hasPrefix("malformed") || $0.0 == "not_udp" || $0.0 == "dropped_by_service") && $0.1 > 0 }
        lines.append("  drops: " + (drops.isEmpty ? "none" : drops.map { "\($0.0)=\($0.1)" }.joined(separator: " ")))
        if port.coalescedSegments > 0 || port.segmentedPackets > 0 {
            lines.append("  offload: \(port.coalescedSegments) datagrams arrived coalesced (GRO), \(port.segmentedPackets) left segmented (GSO)")
        }
        if let xdp { lines += xdp.summaryLines }
        for r in reports where !r.frames.isBalanced {
            lines.append("  worker \(r.index) \(r.frames)")
        }
        if reports.allSatisfy({ $0.frames.isBalanced }) { lines.append("  frames: all returned to their pools") }
        return lines.joined(separator: "\n")
    }

    static func rate(_ value: Double) -> String {
        value >= 1e6 ? "\(String(format2: value / 1e6))M" : value >= 1e3 ? "\(String(format2: value / 1e3))k" : "\(Int(value))"
    }
}

/// What the AF_XDP backend sets up once for all its workers: the program on the interface, the
/// port in its map, one UMEM over a pool split between the queues.
final class XDPSession: Sendable {
    let program: XDPProgram
    let umem: XSKUmem
    let pools: [FramePool]
    let interface: String
    private let attachedHere: Bool
    private let addedPort: UInt16?
    private let modes = Locked<[Bool]>([])
    private let socketStatistics = Locked(XSKStatistics())
    private let finalVerdicts = Locked<XDPVerdicts?>(nil)

    init(settings: XDPBackendConfiguration, port: UInt16, framesPerQueue: Int) throws(RuntimeError) {
        interface = settings.interface
        do {
            if let existing = try XDPProgram.attached(on: settings.interface) {
                program = existing
                attachedHere = false
            } else {
                program = try XDPProgram.attach(to: settings.interface, mode: settings.attachMode, force: settings.force)
                attachedHere = true
            }
            let ports = try program.ports
            addedPort = ports.contains(port) ? nil : port
            if addedPort != nil { try program.setPort(port) }
        } catch {
            throw RuntimeError("\(error)")
        }
        do {
            let pool = try FramePool(frameCount: framesPerQueue * settings.queues.count, frameSize: settings.frameSize,
                                     headroom: 256)
            umem = try XSKUmem(pool: pool)
            pools = pool.partition(into: settings.queues.count)
        } catch {
            let reason = "\(error)"
            if attachedHere { try? program.detach() }
            throw RuntimeError(reason)
        }
    }

    /// Notes a socket's mode, for the summary.
    func record(zeroCopy: Bool) { modes.withLock { $0.append(zeroCopy) } }

    /// Adds a closed socket's kernel statistics to the session's.
    func record(_ socket: XSKStatistics) {
        socketStatistics.withLock {
            $0.receiveDropped += socket.receiveDropped
            $0.receiveInvalidDescriptors += socket.receiveInvalidDescriptors
            $0.transmitInvalidDescriptors += socket.transmitInvalidDescriptors
            $0.receiveRingFull += socket.receiveRingFull
            $0.fillRingEmpty += socket.fillRingEmpty
            $0.transmitRingEmpty += socket.transmitRingEmpty
        }
    }

    /// The sockets' kernel drop counters recorded so far.
    var statistics: XSKStatistics { socketStatistics.withLock { $0 } }

    /// Summary lines: the program's verdicts and the sockets' drop counters.
    var summaryLines: [String] {
        var lines: [String] = []
        if let verdicts = finalVerdicts.withLock({ $0 }) ?? (try? program.verdicts()) {
            lines.append("  xdp program: \(verdicts)")
        }
        let socket = statistics
        lines.append("  xsk: rx_dropped \(socket.receiveDropped), rx_ring_full \(socket.receiveRingFull), "
                     + "fill_ring_empty \(socket.fillRingEmpty), rx_invalid \(socket.receiveInvalidDescriptors), "
                     + "tx_invalid \(socket.transmitInvalidDescriptors)")
        return lines
    }

    /// "copy", "zero-copy" or both, over the sockets opened.
    var modeDescription: String {
        let all = modes.withLock { $0 }
        if all.allSatisfy({ $0 }) && !all.isEmpty { return "zero-copy" }
        return all.contains(true) ? "mixed zero-copy/copy" : "copy"
    }

    /// Leaves the interface as it was found: detaches a program this session attached, or takes
    /// back the port it added to a program that was already there.
    func finish() {
        let verdicts = try? program.verdicts()
        finalVerdicts.withLock { $0 = verdicts }
        if attachedHere {
            try? program.detach()
        } else if let addedPort {
            try? program.setPort(addedPort, enabled: false)
        }
    }
}

/// A value behind a mutex, shareable between threads by reference.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

extension String {
    /// A number with two decimals, without Foundation.
    init(format2 value: Double) {
        let scaled = Int((value * 100).rounded())
        let fraction = abs(scaled % 100)
        self = "\(scaled / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
