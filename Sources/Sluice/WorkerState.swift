#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import Synchronization
import SluiceCore
import SluiceHost
import SluiceSystem
import SluiceUDP

/// What a worker shares with its controller: a stop flag the controller sets, and live
/// counters the worker publishes once per batch (relaxed atomics, no locks).
public final class WorkerState: Sendable {
    /// The worker's number.
    public let index: Int
    @usableFromInline let stopFlag = Atomic<Bool>(false)
    let receivedPackets = Atomic<UInt64>(0)
    let transmittedPackets = Atomic<UInt64>(0)
    let receivedBytes = Atomic<UInt64>(0)
    let drops = Atomic<UInt64>(0)
    let calls = Atomic<UInt64>(0)
    let phase = Atomic<Int>(Phase.starting.rawValue)
    let failureError = Mutex<RuntimeError?>(nil)
    let latest = Mutex<WorkerSample?>(nil)
    let thread = Atomic<Int32>(0)

    /// Where a worker is in its life.
    public enum Phase: Int, Sendable {
        case starting, running, failed, finished
    }

    /// Creates the state of worker `index`.
    public init(index: Int) { self.index = index }

    /// Asks the worker to stop after its current batch.
    public func requestStop() { stopFlag.store(true, ordering: .relaxed) }

    /// Whether a stop was asked for.
    @inlinable
    public var stopRequested: Bool { stopFlag.load(ordering: .relaxed) }

    /// The worker's phase.
    public var currentPhase: Phase { Phase(rawValue: phase.load(ordering: .acquiring)) ?? .failed }

    /// Why the worker failed, if it did.
    public var failure: RuntimeError? { failureError.withLock { $0 } }

    /// Marks the worker running (its port is open), on the worker's own thread.
    public func markRunning() {
        thread.store(sluice_thread_id(), ordering: .relaxed)
        phase.store(Phase.running.rawValue, ordering: .releasing)
    }

    /// Marks the worker finished.
    public func markFinished() {
        thread.store(0, ordering: .relaxed)
        phase.store(Phase.finished.rawValue, ordering: .releasing)
    }

    /// Marks the worker failed, with the reason.
    public func markFailed(_ error: RuntimeError) {
        failureError.withLock { $0 = error }
        thread.store(0, ordering: .relaxed)
        phase.store(Phase.failed.rawValue, ordering: .releasing)
    }

    /// Marks the worker failed by a system call.
    public func markFailed(_ error: SystemCallError) {
        markFailed(RuntimeError(error, context: "worker \(index)"))
    }

    /// Publishes the port's counters for live progress.
    @inlinable
    public func publish(_ counters: PortCounters) {
        publishCounters(counters)
    }

    @usableFromInline
    func publishCounters(_ counters: PortCounters) {
        receivedPackets.store(counters.receivedPackets, ordering: .relaxed)
        transmittedPackets.store(counters.transmittedPackets, ordering: .relaxed)
        receivedBytes.store(counters.receivedBytes, ordering: .relaxed)
        drops.store(counters.dropped, ordering: .relaxed)
        calls.store(counters.receiveCalls &+ counters.transmitCalls, ordering: .relaxed)
    }

    /// How often a worker publishes a ``WorkerSample``: often enough for a live view that redraws
    /// once a second, rare enough to cost nothing next to the packets.
    public static let sampleInterval = Duration.milliseconds(100)

    /// Publishes every counter of the worker, for metrics (see ``sampleInterval``).
    public func publish(_ sample: WorkerSample) {
        latest.withLock { $0 = sample }
    }

    /// The last ``WorkerSample`` published, if any.
    public var sample: WorkerSample? { latest.withLock { $0 } }

    /// CPU seconds the worker's thread has used (user and system, from
    /// `/proc/self/task/TID/stat`); `nil` before it runs or after it ends.
    public var cpuSeconds: Double? {
        let id = thread.load(ordering: .relaxed)
        guard id > 0, let stat = TextFile.read("/proc/self/task/\(id)/stat"),
              let end = stat.lastIndex(of: ")") else { return nil }
        // After the command name in parentheses: state is field 3, utime 14 and stime 15.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The last published totals.
    public var snapshot: TrafficSnapshot {
        TrafficSnapshot(
            received: receivedPackets.load(ordering: .relaxed), transmitted: transmittedPackets.load(ordering: .relaxed),
            receivedBytes: receivedBytes.load(ordering: .relaxed), dropped: drops.load(ordering: .relaxed),
            calls: calls.load(ordering: .relaxed))
    }
}

/// Live totals of one worker or several.
public struct TrafficSnapshot: Sendable, Equatable {
    /// Packets received.
    public var received: UInt64 = 0
    /// Packets sent.
    public var transmitted: UInt64 = 0
    /// Bytes received.
    public var receivedBytes: UInt64 = 0
    /// Packets dropped by the port.
    public var dropped: UInt64 = 0
    /// The port's receive and transmit calls (system calls, or `io_uring_enter`s).
    public var calls: UInt64 = 0

    /// The sum of two snapshots.
    public static func + (a: TrafficSnapshot, b: TrafficSnapshot) -> TrafficSnapshot {
        TrafficSnapshot(received: a.received + b.received, transmitted: a.transmitted + b.transmitted,
                        receivedBytes: a.receivedBytes + b.receivedBytes, dropped: a.dropped + b.dropped,
                        calls: a.calls + b.calls)
    }
}

/// Every counter of one worker at one moment, published by the worker every
/// ``WorkerState/sampleInterval`` for metrics.
public struct WorkerSample: Sendable {
    /// Its port's counters.
    public var port: PortCounters
    /// Its UDP stage's counters.
    public var stage: UDPStageCounters
    /// Its host stage's counters (TUN, TAP).
    public var host: HostCounters?
    /// Its service's counters (`UDPService/counterFields`).
    public var service: [(String, UInt64)]

    /// A sample.
    public init(port: PortCounters, stage: UDPStageCounters, host: HostCounters? = nil, service: [(String, UInt64)] = []) {
        self.port = port
        self.stage = stage
        self.host = host
        self.service = service
    }
}
