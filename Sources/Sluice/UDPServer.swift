#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import SluiceCore
import SluiceHost
import SluicePackets
import SluiceUDP
import SluiceURing

/// The name of a registered ``UDPBackend``: `.socket`, `.uring`, `.xdp`, or any name given to
/// ``UDPBackendRegistry/register(_:)``.
public struct Backend: RawRepresentable, Hashable, Codable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The name.
    public var rawValue: String
    /// A backend by name.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// A backend by name.
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    /// Kernel UDP sockets (``SocketBackend``).
    public static let socket = Backend(rawValue: SocketBackend.name)
    /// io_uring (``URingBackend``).
    public static let uring = Backend(rawValue: URingBackend.name)
    /// AF_XDP (``XDPBackend``).
    public static let xdp = Backend(rawValue: XDPBackend.name)
    /// A TUN device (``TUNBackend``).
    public static let tun = Backend(rawValue: TUNBackend.name)
    /// A TAP device (``TAPBackend``).
    public static let tap = Backend(rawValue: TAPBackend.name)

    /// Whether the backend runs over a TUN or TAP device (and takes a ``TUNBackendConfiguration``).
    public var isDevice: Bool { self == .tun || self == .tap }
}

/// How to run a UDP service.
public struct UDPServerConfiguration: Sendable {
    /// The backend, by its registered name.
    public var backend: Backend = .socket
    /// Where to listen.
    public var listen: IPEndpoint
    /// Worker threads, each with its own socket (`SO_REUSEPORT`) or queue, pool and service.
    public var workers: Int = 1
    /// CPUs to pin workers to, in order (worker `i` takes `cpus[i % cpus.count]`); empty for no pinning.
    public var cpus: [Int] = []
    /// UDP GSO on send (socket and io_uring backends).
    public var segmentationOffload: Bool = false
    /// UDP GRO on receive (socket backend).
    public var receiveOffload: Bool = false
    /// `SO_RCVBUF`/`SO_SNDBUF` of the socket and io_uring backends' sockets, in bytes; `nil`
    /// keeps the kernel's default (`net.core.rmem_default`). 4 MiB holds bursts of large
    /// datagrams; an overloaded small-datagram service reads a shorter queue from cache.
    public var socketBufferBytes: Int? = 4 << 20
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
    /// For ``Backend/tun`` and ``Backend/tap``: the device and the kernel's addresses on it. Workers follow the queues.
    public var tun: TUNBackendConfiguration?
    /// Whether ``UDPServer/runBlocking(for:progressInterval:progress:hangup:)`` stops on SIGINT, SIGTERM, SIGHUP and SIGQUIT
    /// (they are then blocked in the thread that makes the server and in its workers, and taken with `sigtimedwait`).
    /// The async ``UDPServer/run()`` takes no signals: turn this off there and let something else
    /// own them (swift-service-lifecycle's `ServiceGroup`), or the threads of Swift's concurrency
    /// pool, which do not block them, end the process at the first one.
    public var handlesSignals: Bool = true
    /// Whether io_uring workers log, when they stop, their ring's setup and the kernel ops it used.
    public var describesRings: Bool = true
    /// Where the server, its workers and their ports report fallbacks and failures; silent by default.
    public var logger: Logger = .disabled

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
    /// Its host stage's counters, for a worker with a host in front of the UDP stage (TUN, TAP).
    public var host: HostCounters?
    /// Its service's own counters (`UDPService/counterFields`).
    public var service: [(String, UInt64)] = []
    /// Where its frames were at the end: all must be back.
    public var frames: FrameTally
    /// Why the worker stopped before it was asked to, if it did.
    public var failure: SystemCallError?

    /// A report.
    public init(index: Int, port: PortCounters, stage: UDPStageCounters, host: HostCounters? = nil, frames: FrameTally,
                failure: SystemCallError? = nil) {
        self.index = index
        self.port = port
        self.stage = stage
        self.host = host
        self.frames = frames
        self.failure = failure
    }
}

/// A UDP service running on worker threads over one backend: the runtime's front door.
///
/// ```swift
/// var configuration = UDPServerConfiguration(listen: IPEndpoint("0.0.0.0:9000")!)
/// configuration.handlesSignals = false
/// let server = try UDPServer(configuration: configuration) { _ in UDPEchoService() }
/// try await server.run()   // until the task is cancelled; or `server.runBlocking(for:)` on a thread
/// print(server.summary())
/// ```
///
/// It is also a swift-service-lifecycle `Service`, so a `ServiceGroup` can run it next to an
/// HTTP server and stop it on SIGTERM.
public final class UDPServer<Service: UDPService>: Sendable {
    /// The configuration.
    public let configuration: UDPServerConfiguration
    /// The backend the workers run on.
    public let backend: any UDPBackend
    /// One state per worker.
    public let states: [WorkerState]
    /// The address the first worker bound (with the kernel's port when 0 was asked for).
    public var boundEndpoint: IPEndpoint { bound.withLock { $0 } ?? configuration.listen }
    private let bound = Locked<IPEndpoint?>(nil)
    private let threads: Mutex<[WorkerThread]>
    private let reports: Locked<[WorkerReport]>
    private let finished = Atomic<Bool>(false)
    private let started: Instant

