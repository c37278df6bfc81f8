import Synchronization
import SluiceCore

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
    let phase = Atomic<Int>(Phase.starting.rawValue)
    let failureError = Mutex<RuntimeError?>(nil)

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

    /// Marks the worker running (its port is open).
    public func markRunning() { phase.store(Phase.running.rawValue, ordering: .releasing) }

    /// Marks the worker finished.
    public func markFinished() { phase.store(Phase.finished.rawValue, ordering: .releasing) }

    /// Marks the worker failed, with the reason.
    public func markFailed(_ error: RuntimeError) {
        failureError.withLock { $0 = error }
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
        drops.store(counters.droppedNoFrame + counters.droppedTruncated + counters.droppedTransmit, ordering: .relaxed)
    }

    /// The last published totals.
    public var snapshot: TrafficSnapshot {
        TrafficSnapshot(
            received: receivedPackets.load(ordering: .relaxed), transmitted: transmittedPackets.load(ordering: .relaxed),
            receivedBytes: receivedBytes.load(ordering: .relaxed), dropped: drops.load(ordering: .relaxed))
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

    /// The sum of two snapshots.
    public static func + (a: TrafficSnapshot, b: TrafficSnapshot) -> TrafficSnapshot {
        TrafficSnapshot(received: a.received + b.received, transmitted: a.transmitted + b.transmitted,
                        receivedBytes: a.receivedBytes + b.receivedBytes, dropped: a.dropped + b.dropped)
    }
}
