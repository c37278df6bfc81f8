import SluiceCore

/// Why a TLS connection over a stream ended other than by close_notify both ways.
public enum TLSConnectionError: Error, Sendable, CustomStringConvertible {
    /// The handshake or the record layer failed (an alert sent or received).
    case tls(TLSError)
    /// The stream failed under TLS.
    case stream(SystemCallError)
    /// The peer closed TCP without close_notify: what arrived may be cut short.
    case truncated
    /// No frame was free to send a record in.
    case outOfFrames

    public var description: String {
        switch self {
        case .tls(let error): "\(error)"
        case .stream(let error): "\(error)"
        case .truncated: "the peer closed the connection without close_notify (the data may be truncated)"
        case .outOfFrames: "no frame was free to send a record in; give the transport more frames"
        }
    }
}

/// What a TLS application is told by a ``TLSStreamHandler``: handshakes done, plaintext in
/// order, the peer's close, room to send, and the end. Every call comes on the transport's thread
/// with a ``TLSWriter`` to answer through.
public protocol TLSStreamApplication {
    /// The stream transport under TLS.
    associatedtype Transport: StreamTransport

    /// The handshake of `stream` finished; ``TLSWriter/negotiated`` says what it settled on.
    mutating func established(_ stream: StreamID, writer: TLSWriter<Transport>)
    /// Plaintext arrived, in order; the bytes are valid only during the call.
    mutating func received(_ plaintext: UnsafeMutableRawBufferPointer, on stream: StreamID, writer: TLSWriter<Transport>)
    /// The peer sent close_notify: nothing more will arrive. What the application still sends
    /// goes out; its ``TLSWriter/close()`` (close_notify) then ends the stream, even when the
    /// peer has closed TCP already. Until it calls that, only the transport's idle timeout does.
    mutating func readClosed(_ stream: StreamID, writer: TLSWriter<Transport>)
    /// Everything queued on `stream` has been sent: a good moment to send more.
    mutating func writable(_ stream: StreamID, writer: TLSWriter<Transport>)
    /// A connection is gone (its handshake may not have finished; a listener's end is not told);
    /// `error` says why when it did not end with close_notify both ways.
    mutating func closed(_ stream: StreamID, error: TLSConnectionError?)
}

/// The sending side of one TLS connection, handed to the application with every call: plaintext
/// is sealed straight into pool frames (one record per frame, at most 2^14 bytes each) and queued
/// on the stream behind whatever the engine had to send first.
public struct TLSWriter<Transport: StreamTransport> {
    /// The connection's engine (its state, counters and what the handshake negotiated).
    public let engine: TLSEngine
    /// The stream.
    public let stream: StreamID
    /// The transport.
    public let transport: Transport
    /// Frames left free for receiving: sending stops short of taking them.
    public let reservedFrames: Int

    /// What the handshake settled on.
    public var negotiated: TLSNegotiated? { engine.negotiated }

    /// Frames the stream holds for sending: queued, in flight, or awaiting a zero-copy notification.
    public var framesHeld: Int { transport.framesHeld(on: stream) }

    /// Asks for ``TLSStreamApplication/writable(_:writer:)`` once frames come back to the pool.
    public func notifyWhenFramesFree() { transport.notifyWhenFramesFree(stream) }

    /// Seals and queues as much of `plaintext` as frames allow.
    ///
    /// - Returns: the bytes taken (less than all when the pool runs low: send the rest from
    ///   ``TLSStreamApplication/writable(_:writer:)``, which comes once frames are back), 0 when
    ///   the connection cannot send.
    @discardableResult
    public func send(_ plaintext: UnsafeRawBufferPointer) -> Int {
        guard flush() else {
            transport.notifyWhenFramesFree(stream)
            return 0
        }
        guard engine.canSeal else { return 0 }
        var at = 0
        while at < plaintext.count, transport.pool.freeCount > reservedFrames, var frame = transport.pool.allocate() {
            let room = min(frame.capacity - frame.offset - engine.recordOverhead, engine.maximumContent)
            let count = min(room, plaintext.count - at)
            let length = engine.seal(UnsafeRawBufferPointer(rebasing: plaintext[at..<at + count]), into: frame.dataStart)
            frame.length = length
            transport.send(frame, on: stream)
            at += count
        }
        if at < plaintext.count { transport.notifyWhenFramesFree(stream) }
        return at
    }

