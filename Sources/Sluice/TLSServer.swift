#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluiceTLS
import SluiceURing

/// What a ``TLSServer`` does with each connection's plaintext.
public enum TLSServeMode: Sendable, Equatable {
    /// Sends every byte back (in records of its own sealing).
    case echo
    /// The bulk-transfer protocol of the reference C benchmark (`tlsbench`): an 8-byte
    /// little-endian length, then that many bytes discarded, then one byte back.
    case sink
    /// The reference benchmark's echo: the 8-byte length kept, every byte after it sent back.
    case benchEcho
    /// Sends these bytes to each client, then close_notify.
    case file([UInt8])
}

/// The application of ``TLSServer``: echo, sink or file on every connection, with an optional
/// KeyUpdate once a connection has received a given number of bytes.
public struct TLSServerApplication: TLSStreamApplication {
    public typealias Transport = TCPEngine

    /// What each connection does.
    public let mode: TLSServeMode
    /// Sends a KeyUpdate (asking the peer for one) after this many plaintext bytes in, once per connection.
    public let keyUpdateAfter: Int?
    /// Connections that ended with an error, by the error's text (first 8 kept).
    public private(set) var failures: [String] = []
    /// Connections served to the end.
    public private(set) var completed = 0
    /// Connections a stop cut before their file, or the echo of what they had sent, was
    /// whole: reset, with no close_notify that would pass the part for the whole.
    public private(set) var cutShort = 0
    /// Connections still open when a stop's grace ended: their peers had not closed.
    public private(set) var closedAtStop = 0
    /// Connections the transport ended under TLS (a reset, a failed receive or send, no frames).
    public private(set) var transportFailures = 0
    /// Established connections the idle timeout ended (the engine's `idleClosed` counts any).
    public private(set) var idleClosed = 0
    /// Established connections closed to make room for new ones, the table full (the engine's `evicted` counts any).
    public private(set) var closedForRoom = 0
    private var states: [StreamID: State] = [:]

    struct State {
        var pending: [UInt8] = []
        var received = 0
        var benchTotal: UInt64?
        var header: [UInt8] = []
        var acknowledged = false
        var fileSent = 0
        var fileClosed = false
        var keyUpdated = false
        var paused = false
    }

    /// Echo bytes `writer` takes now: a record for each frame the pool can spare beyond those
    /// kept for receiving and a share for another connection (the engine's send budget), one at
    /// least while it holds none. Frames come back only as the peer reads, so peers that send and
    /// never read cannot take the frames the others need.
    static func echoRoom(_ writer: TLSWriter<TCPEngine>) -> Int {
        let spare = writer.transport.pool.freeCount - writer.reservedFrames - writer.transport.sendBudget
        return max(writer.framesHeld == 0 ? 1 : 0, spare) * writer.engine.maximumContent
    }

    /// Echo bytes waiting for frames above which a connection stops receiving.
    static let pendingHighWater = 1 << 20
    /// Records of a file one connection has in flight at most: under half the transport's send
    /// budget, so it never stops receiving and a close_notify, a KeyUpdate or a bad record from
    /// the client is acted on mid-file. Two: a send completes once the kernel has the bytes, so
    /// the socket buffer, not the frames, carries the window; frames held by clients that stopped
    /// reading stay held, and at two each, twenty such clients hold forty, not the whole pool.
    static let fileRecordsInFlight = 2

    /// An application in `mode`.
    public init(mode: TLSServeMode, keyUpdateAfter: Int? = nil) {
        self.mode = mode
        self.keyUpdateAfter = keyUpdateAfter
    }

    public mutating func established(_ stream: StreamID, writer: TLSWriter<TCPEngine>) {
        states[stream] = State()
        if case .file = mode { writable(stream, writer: writer) }
    }