    /// Starts the workers on the backend registered under ``UDPServerConfiguration/backend``,
    /// each making its own service with `makeService(workerIndex)`, and returns once all are
    /// receiving.
    ///
    /// - Throws: ``RuntimeError`` naming the first worker that could not start and why (its
    ///   ``RuntimeError/cause`` holds the system call's error).
    public convenience init(configuration: UDPServerConfiguration,
                            makeService: @escaping @Sendable (Int) -> Service) throws(RuntimeError) {
        guard let backend = UDPBackendRegistry.backend(named: configuration.backend.rawValue) else {
            throw RuntimeError("no backend named '\(configuration.backend)'; registered: "
                               + UDPBackendRegistry.names.joined(separator: ", "))
        }
        try self.init(configuration: configuration, backend: backend, makeService: makeService)
    }

    /// Starts the workers on `backend`, whatever ``UDPServerConfiguration/backend`` says.
    public init(configuration: UDPServerConfiguration, backend: any UDPBackend.Type,
                makeService: @escaping @Sendable (Int) -> Service) throws(RuntimeError) {
        self.configuration = configuration
        reports = Locked([])
        threads = Mutex([])
        started = MonotonicTimeSource().now()
        // Signals must be blocked before the workers start, so only `run` receives them.
        if configuration.handlesSignals { SignalWaiter.block(SignalWaiter.stopping) }
        let instance = try backend.init(configuration: configuration)
        self.backend = instance
        states = (0..<instance.workerCount).map { WorkerState(index: $0) }
        do {
            try startWorkers(makeService)
        } catch {
            // Workers that did start would keep the port and its traffic: stop them first.
            stop()
            throw error
        }
    }

    private func startWorkers(_ makeService: @escaping @Sendable (Int) -> Service) throws(RuntimeError) {
        let (backend, bound, reports) = (self.backend, self.bound, self.reports)
        var listen = configuration.listen
        let cpus = configuration.cpus
        for (index, state) in states.enumerated() {
            let workerListen = listen
            let cpu = cpus.isEmpty ? nil : cpus[index % cpus.count]
            let thread: WorkerThread
            do throws(SystemCallError) {
                thread = try WorkerThread(name: "sluice-w\(index)", cpu: cpu, logger: configuration.logger) {
                    do throws(SystemCallError) {
                        let report = try backend.runWorker(
                            index: index, listen: workerListen, service: makeService(index), state: state,
                            bound: { endpoint in bound.withLock { if $0 == nil { $0 = endpoint } } })
                        reports.withLock { $0.append(report) }
                        if let failure = report.failure { state.markFailed(failure) } else { state.markFinished() }
                    } catch {
                        state.markFailed(error)
                    }
                }
            } catch {
                throw RuntimeError(error, context: "starting worker \(index)")
            }
            threads.withLock { $0.append(thread) }
            try Self.waitUntilStarted(state)
            // Port 0 means "any": the other workers must join the port the first one got.
            if index == 0, let endpoint = bound.withLock({ $0 }) { listen = endpoint }
        }
    }

    private static func waitUntilStarted(_ state: WorkerState) throws(RuntimeError) {
        var waited = 0
        while state.currentPhase == .starting {
            usleep(1000)
            waited += 1
            if waited > 10_000 { throw RuntimeError("worker \(state.index) did not start within 10 s") }
        }
        if state.currentPhase == .failed {
            throw state.failure ?? RuntimeError("worker \(state.index) failed")
        }
    }

    /// A server dropped without a stop stops its workers and closes its sockets (a failure between
    /// making it and running it would otherwise leave them serving).
    deinit { stop() }

    /// Asks every worker to stop and waits for them; then the backend gives back what it took.
    /// Safe to call more than once.
    public func stop() {
        for state in states { state.requestStop() }
        let joined = threads.withLock { threads -> [WorkerThread] in
            defer { threads = [] }
            return threads
        }
        for thread in joined { thread.join() }
        if !finished.exchange(true, ordering: .acquiringAndReleasing) { backend.finish() }
    }

