import SluiceCore
import SluiceURing

/// One serving run of a stream handler on a ``TCPEngine`` of its own, on the calling thread (the
/// one that uses the ring: DEFER_TASKRUN rings are single-issuer): what the servers over the
/// TCP engine (`tcp-echo`, `tls serve`) share.
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
    /// `shouldStop` (asked every `checkInterval`) says so, then cancels whatever is in flight.
    static func serve<Handler: StreamHandler>(
        _ handler: inout Handler, listen endpoint: IPEndpoint, configuration: TCPEngineConfiguration,
        checkInterval: Duration, ready: (IPEndpoint) -> Void, shouldStop: () -> Bool
    ) throws(SystemCallError) -> StreamServerRun where Handler.Transport == TCPEngine {
        let engine = try TCPEngine(configuration: configuration)
        let (_, bound) = try engine.listen(on: endpoint)
        ready(bound)
        let clock = ContinuousClock()
        let start = clock.now
        while !shouldStop() {
            try engine.poll(&handler, timeout: checkInterval)
        }
        let frames = engine.shutdown(&handler)
        let elapsed = clock.now - start
        return StreamServerRun(engine: engine, bound: bound, frames: frames,
                               seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}
