import SluiceCore

/// The loop every worker runs: receive a batch, run the stage, transmit its output, reclaim
/// finished frames. Generic over port and stage, so every call in it is direct.
public enum WorkerLoop {
    /// The most transmits after one receive while the stage stays due: 64 batches, enough for
    /// a host stage's whole queue of fragments (``HostStage/waitingCapacity``) in batches of 8 or more.
    @usableFromInline static let outputRounds = 64

    /// Receives at most this many batches after ``run(port:stage:pool:state:batchCapacity:sample:update:quiesce:)``'s
    /// `quiesce`: far more than an AF_XDP RX ring holds, so the ring runs dry first.
    @usableFromInline static let drainRounds = 1024

    /// Runs until `state` asks to stop, then returns where the pool's frames are.
    ///
    /// Timers: the stage's `Stage/pollTimeout()` is checked after every receive, which
    /// returns at least every port receive timeout. `sample` is called every
    /// ``WorkerState/sampleInterval`` to publish what metrics read, and `update` then too, to
    /// change the stage between batches; the port's totals are published after every batch.
    /// `quiesce`, when given, runs once the stop is asked and must stop what feeds the port
    /// (an XDP program's redirect to this socket); the loop then serves what is already queued
    /// at the port until a receive finds nothing, so no packet that reached it goes uncounted.
    @inlinable
    public static func run<P: Port & ~Copyable, S: Stage & ~Copyable>(
        port: inout P, stage: inout S, pool: FramePool, state: WorkerState,
        batchCapacity: Int = PacketBatch.defaultCapacity,
        sample: (borrowing P, borrowing S) -> Void = { _, _ in },
        update: (inout S) -> Void = { _ in },
        quiesce: (() -> Void)? = nil
    ) throws(SystemCallError) -> FrameTally {
        let clock = MonotonicTimeSource()
        var nextSample = clock.now()
        var received = PacketBatch(pool: pool, capacity: batchCapacity)
        var output = PacketBatch(pool: pool, capacity: batchCapacity)
        var drained = -1   // batches received since `quiesce`; -1 while serving
        while true {
            if drained < 0, state.stopRequested {
                guard let quiesce else { break }
                quiesce()
                drained = 0
            }
            let count = try port.receive(into: &received)
            let now = clock.now()
            if count > 0 {
                stage.handle(&received, output: &output, now: now)
            }
            // A stage with more output than one batch (a reply in fragments) is due again at
            // once; a few rounds, then the port's turn again.
            for _ in 0..<Self.outputRounds {
                if let deadline = stage.pollTimeout(), deadline <= now, !output.isFull {
                    stage.handleTimeout(now: now, output: &output)
                }
                guard !output.isEmpty else { break }
                try port.transmit(&output)
            }
            _ = port.reclaim()
            state.publish(port.counters)
            if now >= nextSample {
                sample(port, stage)
                update(&stage)
                nextSample = now + WorkerState.sampleInterval
            }
            if drained >= 0 {
                drained += 1
                if count == 0 || drained >= Self.drainRounds { break }
            }
        }
        port.finishTransmits(timeout: .milliseconds(500))
        state.publish(port.counters)
        return pool.tally(held: received.count + output.count + port.framesHeld + stage.framesHeld)
    }
}