    /// Runs until SIGINT, SIGTERM, SIGHUP or SIGQUIT (when ``UDPServerConfiguration/handlesSignals``),
    /// or until `duration` has passed, handing `progress` a line every `progressInterval` when
    /// given; then stops the workers. With `hangup`, SIGHUP calls it (its line goes to `progress`)
    /// and serving goes on: for a server whose operators send SIGHUP to reload, as to Knot or NSD.
    ///
    /// - Throws: the first worker's failure.
    public func runBlocking(for duration: Duration? = nil, progressInterval: Duration? = nil,
                            progress: (String) -> Void = { _ in }, hangup: (() -> String)? = nil) throws(RuntimeError) {
        let clock = MonotonicTimeSource()
        let deadline = duration.map { clock.now() + $0 }
        var lastReport = clock.now()
        var last = totals()
        let signals = SignalWaiter(configuration.handlesSignals ? SignalWaiter.stopping : [])
        while true {
            let now = clock.now()
            if let deadline, now >= deadline { break }
            var wait = Duration.milliseconds(200)
            if let deadline { wait = min(wait, deadline - now) }
            if let signal = signals.wait(for: wait) {
                if signal == SIGHUP, let hangup {
                    progress(hangup())
                    continue
                }
                progress("sluice: \(SignalWaiter.name(signal)) received, stopping")
                break
            }
            if states.contains(where: { $0.currentPhase == .failed }) { break }
            if let progressInterval, clock.now() - lastReport >= progressInterval {
                let current = totals()
                let seconds = Double((clock.now() - lastReport).nanosecondsClamped) / 1e9
                let rx = Double(current.received &- last.received) / seconds
                let tx = Double(current.transmitted &- last.transmitted) / seconds
                // The kernel's drops on the backend's own path (a full XSK ring) too, as the summary has them.
                let kernelDrops = backend.kernelDrops?.reduce(0) { $0 + $1.count } ?? 0
                progress("rx \(Self.rate(rx)) pps  tx \(Self.rate(tx)) pps  drops \(current.dropped + kernelDrops)")
                last = current
                lastReport = clock.now()
            }
        }
        stop()
        try throwFirstFailure()
    }

    /// Runs until the calling task is cancelled (or a swift-service-lifecycle graceful shutdown
    /// begins), then stops the workers. The workers run on their own threads meanwhile; this
    /// task only waits.
    ///
    /// - Throws: the first worker's failure, as soon as it happens.
    public func run() async throws(RuntimeError) {
        while !Task.isCancelled && !Self.shutdownRequested() {
            if states.contains(where: { $0.currentPhase == .failed }) { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        stop()
        try throwFirstFailure()
    }

    private func throwFirstFailure() throws(RuntimeError) {
        if let failed = states.first(where: { $0.currentPhase == .failed }) {
            throw failed.failure ?? RuntimeError("worker \(failed.index) failed")
        }
    }

    /// Totals over all workers from their last published counters.
    public func totals() -> TrafficSnapshot {
        states.reduce(TrafficSnapshot()) { $0 + $1.snapshot }
    }

    /// The workers' final reports (after ``stop()``), in worker order.
    public var workerReports: [WorkerReport] {
        reports.withLock { $0 }.sorted { $0.index < $1.index }
    }

    /// Seconds since the server started.
    public var seconds: Double {
        Double((MonotonicTimeSource().now() - started).nanosecondsClamped) / 1e9
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
        let seconds = max(self.seconds, 1e-9)
        var lines = [
            "sluice udp \(type(of: backend).name) on \(boundEndpoint): \(reports.count) worker(s), "
                + "\(backend.modeDescription), \(String(format2: seconds)) s",
            "  received \(port.receivedPackets) datagrams (\(Self.rate(Double(port.receivedPackets) / seconds)) pps avg), "
                + "sent \(port.transmittedPackets), \(port.receiveCalls + port.transmitCalls) syscalls"
                // Taken without a reply, as the service asked (sockperf's throughput, a discard).
                + (stage.consumed > 0 ? ", consumed without a reply \(stage.consumed)" : ""),
        ]
        var host: HostCounters?
        for r in reports { if let h = r.host { host = host ?? HostCounters(); host?.add(h) } }
        // The host's and the kernel's drops too (an XSK's full RX ring, say), as the metrics and
        // the JSON summary count them: "none" has to mean none.
        let kernelDrops = (backend.kernelDrops ?? []).filter { $0.count > 0 }
            .map { (String($0.cause.filter { $0 != ":" }.map { $0 == " " ? "_" : $0 }), $0.count) }
        let drops = port.fields.filter { $0.0.hasPrefix("drop") && $0.1 > 0 }
            + stage.fields.filter { field in
                (field.0.hasPrefix("malformed") || WorkerSample.stageDrops.contains(field.0)) && field.1 > 0
            }
            + (host?.fields.filter { WorkerSample.hostDrops.contains($0.0) && $0.1 > 0 } ?? [])
            + kernelDrops
        lines.append("  drops: " + (drops.isEmpty ? "none" : drops.map { "\($0.0)=\($0.1)" }.joined(separator: " ")))
        if let host {
            let counted = host.fields.filter { $0.1 > 0 }
            lines.append("  host: " + (counted.isEmpty ? "nothing" : counted.map { "\($0.0)=\($0.1)" }.joined(separator: " ")))
        }
        var service: [(String, UInt64)] = []
        for r in reports {
            for (name, value) in r.service {
                if let index = service.firstIndex(where: { $0.0 == name }) { service[index].1 += value } else { service.append((name, value)) }
            }
        }
        if !service.isEmpty {
            lines.append("  service: " + service.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
        }
        if reports.count > 1 {
            lines.append("  per worker: " + reports.map { "\($0.index): received \($0.port.receivedPackets) sent \($0.port.transmittedPackets)" }
                .joined(separator: ", "))
        }
        if port.coalescedSegments > 0 || port.segmentedPackets > 0 {
            lines.append("  offload: \(port.coalescedSegments) datagrams arrived coalesced (GRO), \(port.segmentedPackets) left segmented (GSO)")
        }
        lines += backend.summaryLines
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
