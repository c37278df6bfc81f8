import Synchronization
import SluiceCore
import SluiceHost
import SluicePackets
import SluiceUDP

/// One way for datagrams to reach a `UDPService`: a kernel path, its ports, and whatever its
/// workers share (an XDP program and UMEM, say).
///
/// A backend is chosen by name at start (``UDPServerConfiguration/backend``) from
/// ``UDPBackendRegistry``, which the server, `sluice bench` and the command line all consult:
/// adding a backend is one type and one ``UDPBackendRegistry/register(_:)`` call.
///
/// Setup and teardown go through this protocol; the packet loop does not: ``runWorker(index:listen:service:state:bound:)``
/// opens a concrete port and runs ``UDPWorkerLoop/serve(port:pool:service:state:batchCapacity:acceptance:acceptanceUpdate:quiesce:)``,
/// generic over that port, so nothing per packet is dynamic.
public protocol UDPBackend: AnyObject, Sendable {
    /// The name users pick it by (`--backend NAME`), e.g. `"socket"`.
    static var name: String { get }
    /// One line on what it is and what it needs, for help texts.
    static var summary: String { get }
    /// The variants a benchmark measures side by side: by default only the backend as configured;
    /// a backend with modes worth comparing (native and generic XDP) lists each.
    static var variants: [UDPBackendVariant] { get }

    /// Checks `configuration` and sets up what the workers share.
    init(configuration: UDPServerConfiguration) throws(RuntimeError)

    /// How many workers to start (``UDPServerConfiguration/workers``, or one per queue).
    var workerCount: Int { get }

    /// Runs worker `index` on the calling thread until `state` asks it to stop: opens the
    /// worker's port on `listen`, calls `bound` with the address it serves, and serves.
    ///
    /// - Returns: what the worker did, frames accounted.
    ///
    /// Workers reach this through `any UDPBackend`, so nothing specializes it for the service
    /// at the call site: the backends pre-specialize it (`@_specialize`) for the services Sluice
    /// ships, whose per-packet code would otherwise call the service through its witness table
    /// and look up the stage's generic metadata for every packet. Other services run the
    /// generic code.
    func runWorker<Service: UDPService>(index: Int, listen: IPEndpoint, service: Service, state: WorkerState,
                                        bound: (IPEndpoint) -> Void) throws(SystemCallError) -> WorkerReport

    /// Gives back what ``init(configuration:)`` took (an XDP program it attached), once every
    /// worker has stopped.
    func finish()

    /// How the ports run, for summaries and benchmark tables: "kernel socket", "io_uring
    /// (defer-taskrun)", "generic XDP, copy".
    var modeDescription: String { get }

    /// Drops the kernel counted on this backend's own path, by cause (an AF_XDP socket's
    /// full rings); `nil` when the backend has none of its own (sockets: see `/proc/net/snmp`).
    var kernelDrops: [(cause: String, count: UInt64)]? { get }

    /// Lines of its own for the server's summary (program verdicts, socket drop counters).
    var summaryLines: [String] { get }

    /// The receive queue worker `index` serves, for metric labels; `nil` for a worker that is
    /// not tied to a queue.
    func queue(ofWorker index: Int) -> Int?

    /// Appends the backend's own metrics (program verdicts, XSK ring statistics) to `snapshot`;
    /// called from a thread that is not a worker, now and then.
    func collectMetrics(into snapshot: inout MetricsSnapshot)
}

extension UDPBackend {
    public static var variants: [UDPBackendVariant] { [UDPBackendVariant(name: name, backend: name)] }
    public var kernelDrops: [(cause: String, count: UInt64)]? { nil }
    public var summaryLines: [String] { [] }
    public func finish() {}
    public func queue(ofWorker index: Int) -> Int? { nil }
    public func collectMetrics(into snapshot: inout MetricsSnapshot) {}
}

/// A benchmark's view of a backend: a cell name, the backend it runs, and what it sets in the
/// configuration (native or generic XDP).
public struct UDPBackendVariant: Sendable {
    /// The cell name, e.g. `"xdp-native"`.
    public var name: String
    /// The registered backend it runs.
    public var backend: String
    /// What it changes in a configuration that already names an interface and queues.
    public var configure: @Sendable (inout UDPServerConfiguration) -> Void

    /// A variant named `name` running `backend`, configured by `configure`.
    public init(name: String, backend: String, configure: @escaping @Sendable (inout UDPServerConfiguration) -> Void = { _ in }) {
        self.name = name
        self.backend = backend
        self.configure = configure
    }
}

/// The backends a ``UDPServer`` can run on, by name: socket, uring, xdp, tun and tap are there from the
/// start; ``register(_:)`` adds one.
public enum UDPBackendRegistry {
    private static let backends = Mutex<[any UDPBackend.Type]>([SocketBackend.self, URingBackend.self, XDPBackend.self, TUNBackend.self, TAPBackend.self])

    /// Every registered backend, in registration order.
    public static var all: [any UDPBackend.Type] { backends.withLock { $0 } }

