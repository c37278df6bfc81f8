#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets
import SluiceURing

/// The echo application over any stream transport: every received frame goes straight back out
/// on its stream (the same frame, no copy); when the peer shuts its write side, the stream
/// finishes sending and closes.
public struct StreamEchoHandler<Transport: StreamTransport>: StreamHandler {
    /// Connections open now.
    public private(set) var open = 0
    /// Connections that ended with an error.
    public private(set) var failed = 0

    public init() {}

    public mutating func accepted(_ connection: StreamID, listener: StreamID, transport: Transport) {
        open += 1
    }

    public mutating func connected(_ connection: StreamID, error: SystemCallError?, transport: Transport) {
        if error == nil { open += 1 }
    }

    public mutating func received(_ chunk: consuming Packet, on connection: StreamID, transport: Transport) {
        transport.send(chunk, on: connection)
    }

    public mutating func readClosed(_ connection: StreamID, transport: Transport) {
        transport.close(connection, abort: false)
    }

    public mutating func sendQueueDrained(_ connection: StreamID, transport: Transport) {}

    public mutating func closed(_ connection: StreamID, error: SystemCallError?, transport: Transport) {
        open -= 1
        if error != nil { failed += 1 }
    }
}

/// What a ``TCPEchoServer`` run did.
public struct TCPEchoReport: Sendable, CustomStringConvertible {
    /// Where it listened.
    public var endpoint: IPEndpoint
    /// The ring's mode.
    public var mode: URingMode
    /// The engine's counters.
    public var counters: TCPEngineCounters
    /// `io_uring_enter` calls.
    public var enterCalls: UInt64
    /// Connections that ended with an error.
    public var failedConnections: Int
    /// Where the frames were at the end.
    public var frames: FrameTally
    /// Operations still in flight at the end (0 unless the shutdown timed out).
    public var operationsInFlight: Int
    /// Seconds run.
    public var seconds: Double

    public var description: String {
        let rate = seconds > 0 ? Double(counters.receivedBytes) / seconds / 1e6 : 0
        var lines = [
            "sluice tcp-echo uring (\(mode)) on \(endpoint): \(counters.accepted) connections "
                + "(\(counters.rejected) rejected over the limit, \(failedConnections) failed), \(String(format1: seconds)) s",
            "  received \(counters.receivedBytes) bytes in \(counters.receivedChunks) chunks (\(String(format1: rate)) MB/s), "
                + "sent \(counters.sentBytes) bytes in \(counters.sends) sends (\(counters.zeroCopySends) zero-copy)",
            "  io_uring_enter calls: \(enterCalls), receive pauses (frame budget): \(counters.receivePauses), "
                + "re-arms for want of buffers: \(counters.receiveStarved), closed idle: \(counters.idleClosed), "
                + "closed idlest to make room: \(counters.evicted), "
                + "accept pauses for want of descriptors: \(counters.acceptPauses), cancelled at close: \(counters.cancelled)",
        ]
        lines.append(frames.isBalanced && operationsInFlight == 0
                     ? "  frames: all returned to their pool"
                     : "  \(frames), \(operationsInFlight) operations still in flight")
        return lines.joined(separator: "\n")
    }
}

/// A TCP echo server on one `TCPEngine`, run on the calling thread (which must be the one
/// that uses the ring: DEFER_TASKRUN rings are single-issuer).
public enum TCPEchoServer {
    /// Listens on `endpoint`, calls `ready` with the bound endpoint, then echoes until `shouldStop`
    /// (asked every `checkInterval`) says so; then cancels whatever is in flight and reports.
    /// With `metrics`, publishes the engine's `sluice_tcp_*` metrics as it serves, and the
    /// connections that ended with an error as `sluice_tcp_failed_connections_total`.
    public static func run(listen endpoint: IPEndpoint, configuration: TCPEngineConfiguration = .init(),
                           checkInterval: Duration = .milliseconds(50), metrics: PublishedMetrics? = nil,
                           ready: (IPEndpoint) -> Void, shouldStop: () -> Bool) throws(SystemCallError) -> TCPEchoReport {
        var delegate = StreamEchoHandler<TCPEngine>()
        let run = try StreamServerRun.serve(&delegate, listen: endpoint, configuration: configuration,
                                            checkInterval: checkInterval, metrics: metrics,
                                            handlerMetrics: { delegate, snapshot in
                                                snapshot.counter("sluice_tcp_failed_connections_total", UInt64(delegate.failed),
                                                                 [("backend", "uring")])
                                            },
                                            ready: ready, shouldStop: shouldStop)
        return TCPEchoReport(
            endpoint: run.bound, mode: configuration.mode, counters: run.engine.counters, enterCalls: run.engine.enterCalls,
            failedConnections: delegate.failed, frames: run.frames, operationsInFlight: run.engine.operationsInFlight,
            seconds: run.seconds)
    }
}

extension String {
    /// `value` with one decimal.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