    public mutating func received(_ plaintext: UnsafeMutableRawBufferPointer, on stream: StreamID, writer: TLSWriter<TCPEngine>) {
        // Taken out while it changes, so its buffers are not copied on write.
        guard var state = states.removeValue(forKey: stream) else { return }
        state.received += plaintext.count
        if let keyUpdateAfter, !state.keyUpdated, state.received >= keyUpdateAfter {
            state.keyUpdated = true
            writer.updateKeys(requestPeerUpdate: true)
        }
        var body = UnsafeRawBufferPointer(plaintext)
        if mode == .sink || mode == .benchEcho, state.benchTotal == nil {
            // The bench protocol's 8-byte little-endian length comes first, and is not echoed.
            let take = min(8 - state.header.count, body.count)
            state.header += body.prefix(take)
            body = UnsafeRawBufferPointer(rebasing: body[take...])
            if state.header.count == 8 {
                state.benchTotal = state.header.reversed().reduce(0) { $0 << 8 | UInt64($1) }
                state.received = body.count
            }
        }
        switch mode {
        case .echo, .benchEcho:
            if state.pending.isEmpty {
                let sent = writer.send(UnsafeRawBufferPointer(rebasing: body.prefix(Self.echoRoom(writer))))
                if sent < body.count { state.pending += body[sent...] }
            } else {
                state.pending += body
            }
            // A peer that sends faster than it reads is held back by TCP, not by our memory: as
            // soon as its share of frames is out, or past the high-water mark.
            if !state.paused && !state.pending.isEmpty && (Self.echoRoom(writer) == 0 || state.pending.count > Self.pendingHighWater) {
                state.paused = true
                writer.pauseReceiving()
            }
        case .sink:
            if let total = state.benchTotal, UInt64(state.received) >= total, !state.acknowledged {
                state.acknowledged = true
                var ack: UInt8 = 1
                _ = withUnsafeBytes(of: &ack) { writer.send($0) }
            }
        case .file:
            break
        }
        states[stream] = state
    }

    public mutating func readClosed(_ stream: StreamID, writer: TLSWriter<TCPEngine>) {
        // TLS 1.2 answers at once, what was not sent yet discarded: the rest of a file, echo
        // bytes waiting for frames (RFC 5246 7.2.1, as gnutls-serv answers). In TLS 1.3 the
        // peer's close_notify ends its direction only: a file goes on to its end, which closes,
        // and an echo sends what it has, then closes.
        if writer.negotiated?.version == .tls12 {
            states[stream]?.pending = []
            states[stream]?.fileClosed = true
            writer.close()
            return
        }
        if case .file = mode { return }
        if states[stream]?.pending.isEmpty ?? true {
            writer.close()
        }
    }

    public mutating func writable(_ stream: StreamID, writer: TLSWriter<TCPEngine>) {
        // Taken out while it changes, so its buffers are not copied on write.
        guard var state = states.removeValue(forKey: stream) else { return }
        switch mode {
        case .echo, .benchEcho:
            if !state.pending.isEmpty {
                let room = Self.echoRoom(writer)
                let sent = state.pending.withUnsafeBytes { writer.send(UnsafeRawBufferPointer(rebasing: $0.prefix(room))) }
                state.pending.removeFirst(sent)
                if state.pending.isEmpty && writer.engine.isReadClosed { writer.close() }
            }
            if state.paused && state.pending.count < Self.pendingHighWater / 4 {
                state.paused = false
                writer.resumeReceiving()
            }
        case .file(let bytes):
            if state.fileSent < bytes.count && !state.fileClosed {
                let limit = min(Self.fileRecordsInFlight, max(1, writer.transport.sendBudget / 2))
                let room = max(0, limit - writer.framesHeld) * writer.engine.maximumContent
                let end = min(bytes.count, state.fileSent + room)
                if end > state.fileSent {
                    state.fileSent += bytes.withUnsafeBytes { writer.send(UnsafeRawBufferPointer(rebasing: $0[state.fileSent..<end])) }
                }
                if state.fileSent < bytes.count { writer.notifyWhenFramesFree() }
            }
            // Once, at the end (at once for an empty file).
            if state.fileSent == bytes.count && !state.fileClosed {
                state.fileClosed = true
                writer.close()
            }
        case .sink:
            break
        }
        states[stream] = state
    }

    /// After a stop's grace: the connections still open (their peers had not closed), taken out
    /// of this application's count (neither completed nor failed: closed at the stop).
    public mutating func takeOpenConnections() {
        closedAtStop += states.count
        states = [:]
    }

    /// At a stop: the connections still sending their file, or with echo bytes waiting for
    /// frames, taken out of this application's count (neither completed nor failed: cut short).
    public mutating func takeUnfinished() -> Set<StreamID> {
        let unfinished: Set<StreamID> = switch mode {
        case .file(let bytes): Set(states.filter { $0.value.fileSent < bytes.count && !$0.value.fileClosed }.keys)
        case .echo, .benchEcho: Set(states.filter { !$0.value.pending.isEmpty }.keys)
        case .sink: []
        }
        for stream in unfinished { states[stream] = nil }
        cutShort += unfinished.count
        return unfinished
    }

    public mutating func closed(_ stream: StreamID, error: TLSConnectionError?) {
        let established = states.removeValue(forKey: stream) != nil
        if let error {
            if failures.count < 8 { failures.append(error.description) }
            // Before the handshake ended (its deadline, a reset) it is a failed handshake,
            // counted as one by the TLS counters, not also a transport failure.
            switch error {
            case .stream(let cause) where established && cause.code == ETIMEDOUT: idleClosed += 1
            case .stream(let cause) where established && cause.code == ECONNABORTED: closedForRoom += 1
            case .stream, .outOfFrames: if established { transportFailures += 1 }
            case .tls, .truncated: break
            }
        } else if established {
            completed += 1
        }
    }
}