    /// Their names.
    public static var names: [String] { all.map { $0.name } }

    /// The backend registered as `name`.
    public static func backend(named name: String) -> (any UDPBackend.Type)? {
        all.first { $0.name == name }
    }

    /// Adds `backend`, replacing one registered under the same name.
    public static func register(_ backend: any UDPBackend.Type) {
        backends.withLock { list in
            list.removeAll { $0.name == backend.name }
            list.append(backend)
        }
    }
}

/// The part of every worker after its port is open: the UDP stage over the port, then the report.
public enum UDPWorkerLoop {
    /// Marks the worker running and serves `service` over `port` until `state` asks to stop,
    /// or the port fails (the interface went away, say): the report then carries the failure,
    /// and still accounts for every frame. `acceptanceUpdate` is asked every
    /// ``WorkerState/sampleInterval``; what it returns replaces the stage's acceptance (the
    /// interface's addresses changed under the server, say). `quiesce`: see
    /// ``WorkerLoop/run(port:stage:pool:state:batchCapacity:sample:update:quiesce:)``.
    @inlinable
    public static func serve<P: Port & ~Copyable, Service: UDPService>(
        port: inout P, pool: FramePool, service: Service, state: WorkerState, batchCapacity: Int,
        acceptance: UDPAcceptance = UDPAcceptance(), acceptanceUpdate: () -> UDPAcceptance? = { nil },
        quiesce: (() -> Void)? = nil
    ) -> WorkerReport {
        var stage = UDPStage(service: service, format: port.format, acceptance: acceptance)
        let (tally, failure) = run(port: &port, stage: &stage, pool: pool, state: state, batchCapacity: batchCapacity, sample: { port, stage in
            state.publish(WorkerSample(port: port.counters, stage: stage.counters, service: stage.service.counterFields))
        }, update: { stage in
            if let fresh = acceptanceUpdate() { stage.acceptance = fresh }
        }, quiesce: quiesce)
        var report = WorkerReport(index: state.index, port: port.counters, stage: stage.counters, frames: tally, failure: failure)
        report.service = stage.service.counterFields
        return report
    }

    /// The same with a host in front of the UDP stage (`HostStage`), for TUN and TAP ports:
    /// the host answers ARP, neighbour solicitations and pings, reassembles fragments and
    /// fragments replies past the MTU.
    @inlinable
    public static func serve<P: Port & ~Copyable, Service: UDPService>(
        port: inout P, pool: FramePool, service: Service, state: WorkerState, batchCapacity: Int,
        acceptance: UDPAcceptance, host: HostConfiguration
    ) -> WorkerReport {
        var stage = HostStage(UDPStage(service: service, format: port.format, acceptance: acceptance),
                              configuration: host, format: port.format, pool: pool, capacity: batchCapacity)
        let (tally, failure) = run(port: &port, stage: &stage, pool: pool, state: state, batchCapacity: batchCapacity) { port, stage in
            state.publish(WorkerSample(port: port.counters, stage: stage.service.counters, host: stage.counters,
                                       service: stage.service.service.counterFields))
        }
        var report = WorkerReport(index: state.index, port: port.counters, stage: stage.service.counters, host: stage.counters,
                                  frames: tally, failure: failure)
        report.service = stage.service.service.counterFields
        return report
    }

    @inlinable
    static func run<P: Port & ~Copyable, S: Stage & ~Copyable>(
        port: inout P, stage: inout S, pool: FramePool, state: WorkerState, batchCapacity: Int,
        sample: (borrowing P, borrowing S) -> Void, update: (inout S) -> Void = { _ in }, quiesce: (() -> Void)? = nil
    ) -> (FrameTally, SystemCallError?) {
        state.markRunning()
        defer {
            state.publish(port.counters)
            sample(port, stage)
        }
        do throws(SystemCallError) {
            return (try WorkerLoop.run(port: &port, stage: &stage, pool: pool, state: state, batchCapacity: batchCapacity,
                                       sample: sample, update: update, quiesce: quiesce), nil)
        } catch {
            // The loop's batches gave their frames back as it unwound.
            return (pool.tally(held: port.framesHeld + stage.framesHeld), error)
        }
    }
}

extension UDPServerConfiguration {
    /// Checks that a backend running ``workers`` workers has at least one.
    public func requireWorkers(for backend: String) throws(RuntimeError) {
        guard workers > 0 else { throw RuntimeError("the \(backend) backend needs at least one worker") }
    }

    /// One worker's pool for a datagram port: ``framesPerWorker`` frames of `frameSize` bytes,
    /// each with room for its `DatagramHeader`. Frames that take 64 KiB datagrams mostly hold
    /// small ones: their pages are mapped as they are first used, not all at start (32 MiB and
    /// 35 ms a worker).
    public func datagramPool(frameSize: Int) throws(SystemCallError) -> FramePool {
        try FramePool(frameCount: framesPerWorker, frameSize: frameSize, headroom: DatagramHeader.minimumHeadroom,
                      prefaulted: frameSize <= 4096)
    }
}
