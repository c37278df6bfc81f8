import SluiceCore
import SluiceURing

/// One serving run of a stream handler on a ``TCPEngine`` of its own, on the calling thread (the
/// one that uses the ring: DEFER_TASKRUN rings are single-issuer): what the servers over the
/// TCP engine (`tcp-echo`, `tls serve`, DNS over TCP) share.
struct StreamServerRun {
    /// The engine, shut down, with its counters.
    let engine: TCPEngine
    /// The endpoint it listened on.
    let bound: IPEndpoint
    /// Where the frames were after the shutdown.
    let frames: FrameTally
    /// Seconds from listening to the end.
    let seconds: Double

    /// Listens on `endpoint`, calls `ready` with the bound endpoint, polls `handler` until
    /// `shouldStop` (asked every `checkInterval`) says so, lets `stopping` end its connections
    /// gracefully (polling up to `grace` while any stays open), tells `graceEnded`, then cancels
    /// whatever is in flight.
    /// With `metrics`, publishes the engine's metrics and what `handlerMetrics` adds every
    /// ``PublishedMetrics/interval``, and once more at the end.
    static func serve<Handler: StreamHandler>(
        _ handler: inout Handler, listen endpoint: IPEndpoint, configuration: TCPEngineConfiguration,
        checkInterval: Duration, metrics: PublishedMetrics? = nil,
        handlerMetrics: (borrowing Handler, inout MetricsSnapshot) -> Void = { _, _ in },
        stopping: (inout Handler, TCPEngine) -> Void = { _, _ in }, grace: Duration = .seconds(1),
        graceEnded: (inout Handler) -> Void = { _ in },
        ready: (IPEndpoint) -> Void, shouldStop: () -> Bool
    ) throws(SystemCallError) -> StreamServerRun where Handler.Transport == TCPEngine {
        let engine = try TCPEngine(configuration: configuration)
        let (_, bound) = try engine.listen(on: endpoint)
        ready(bound)
        let clock = ContinuousClock()
        let start = clock.now
        var nextSample = start
        func publish() {
            guard let metrics else { return }
            var snapshot = MetricsSnapshot()
            engine.collectMetrics(into: &snapshot)
            handlerMetrics(handler, &snapshot)
            metrics.publish(snapshot)
        }
        // `shouldStop` is asked once a check interval, not once a poll: under load a poll returns
        // every few microseconds, and the question (a `sigtimedwait`) would be a syscall each time.
        var nextCheck = start
        while true {
            let now = clock.now
            if now >= nextCheck {
                if shouldStop() { break }
                nextCheck = now + checkInterval
            }
            try engine.poll(&handler, timeout: checkInterval)
            if metrics != nil, clock.now >= nextSample {
                publish()
                nextSample = clock.now + PublishedMetrics.interval
            }
        }
        stopping(&handler, engine)
        let graceEnd = clock.now + grace
        while engine.openConnections > 0, clock.now < graceEnd {
            try engine.poll(&handler, timeout: .milliseconds(20))
        }
        graceEnded(&handler)
        let frames = engine.shutdown(&handler)
        publish()
        let elapsed = clock.now - start
        return StreamServerRun(engine: engine, bound: bound, frames: frames,
                               seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}

extension TCPEngine {
    /// The engine's counters as `sluice_tcp_*` metrics, its open connections as
    /// `sluice_tcp_open_connections`, and its ring's `io_uring_enter` calls as
    /// `sluice_uring_enters_total`.
    func collectMetrics(into snapshot: inout MetricsSnapshot) {
        let labels = [("backend", "uring")]
        let fields: [(String, UInt64)] = [
            ("connections_accepted", counters.accepted), ("connections_rejected", counters.rejected),
            ("connections_connected", counters.connected), ("connections_closed", counters.closed),
            ("received_bytes", counters.receivedBytes), ("received_chunks", counters.receivedChunks),
            ("sent_bytes", counters.sentBytes), ("sends", counters.sends), ("zero_copy_sends", counters.zeroCopySends),
            ("receive_starved", counters.receiveStarved), ("receive_pauses", counters.receivePauses),
            ("idle_closed", counters.idleClosed), ("accept_pauses", counters.acceptPauses),
            ("connect_timeouts", counters.connectTimeouts), ("deadline_closed", counters.deadlineClosed),
            ("evicted", counters.evicted),
        ]
        for (field, value) in fields { snapshot.counter("sluice_tcp_\(field)_total", value, labels) }
        let open = counters.accepted + counters.connected - min(counters.closed, counters.accepted + counters.connected)
        snapshot.gauge("sluice_tcp_open_connections", Double(open), labels)
        snapshot.counter("sluice_uring_enters_total", enterCalls, labels)
    }
}