    /// Sends what the engine queued (handshake flights, alerts, KeyUpdates) in fresh frames.
    ///
    /// - Returns: false when frames ran out before all of it went.
    @discardableResult
    public func flush() -> Bool {
        while !engine.outbound.isEmpty {
            guard var frame = transport.pool.allocate() else { return false }
            let count = min(engine.outbound.count, frame.capacity - frame.offset)
            engine.outbound.withUnsafeBytes { frame.dataStart.copyMemory(from: $0.baseAddress!, byteCount: count) }
            frame.length = count
            engine.consumeOutbound(count)
            transport.send(frame, on: stream)
        }
        return true
    }

    /// TLS 1.3: sends a KeyUpdate, and asks the peer for one with `requestPeerUpdate`.
    public func updateKeys(requestPeerUpdate: Bool) {
        engine.updateKeys(requestPeerUpdate: requestPeerUpdate)
        flush()
    }

    /// Stops receiving until ``resumeReceiving()``: for an application whose replies cannot leave as fast as data arrives.
    public func pauseReceiving() { transport.pauseReceiving(stream) }

    /// Receives again after ``pauseReceiving()``.
    public func resumeReceiving() { transport.resumeReceiving(stream) }

    /// Sends close_notify and shuts the stream for writing; the peer's data still arrives. With
    /// no frame free for the close_notify, the shutdown waits until one comes back (a FIN
    /// without it would read as a cut).
    public func close() {
        engine.close()
        if flush() { transport.shutdownWrite(stream) } else { transport.notifyWhenFramesFree(stream) }
    }

    /// Closes the stream at once (after sending any alert already queued).
    public func abort() {
        flush()
        transport.close(stream, abort: false)
    }
}

/// TLS over a stream transport: a `StreamHandler` (SluiceCore) that runs one ``TLSEngine`` per connection
/// and hands plaintext to an application. Servers get an engine per accepted stream; a client
/// names the streams it connected with ``expectServer(on:serverName:session:)``.
public struct TLSStreamHandler<Application: TLSStreamApplication>: StreamHandler {
    public typealias Transport = Application.Transport

    /// What the handler counted.
    public struct Counters: Sendable, Equatable {
        /// Handshakes that finished.
        public var handshakes: UInt64 = 0
        /// Handshakes that failed: an alert either way, or the connection ended first (the
        /// handshake timeout, a reset, a peer that closed).
        public var failedHandshakes: UInt64 = 0
        /// Handshakes that resumed a session.
        public var resumed: UInt64 = 0
        /// Handshakes whose peer presented a certificate that verified: a client's, on a server
        /// that asks for them.
        public var verifiedPeerCertificates: UInt64 = 0
        /// Plaintext bytes delivered to the application.
        public var plaintextReceived: UInt64 = 0
        /// Connections that ended with a TLS error after the handshake.
        public var failedConnections: UInt64 = 0
        /// Connections the peer cut without close_notify.
        public var truncatedConnections: UInt64 = 0
        /// KeyUpdates received, over connections that have closed.
        public var keyUpdatesReceived: UInt64 = 0
        /// KeyUpdates sent, over connections that have closed.
        public var keyUpdatesSent: UInt64 = 0
    }