/// What a ``TLSServer`` run did.
public struct TLSServerReport: Sendable, CustomStringConvertible {
    /// Where it listened.
    public var endpoint: IPEndpoint
    /// What it served.
    public var mode: String
    /// The TLS handler's counters.
    public var tls: TLSStreamHandler<TLSServerApplication>.Counters
    /// The TCP engine's counters.
    public var tcp: TCPEngineCounters
    /// Connections served to the end.
    public var completed: Int
    /// Connections a stop cut before their file was whole (reset, no close_notify).
    public var cutShort: Int
    /// Connections still open when the stop's grace ended (their peers had not closed).
    public var closedAtStop: Int
    /// Connections the transport ended under TLS.
    public var transportFailures: Int
    /// Established connections the idle timeout ended.
    public var idleClosed: Int
    /// Established connections closed to make room for new ones, the table full.
    public var closedForRoom: Int
    /// The first few errors connections ended with.
    public var failures: [String]
    /// Where the frames were at the end.
    public var frames: FrameTally
    /// Seconds run.
    public var seconds: Double
    /// CPU seconds the process spent (user + system) while serving.
    public var cpuSeconds: Double

    public var description: String {
        let rate = seconds > 0 ? Double(tls.plaintextReceived) / seconds / 1e6 : 0
        var lines = [
            "sluice tls serve (\(mode), user-space records) on \(endpoint): \(tls.handshakes + tls.failedHandshakes) handshakes: "
                + "\(tls.handshakes) completed (\(tls.resumed) resumed"
                + (tls.verifiedPeerCertificates > 0 ? ", \(tls.verifiedPeerCertificates) with a verified client certificate" : "")
                + "), \(tls.failedHandshakes) failed; \(completed) connections completed, "
                + (cutShort > 0 ? "\(cutShort) cut short by the stop (reset with data unsent), " : "")
                + (closedAtStop > 0 ? "\(closedAtStop) still open at the stop (closed after its grace), " : "")
                + "\(String(format1: seconds)) s",
            "  plaintext in \(tls.plaintextReceived) bytes (\(String(format1: rate)) MB/s over the run); TCP sent \(tcp.sentBytes) bytes; "
                + "KeyUpdates received \(tls.keyUpdatesReceived), sent \(tls.keyUpdatesSent); CPU \(String(format1: cpuSeconds * 1000)) ms",
        ]
        if tls.failedConnections + tls.truncatedConnections > 0 || !failures.isEmpty {
            lines.append("  \(tls.failedConnections) connections failed, \(tls.truncatedConnections) cut without close_notify, "
                         + "\(transportFailures) ended by TCP or for want of frames" + (idleClosed > 0 ? ", \(idleClosed) closed idle" : "")
                         + (closedForRoom > 0 ? ", \(closedForRoom) closed to make room" : "")
                         + (failures.isEmpty ? "" : "; first error: \(failures[0])"))
        }
        lines.append("  TCP: \(tcp.sends) sends (\(tcp.zeroCopySends) zero-copy), \(tcp.receivedChunks) chunks in, receive pauses \(tcp.receivePauses), "
                     + "\(tcp.rejected) connections rejected over the limit, "
                     + "re-arms for want of buffers \(tcp.receiveStarved), closed idle \(tcp.idleClosed), "
                     + "closed idlest to make room \(tcp.evicted), "
                     + "handshakes out of time \(tcp.deadlineClosed)")
        lines.append(frames.isBalanced ? "  frames: all returned to their pool" : "  \(frames)")
        return lines.joined(separator: "\n")
    }
}

/// A TLS server on one `TCPEngine`, run on the calling thread: the handshake through OpenSSL,
/// records through Sluice's own record layer, sealed and opened in the engine's frames.
public enum TLSServer {
    /// The engine set-up TLS wants: receive buffers of 64 KiB, so most records arrive whole and
    /// open where they landed (a record split across two buffers is decrypted piece by piece into
    /// the engine's record buffer), and any frame holds a whole sealed record; 512 frames
    /// (32 MiB). Only 16 of them are in the receive ring at a time: the kernel fills the ring's
    /// buffers in turn, so 1 MiB of them stays in a core's L2 cache for the copy and the
    /// decryption after it, where 256 (16 MiB) went cold between turns. Many busy connections
    /// then run the ring dry at times; each re-arms its receive when buffers come back.
    public static func engineConfiguration(_ base: TCPEngineConfiguration = .init()) -> TCPEngineConfiguration {
        var configuration = base
        configuration.frameSize = 65536
        configuration.frameCount = 512
        configuration.receiveBuffers = 16
        // Clients that connect and stay silent (a handshake never sent) must not hold every slot
        // until their handshake timeout: at the limit, the idlest make room.
        configuration.closesIdlestWhenFull = true
        return configuration
    }

