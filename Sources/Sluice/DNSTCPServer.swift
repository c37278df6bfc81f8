#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluiceDNS
import SluiceURing

/// DNS over TCP (RFC 7766) as a stream handler: each message arrives behind its two-byte
/// length, in whatever chunks TCP cut it into; every complete one is answered at once
/// (pipelined, in order; past a few hundred at once the rest wait for the answers to drain),
/// its response sent in a frame of its own behind its length. A response is passed over, as
/// Knot does; a message shorter than a header closes the connection once the answers before it
/// are sent, as does the end of the peer's side; so does a message not whole within
/// ``messageTimeout`` of its first byte (RFC 7766 section 6.2.3; a peer trickling bytes would
/// otherwise hold its connection past any idle timeout).
public struct DNSStreamHandler<Transport: StreamTransport>: StreamHandler {
    /// The responder, with its counters.
    public private(set) var responder: DNSResponder
    /// Connections closed for a message with no answer, or for want of a frame.
    public private(set) var refusedConnections = 0
    /// How long a message may take to arrive whole (Knot's `tcp-io-timeout` is 500 ms).
    public var messageTimeout: Duration = .seconds(1)
    /// A connection's bytes not yet answered: `bytes[start...]`. The answered prefix is dropped
    /// once it is half the buffer, so a long pipeline costs linear time, not a copy per answer.
    struct Pending {
        var bytes: [UInt8] = []
        var start = 0
        var count: Int { bytes.count - start }
        /// The length the next message's prefix gives, if both of its bytes are here.
        var nextLength: Int? { count >= 2 ? Int(bytes[start]) << 8 | Int(bytes[start + 1]) : nil }
    }
    var partial: [StreamID: Pending] = [:]
    /// Streams with a message begun and not whole, its deadline set.
    var arriving: Set<StreamID> = []
    /// Streams not read for now: more than ``pendingLimit`` bytes of whole messages wait for
    /// frames to answer them in (a client that pipelines and does not read its answers).
    var paused: Set<StreamID> = []
    /// Streams whose peer ended its side with whole messages still waiting for frames: closed
    /// once those are answered (a client that sends its queries and shuts down writing gets
    /// every answer, as from Knot).
    var readEnded: Set<StreamID> = []

    /// A handler answering from `authority`, naming itself with `identity` to clients that ask.
    public init(authority: DNSAuthority, identity: DNSServerIdentity = DNSServerIdentity()) {
        responder = DNSResponder(authority: authority)
        responder.identity = identity
    }

    /// A handler answering from the zones `source` has, taking the newest it publishes (a
    /// reload) before the next message.
    public init(source: DNSAuthoritySource, identity: DNSServerIdentity = DNSServerIdentity()) {
        responder = DNSResponder(source: source)
        responder.identity = identity
    }

    public mutating func accepted(_ stream: StreamID, listener: StreamID, transport: Transport) {}

    public mutating func connected(_ stream: StreamID, error: SystemCallError?, transport: Transport) {}

    public mutating func received(_ chunk: consuming Packet, on stream: StreamID, transport: Transport) {
        var pending = partial.removeValue(forKey: stream) ?? Pending()
        if pending.start > 0 && pending.start >= pending.bytes.count / 2 {
            pending.bytes.removeFirst(pending.start)
            pending.start = 0
        }
        pending.bytes += UnsafeRawBufferPointer(start: chunk.dataStart, count: chunk.length)
        transport.release(chunk)
        partial[stream] = pending
        answerQueued(on: stream, transport: transport)
    }

    /// Frames kept free for receiving and for other connections: a connection that has sent
    /// many queries at once waits for its answers to drain before the rest are answered.
    static var reservedFrames: Int { 32 }

    /// Unanswered bytes past which a connection is not read until its answers drain: TCP's
    /// window then holds the client back, instead of the server's memory taking its queries.
    static var pendingLimit: Int { 65536 }

    /// Answers the complete messages waiting on `stream`, while frames last.
    mutating func answerQueued(on stream: StreamID, transport: Transport) {
        guard var pending = partial.removeValue(forKey: stream) else { return }
        var answered = 0
        while let length = pending.nextLength, pending.count - 2 >= length, transport.pool.freeCount > Self.reservedFrames {
            let message = pending.start + 2
            let ok = pending.bytes.withUnsafeBytes { bytes in
                answer(UnsafeRawBufferPointer(rebasing: bytes[message..<(message + length)]), on: stream, transport: transport)
            }
            guard ok else {
                // The answers queued before it still go out, then the connection closes.
                refusedConnections += 1
                readEnded.remove(stream)
                transport.close(stream, abort: false)
                return
            }
            pending.start = message + length
            answered += 1
        }
        let rest = pending.count
        let whole = pending.nextLength.map { rest - 2 >= $0 } ?? false
        if !whole, readEnded.remove(stream) != nil {
            // Nothing more comes: a message begun and not whole never will be.
            transport.close(stream, abort: false)
            return
        }
        if rest > 0 {
            partial[stream] = pending
            // Stopped for want of frames: none of this connection's own may be out to wake it.
            if whole { transport.notifyWhenFramesFree(stream) }
        }
        if whole && rest > Self.pendingLimit {
            if paused.insert(stream).inserted { transport.pauseReceiving(stream) }
        } else if paused.remove(stream) != nil {
            transport.resumeReceiving(stream)
        }
        // The clock runs from a message's first byte until it is whole, not while it waits for frames.
        if rest > 0 && !whole {
            if answered > 0 || !arriving.contains(stream) {
                arriving.insert(stream)
                transport.setDeadline(stream, in: messageTimeout)
            }
        } else if arriving.remove(stream) != nil {
            transport.setDeadline(stream, in: nil)
        }
    }