    /// The application.
    public var application: Application
    /// What was counted.
    public private(set) var counters = Counters()
    /// The server side's context (accepted streams), if any.
    public let serverContext: TLSContext?
    /// The client side's context (streams named with ``expectServer(on:serverName:session:)``), if any.
    public let clientContext: TLSContext?
    /// Frames each writer leaves free for receiving.
    public var reservedFrames = 64
    /// How long a handshake may take from the connection's start; `nil` for no limit. The
    /// transport's idle timeout restarts with every byte, so a peer trickling its handshake
    /// would hold a connection (and a place in the table) without this.
    public var handshakeTimeout: Duration? = .seconds(10)
    private var engines: [StreamID: TLSEngine] = [:]
    private var clients: [StreamID: (serverName: String?, session: TLSSession?)] = [:]
    private var errors: [StreamID: TLSConnectionError] = [:]
    /// Connections whose end the application was told before the transport closed them.
    private var ended: Set<StreamID> = []

    /// A handler for `application`, serving with `serverContext` and connecting with `clientContext`.
    public init(application: Application, serverContext: TLSContext? = nil, clientContext: TLSContext? = nil) {
        self.application = application
        self.serverContext = serverContext
        self.clientContext = clientContext
    }

    /// Marks an outgoing `stream` (connecting now) as a TLS client to `serverName`, offering `session`.
    public mutating func expectServer(on stream: StreamID, serverName: String?, session: TLSSession? = nil) {
        clients[stream] = (serverName, session)
    }

    /// The engine of `stream`, while it is open.
    public func engine(of stream: StreamID) -> TLSEngine? { engines[stream] }

    /// Sends close_notify on every established connection and shuts it for writing, after what
    /// is queued: a server's graceful stop, its peers seeing the end rather than a cut. The
    /// streams in `resetting` (what the application had not finished sending) are reset
    /// instead: a close_notify would tell their peers they have it all.
    public func closeAll(transport: Transport, resetting: Set<StreamID> = []) {
        for (stream, engine) in engines where engine.state == .established && !engine.isWriteClosed {
            if resetting.contains(stream) {
                transport.close(stream, abort: true)
            } else {
                TLSWriter(engine: engine, stream: stream, transport: transport, reservedFrames: 0).close()
            }
        }
    }

    /// A writer for `stream`, to send from outside a callback (between polls), while it is open.
    public func writer(for stream: StreamID, transport: Transport) -> TLSWriter<Transport>? {
        engines[stream].map { TLSWriter(engine: $0, stream: stream, transport: transport, reservedFrames: reservedFrames) }
    }

    public mutating func accepted(_ stream: StreamID, listener: StreamID, transport: Transport) {
        guard let serverContext else { return transport.close(stream, abort: true) }
        do throws(TLSError) {
            engines[stream] = try TLSEngine(context: serverContext)
            if let handshakeTimeout { transport.setDeadline(stream, in: handshakeTimeout) }
        } catch {
            errors[stream] = .tls(error)
            transport.close(stream, abort: true)
        }
    }

    public mutating func connected(_ stream: StreamID, error: SystemCallError?, transport: Transport) {
        let client = clients.removeValue(forKey: stream)
        guard error == nil, let client, let clientContext else {
            if let error { application.closed(stream, error: .stream(error)) } else { transport.close(stream, abort: true) }
            return
        }
        do throws(TLSError) {
            let engine = try TLSEngine(context: clientContext, serverName: client.serverName, session: client.session)
            engines[stream] = engine
            if let handshakeTimeout { transport.setDeadline(stream, in: handshakeTimeout) }
            handle(engine.start(), engine: engine, stream: stream, transport: transport)
        } catch {
            errors[stream] = .tls(error)
            transport.close(stream, abort: true)
        }
    }

    public mutating func received(_ chunk: consuming Packet, on stream: StreamID, transport: Transport) {
        guard let engine = engines[stream] else { return transport.release(chunk) }
        let writer = TLSWriter(engine: engine, stream: stream, transport: transport, reservedFrames: reservedFrames)
        var delivered = 0
        var announced = engine.negotiated != nil
        let events = engine.receive(chunk.data) { plaintext in
            // Data that came with the peer's last handshake flight follows the news of the handshake.
            if !announced {
                announced = true
                announce(engine: engine, stream: stream, writer: writer, transport: transport)
            }
            delivered += plaintext.count
            application.received(plaintext, on: stream, writer: writer)
        }
        transport.release(chunk)
        counters.plaintextReceived += UInt64(delivered)
        handle(events, engine: engine, stream: stream, transport: transport, announced: announced)
    }