    /// Listens on `endpoint`, calls `ready` with the bound endpoint, then serves until
    /// `shouldStop` (asked every `checkInterval`) says so; then closes everything and reports.
    /// With `metrics`, publishes the engine's `sluice_tcp_*` and the handler's `sluice_tls_*`
    /// metrics as it serves.
    public static func run(listen endpoint: IPEndpoint, context: TLSContext, mode: TLSServeMode, keyUpdateAfter: Int? = nil,
                           handshakeTimeout: Duration? = .seconds(10),
                           configuration: TCPEngineConfiguration = TLSServer.engineConfiguration(),
                           checkInterval: Duration = .milliseconds(50), metrics: PublishedMetrics? = nil,
                           ready: (IPEndpoint) -> Void, shouldStop: () -> Bool) throws(SystemCallError) -> TLSServerReport {
        let cpuStart = ProcessCPU.seconds()
        var handler = TLSStreamHandler(application: TLSServerApplication(mode: mode, keyUpdateAfter: keyUpdateAfter),
                                       serverContext: context)
        // Sending stops short of the frames that refill the receive ring once, but never of all
        // the frames outside the ring: a small pool must still send.
        let outsideRing = configuration.frameCount - Int(configuration.receiveBuffers)
        handler.reservedFrames = min(Int(configuration.receiveBuffers), outsideRing / 2)
        handler.handshakeTimeout = handshakeTimeout
        let run = try StreamServerRun.serve(&handler, listen: endpoint, configuration: configuration,
                                            checkInterval: checkInterval, metrics: metrics,
                                            handlerMetrics: { handler, snapshot in
                                                handler.counters.collect(into: &snapshot)
                                                handler.application.collect(into: &snapshot)
                                            },
                                            stopping: { handler, engine in
                                                let unfinished = handler.application.takeUnfinished()
                                                handler.closeAll(transport: engine, resetting: unfinished)
                                            },
                                            graceEnded: { handler in handler.application.takeOpenConnections() },
                                            ready: ready, shouldStop: shouldStop)
        let modeName = switch mode {
        case .echo: "echo"
        case .sink: "sink"
        case .benchEcho: "bench echo"
        case .file(let bytes): "file of \(bytes.count) bytes"
        }
        return TLSServerReport(
            endpoint: run.bound, mode: modeName, tls: handler.counters, tcp: run.engine.counters,
            completed: handler.application.completed, cutShort: handler.application.cutShort,
            closedAtStop: handler.application.closedAtStop,
            transportFailures: handler.application.transportFailures, idleClosed: handler.application.idleClosed,
            closedForRoom: handler.application.closedForRoom,
            failures: handler.application.failures, frames: run.frames,
            seconds: run.seconds, cpuSeconds: ProcessCPU.seconds() - cpuStart)
    }
}

extension TLSServerApplication {
    /// How connections ended, as `sluice_tls_connections_ended_total` by outcome (what the text
    /// summary says; failed and truncated ones are in the handler's counters).
    func collect(into snapshot: inout MetricsSnapshot) {
        let labels = [("backend", "uring")]
        for (outcome, count) in [("completed", completed), ("cut_short", cutShort), ("closed_at_stop", closedAtStop),
                                 ("transport_failure", transportFailures), ("idle", idleClosed), ("evicted", closedForRoom)] {
            snapshot.counter("sluice_tls_connections_ended_total", UInt64(count), labels + [("outcome", outcome)])
        }
    }
}

extension TLSStreamHandler.Counters {
    /// The counters as `sluice_tls_*` metrics.
    func collect(into snapshot: inout MetricsSnapshot) {
        let labels = [("backend", "uring")]
        snapshot.counter("sluice_tls_handshakes_total", handshakes, labels + [("result", "completed")])
        snapshot.counter("sluice_tls_handshakes_total", failedHandshakes, labels + [("result", "failed")])
        snapshot.counter("sluice_tls_resumed_handshakes_total", resumed, labels)
        snapshot.counter("sluice_tls_client_certificates_total", verifiedPeerCertificates, labels)
        snapshot.counter("sluice_tls_plaintext_received_bytes_total", plaintextReceived, labels)
        snapshot.counter("sluice_tls_failed_connections_total", failedConnections, labels)
        snapshot.counter("sluice_tls_truncated_connections_total", truncatedConnections, labels)
        snapshot.counter("sluice_tls_key_updates_total", keyUpdatesReceived, labels + [("direction", "received")])
        snapshot.counter("sluice_tls_key_updates_total", keyUpdatesSent, labels + [("direction", "sent")])
    }
}