    /// Answers one message in a new frame and queues it; `false` when the connection should close.
    mutating func answer(_ message: UnsafeRawBufferPointer, on stream: StreamID, transport: Transport) -> Bool {
        guard var frame = transport.pool.allocate() else { return false }
        let start = frame.dataStart + 2
        let capacity = min(frame.capacity - frame.offset - 2, 65535)
        guard message.count <= capacity else {
            transport.release(frame)
            return false
        }
        if let base = message.baseAddress { start.copyMemory(from: base, byteCount: message.count) }
        guard let length = responder.respond(start, length: message.count, capacity: capacity, overTCP: true) else {
            transport.release(frame)
            // Not answered: a response (passed over), or too short to be DNS at all.
            return message.count >= DNSWire.headerLength
        }
        frame.dataStart.storeBytes(of: UInt16(length).bigEndian, as: UInt16.self)
        frame.length = 2 + length
        return transport.send(frame, on: stream)
    }

    public mutating func readClosed(_ stream: StreamID, transport: Transport) {
        if let pending = partial[stream], let length = pending.nextLength, pending.count - 2 >= length {
            readEnded.insert(stream)
            return
        }
        transport.close(stream, abort: false)
    }

    public mutating func sendQueueDrained(_ stream: StreamID, transport: Transport) {
        answerQueued(on: stream, transport: transport)
    }

    public mutating func closed(_ stream: StreamID, error: SystemCallError?, transport: Transport) {
        partial.removeValue(forKey: stream)
        arriving.remove(stream)
        paused.remove(stream)
        readEnded.remove(stream)
    }
}

/// What a ``DNSTCPServer`` run did.
public struct DNSTCPReport: Sendable {
    /// Where it listened.
    public var endpoint: IPEndpoint
    /// The responder's counts.
    public var responder: DNSResponderCounters
    /// The engine's counts (connections, bytes, idle closes).
    public var engine: TCPEngineCounters
    /// Where the frames were at the end.
    public var frames: FrameTally

    /// One line for a summary.
    public var summaryLine: String {
        let counted = responder.fields.filter { $0.1 > 0 }.map { "\($0.0)=\($0.1)" }
        return "  tcp on \(endpoint): \(engine.accepted) connections (\(engine.idleClosed) closed idle, "
            + "\(engine.deadlineClosed) for a message not whole in time, \(engine.evicted) idle ones to make room, "
            + "\(engine.rejected) refused with the table full)"
            + (counted.isEmpty ? "" : ", " + counted.joined(separator: " "))
            + (frames.isBalanced ? "" : ", \(frames)")
    }
}

/// DNS over TCP on a `TCPEngine` (io_uring), run on the calling thread, for the answers
/// that did not fit in UDP (TC) and for clients that prefer TCP.
public enum DNSTCPServer {
    /// Idle connections close after this long (Knot's `tcp-idle-timeout`, RFC 7766 section 6.2.3).
    public static let idleTimeout: Duration = .seconds(10)
    /// Connections open at once. Near it the connections idle longest close to make room (so
    /// clients that connect and stay silent cannot shut the others out), those with a message
    /// half arrived first (idle a quarter second at least); more are refused only while none
    /// has been idle for a sixteenth of ``idleTimeout``.
    public static let maximumConnections = 4096

    /// Listens on `endpoint`, calls `ready` with the bound endpoint, and answers from
    /// `authority` (the newest zones `source` publishes, when given) until `shouldStop` (asked
    /// every `checkInterval`) says so. With `metrics`, publishes the engine's `sluice_tcp_*`
    /// metrics and the responder's counters as `sluice_dns_tcp_*_total` as it serves.
    public static func run(listen endpoint: IPEndpoint, authority: DNSAuthority, reloadingFrom source: DNSAuthoritySource? = nil,
                           identity: DNSServerIdentity = DNSServerIdentity(), checkInterval: Duration = .milliseconds(50),
                           metrics: PublishedMetrics? = nil,
                           ready: (IPEndpoint) -> Void, shouldStop: () -> Bool) throws(SystemCallError) -> DNSTCPReport {
        var configuration = TCPEngineConfiguration()
        // A frame holds a whole 64 KiB response behind its length.
        configuration.frameSize = 66560
        configuration.frameCount = 256
        configuration.receiveBuffers = 128
        configuration.idleTimeout = idleTimeout
        // An idle connection holds no frame, only its slot and descriptor: room for many clients
        // (Knot allows thousands), the descriptor limit raised to match where the hard limit allows.
        configuration.maximumConnections = maximumConnections
        configuration.closesIdlestWhenFull = true
        var files = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files) == 0, files.rlim_cur < rlim_t(maximumConnections + 256) {
            files.rlim_cur = min(files.rlim_max, rlim_t(maximumConnections + 256))
            _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files)
        }
        var handler = source.map { DNSStreamHandler<TCPEngine>(source: $0, identity: identity) }
            ?? DNSStreamHandler<TCPEngine>(authority: authority, identity: identity)
        let run = try StreamServerRun.serve(
            &handler, listen: endpoint, configuration: configuration, checkInterval: checkInterval, metrics: metrics,
            handlerMetrics: { handler, snapshot in
                for (field, value) in handler.responder.counters.fields {
                    snapshot.counter("sluice_dns_tcp_\(field)_total", value, [("backend", "uring")])
                }
            },
            ready: ready, shouldStop: shouldStop)
        return DNSTCPReport(endpoint: run.bound, responder: handler.responder.counters, engine: run.engine.counters, frames: run.frames)
    }
}