    private mutating func announce(engine: TLSEngine, stream: StreamID, writer: TLSWriter<Transport>, transport: Transport) {
        if handshakeTimeout != nil { transport.setDeadline(stream, in: nil) }
        counters.handshakes += 1
        if engine.negotiated?.resumed == true { counters.resumed += 1 }
        if engine.negotiated?.peerCertificateSubject != nil { counters.verifiedPeerCertificates += 1 }
        writer.flush()
        application.established(stream, writer: writer)
    }

    /// Acts on what one engine call brought about: the application hears of it, queued records go out.
    private mutating func handle(_ events: TLSEngine.Events, engine: TLSEngine, stream: StreamID, transport: Transport,
                                 announced: Bool = false) {
        let writer = TLSWriter(engine: engine, stream: stream, transport: transport, reservedFrames: reservedFrames)
        if events.contains(.handshakeCompleted) && !announced { announce(engine: engine, stream: stream, writer: writer, transport: transport) }
        if events.contains(.failed) {
            if engine.negotiated == nil { counters.failedHandshakes += 1 } else { counters.failedConnections += 1 }
            if let error = engine.error { errors[stream] = .tls(error) }
            writer.flush()
            transport.close(stream, abort: false)
            return
        }
        if !writer.flush() {
            errors[stream] = .outOfFrames
            transport.close(stream, abort: true)
            return
        }
        if events.contains(.readClosed) { application.readClosed(stream, writer: writer) }
    }

    public mutating func readClosed(_ stream: StreamID, transport: Transport) {
        // After the peer's close_notify, which closes its direction only (RFC 8446 6.1), what the
        // application still sends goes out: its own close_notify shuts the stream for writing,
        // and the transport closes it then.
        if let engine = engines[stream], engine.isReadClosed, !engine.isWriteClosed, engine.state == .established { return }
        // Cut without close_notify after the handshake (one cut during it is a failed handshake).
        if let engine = engines[stream], engine.state == .established, !engine.isReadClosed {
            counters.truncatedConnections += 1
            // Ended now, as far as the application counts: a stop's grace that ends before the
            // transport's close completes must not count it again as open at the stop.
            ended.insert(stream)
            application.closed(stream, error: .truncated)
        }
        transport.close(stream, abort: false)
    }

    public mutating func sendQueueDrained(_ stream: StreamID, transport: Transport) {
        guard let engine = engines[stream] else { return }
        let writer = TLSWriter(engine: engine, stream: stream, transport: transport, reservedFrames: reservedFrames)
        if engine.isWriteClosed {
            // A close_notify that waited for a frame (``TLSWriter/close()``).
            if !engine.outbound.isEmpty { writer.close() }
            return
        }
        guard engine.state == .established else { return }
        application.writable(stream, writer: writer)
    }

    public mutating func closed(_ stream: StreamID, error: SystemCallError?, transport: Transport) {
        let engine = engines.removeValue(forKey: stream)
        if let engine {
            // Cut before it finished, with no alert (counted where it was sent or received).
            if engine.state == .handshaking { counters.failedHandshakes += 1 }
            counters.keyUpdatesReceived += engine.counters.keyUpdatesReceived
            counters.keyUpdatesSent += engine.counters.keyUpdatesSent
        }
        let client = clients.removeValue(forKey: stream)
        let tlsError = errors.removeValue(forKey: stream)
        guard ended.remove(stream) == nil else { return }
        // A listener's end (it has no engine, no connect, no failure) is no connection of the application's.
        guard engine != nil || client != nil || tlsError != nil else { return }
        // A peer that sent its close_notify may close without waiting for ours (RFC 8446 6.1):
        // a reset of our reply ends a completed connection, not a failed one.
        let finished = engine.map { $0.isReadClosed && $0.error == nil } ?? false
        application.closed(stream, error: tlsError ?? (finished ? nil : error.map { .stream($0) }))
    }
}
