import SluiceCore
import SluiceTLS
import SluiceURing
import Synchronization

// The async edge of TLS, over the async edge of the TCP engine:
//
// ```swift
// let loop = try TCPEventLoop()
// let context = try TLSContext(.client(peerVerification: .trustedCertificates(path: "ca.pem")))
// let connection = try await TLSConnection.connect(to: IPEndpoint("127.0.0.1:4433")!, on: loop,
//                                                   context: context, serverName: "sluice.test")
// try await connection.send(Array("hello\n".utf8))
// for try await plaintext in connection.inbound { print(plaintext.count) }
// await connection.close()
// ```
//
// Records are opened as ``TLSConnection/inbound`` is read (pull, as `SSL_read` does: a reader
// that stops holds the peer back through TCP), and sealed as ``TLSConnection/send(_:)`` is
// called; one actor owns the engine, so records leave in the order they were sealed. The
// high-rate path is ``TLSServer`` (records sealed and opened in the engine's frames on its own
// thread); this edge copies bytes in and out of arrays like the TCP edge below it.

/// One TLS connection over a `TCPConnection`: plaintext in through ``inbound``, out through ``send(_:)``.
public actor TLSConnection {
    /// The TCP connection under it.
    public nonisolated let tcp: TCPConnection
    /// What the handshake settled on.
    public nonisolated let negotiated: TLSNegotiated
    let engine: TLSEngine
    var plaintext: [[UInt8]] = []
    var readFinished = false
    var failure: TLSConnectionError?

    init(tcp: TCPConnection, engine: sending TLSEngine, negotiated: TLSNegotiated, plaintext: [[UInt8]]) {
        self.tcp = tcp
        self.engine = engine
        self.negotiated = negotiated
        self.plaintext = plaintext
        // The chunk that ended the handshake may have carried the peer's close_notify too.
        readFinished = engine.isReadClosed
    }

    /// Connects to `endpoint` and runs a client handshake to `serverName` (SNI, and the name the
    /// certificate must carry unless `context` verifies nothing; without a name, the certificate
    /// must carry the endpoint's address), offering `session` to resume. The connect and then the
    /// handshake each get `timeout` (`nil`: the handshake waits as long as the server does).
    ///
    /// - Throws: `TLSConnectionError`: the TCP connect or the handshake failed, or took too long.
    public static func connect(to endpoint: IPEndpoint, on loop: TCPEventLoop, context: TLSContext,
                               serverName: String?, session: TLSSession? = nil,
                               timeout: Duration? = .seconds(10)) async throws(TLSConnectionError) -> TLSConnection {
        try await connect(to: [endpoint], on: loop, context: context, serverName: serverName, session: session,
                          timeout: timeout)
    }

    /// Connects to the first of `endpoints` that takes a TCP connection, tried in order (a name's
    /// addresses as the resolver sorted them, as `s_client` and `curl` try them), then runs the
    /// client handshake there as ``connect(to:on:context:serverName:session:timeout:)-(IPEndpoint,_,_,_,_,_)`` does. Each connect gets
    /// `timeout`; a failed handshake is not retried on the next address.
    ///
    /// - Throws: `TLSConnectionError`: every TCP connect failed (the last one's error), or the
    ///   handshake failed or took too long.
    public static func connect(to endpoints: [IPEndpoint], on loop: TCPEventLoop, context: TLSContext,
                               serverName: String?, session: TLSSession? = nil,
                               timeout: Duration? = .seconds(10)) async throws(TLSConnectionError) -> TLSConnection {
        var connected: (tcp: TCPConnection, endpoint: IPEndpoint)?
        var failure = SystemCallError(.tcp, operation: "connect", errno: nil, hint: "no address to connect to")
        for endpoint in endpoints {
            do {
                connected = (try await loop.connect(to: endpoint, timeout: timeout ?? .seconds(10)), endpoint)
                break
            } catch {
                failure = error
            }
        }
        guard let (tcp, endpoint) = connected else { throw .stream(failure) }
        do throws(TLSError) {
            let engine = try TLSEngine(context: context, serverName: serverName, peerAddress: endpoint.address.description,
                                       session: session)
            _ = engine.start()
            return try await handshake(tcp: tcp, engine: engine, timeout: timeout)
        } catch {
            tcp.close()
            throw .tls(error)
        }
    }

    /// Runs a server handshake on an accepted `tcp` connection, closing it if the handshake takes
    /// longer than `timeout`.
    public static func accept(_ tcp: TCPConnection, context: TLSContext,
                              timeout: Duration? = .seconds(10)) async throws(TLSConnectionError) -> TLSConnection {
        do throws(TLSError) {
            return try await handshake(tcp: tcp, engine: TLSEngine(context: context), timeout: timeout)
        } catch {
            tcp.close()
            throw .tls(error)
        }
    }

    private static func handshake(tcp: TCPConnection, engine: sending TLSEngine, timeout: Duration?) async throws(TLSError) -> TLSConnection {
        // A peer that never answers: the connection is closed under the handshake, which then
        // ends. One of the two settles it: the timer closes only a handshake still running, and
        // a handshake that finishes after the timer fired is a timeout too (its connection is closed).
        let state = Locked(HandshakeState.running)
        let timer = timeout.map { limit in
            Task {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                let expire = state.withLock { state in
                    guard state == .running else { return false }
                    state = .expired
                    return true
                }
                if expire { tcp.close() }
            }
        }
        defer { timer?.cancel() }
        let timedOut = { TLSError("the TLS handshake", hint: "the peer did not finish it within \(timeout ?? .zero)", library: "") }
        let connection: TLSConnection
        do {
            connection = try await handshakeSteps(tcp: tcp, engine: engine)
        } catch {
            guard state.withLock({ $0 }) == .expired else { throw error }
            throw timedOut()
        }
        let finished = state.withLock { state in
            guard state == .running else { return false }
            state = .finished
            return true
        }
        guard finished else { throw timedOut() }
        return connection
    }

    /// Who settled a handshake with a time limit: the handshake, or the timer.
    private enum HandshakeState: Sendable { case running, finished, expired }

    private static func handshakeSteps(tcp: TCPConnection, engine: sending TLSEngine) async throws(TLSError) -> TLSConnection {
        var early: [[UInt8]] = []
        do {
            try await tcp.send(takeOutbound(of: engine))
            for try await chunk in tcp.inbound {
                var bytes = chunk
                let events = bytes.withUnsafeMutableBytes { raw in engine.receive(raw) { early.append(Array($0)) } }
                try await tcp.send(takeOutbound(of: engine))
                if events.contains(.failed) { throw engine.error ?? TLSError("the TLS handshake", library: "") }
                if let negotiated = engine.negotiated {
                    return TLSConnection(tcp: tcp, engine: engine, negotiated: negotiated, plaintext: early)
                }
            }
        } catch let error as TLSError {
            throw error
        } catch let error as SystemCallError where error.errno == .socketNotConnected {
            // A send after the connection ended (a reset right after accept, say): how it ended
            // is what ends `inbound`.
            var reason: any Error = error
            do { for try await _ in tcp.inbound {} } catch { reason = error }
            throw TLSError("the TLS handshake", hint: "the TCP connection failed: \(reason)", library: "")
        } catch {
            throw TLSError("the TLS handshake", hint: "the TCP connection failed: \(error)", library: "")
        }
        throw TLSError("the TLS handshake", hint: "the peer closed the connection during the handshake", library: "")
    }

    /// What `engine` queued (handshake flights, alerts, KeyUpdates), taken from it to send.
    private static func takeOutbound(of engine: TLSEngine) -> [UInt8] {
        let bytes = engine.outbound
        engine.consumeOutbound(bytes.count)
        return bytes
    }

    /// The decrypted bytes, record by record in order; ends at the peer's close_notify, throws
    /// `TLSConnectionError` when the connection fails or is cut without one. One reader at a time.
    public nonisolated var inbound: TLSInbound { TLSInbound(connection: self) }

    /// The sessions the server gave this client to resume later (TLS 1.3 tickets, or the TLS 1.2 session).
    public var resumableSessions: [TLSSession] { engine.resumableSessions }

    /// What the engine counted.
    public var counters: TLSEngine.Counters { engine.counters }

    /// Seals `bytes` in records and queues them on the TCP connection.
    ///
    /// - Throws: `TLSConnectionError` when the connection is closed for writing or failed.
    public func send(_ bytes: [UInt8]) async throws(TLSConnectionError) {
        guard engine.state == .established, !engine.isWriteClosed else {
            throw failure ?? .tls(TLSError("sending", hint: "the connection is closed for writing", library: ""))
        }
        var records = Self.takeOutbound(of: engine)
        var at = 0
        let overhead = engine.recordOverhead
        while at < bytes.count {
            let count = min(engine.maximumContent, bytes.count - at)
            let start = records.count
            records.append(contentsOf: repeatElement(0, count: count + overhead))
            let length = records.withUnsafeMutableBytes { out in
                bytes.withUnsafeBytes { engine.seal(UnsafeRawBufferPointer(rebasing: $0[at..<at + count]), into: out.baseAddress! + start) }
            }
            records.removeLast(count + overhead - length)
            at += count
        }
        do { try await tcp.send(records) } catch { throw .stream(error) }
    }

    /// TLS 1.3: sends a KeyUpdate, asking the peer for one with `requestPeerUpdate`.
    public func updateKeys(requestPeerUpdate: Bool) async throws(TLSConnectionError) {
        engine.updateKeys(requestPeerUpdate: requestPeerUpdate)
        try await flush()
    }

    /// Sends close_notify and shuts TCP for writing; ``inbound`` goes on until the peer's close_notify.
    public func close() async {
        engine.close()
        try? await flush()
        tcp.shutdownWrite()
    }

    /// Closes TCP at once, waiting for nothing more from the peer: ``inbound`` ends (with
    /// `TLSConnectionError.truncated` if the peer had not sent its close_notify).
    public func abort() {
        tcp.close()
    }

    private func flush() async throws(TLSConnectionError) {
        do { try await tcp.send(Self.takeOutbound(of: engine)) } catch { throw .stream(error) }
    }

    /// The next plaintext chunk already opened, or what ended the stream.
    func take() throws(TLSConnectionError) -> [UInt8]? {
        if !plaintext.isEmpty { return plaintext.removeFirst() }
        if let failure { throw failure }
        return readFinished ? [] : nil
    }

    /// Opens the records in one TCP chunk (nil: TCP ended) and sends what they called for.
    func process(_ chunk: [UInt8]?) async {
        guard var bytes = chunk else {
            if !engine.isReadClosed && failure == nil { failure = .truncated }
            readFinished = true
            tcp.close()
            return
        }
        var opened: [[UInt8]] = []
        let events = bytes.withUnsafeMutableBytes { raw in engine.receive(raw) { opened.append(Array($0)) } }
        plaintext += opened
        if events.contains(.failed), let error = engine.error { failure = .tls(error) }
        if events.contains(.readClosed) || events.contains(.failed) { readFinished = true }
        try? await flush()
        if events.contains(.failed) { tcp.close() }
    }
}

/// A TLS connection's decrypted bytes (see ``TLSConnection/inbound``).
public struct TLSInbound: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let connection: TLSConnection

    public struct AsyncIterator: AsyncIteratorProtocol {
        let connection: TLSConnection
        var tcp: TCPInbound.AsyncIterator

        public mutating func next() async throws -> [UInt8]? {
            while true {
                if let chunk = try await connection.take() { return chunk.isEmpty ? nil : chunk }
                let bytes: [UInt8]?
                do { bytes = try await tcp.next() } catch let error as SystemCallError {
                    throw TLSConnectionError.stream(error)
                }
                await connection.process(bytes)
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(connection: connection, tcp: connection.tcp.inbound.makeAsyncIterator())
    }
}

/// Accepts TCP connections of a `TCPEventLoop` and runs a server handshake on each, each in a
/// task of its own (a slow or silent client holds up no other); connections come out of
/// ``accept()`` as their handshakes finish.
public final class TLSListener: Sendable {
    /// The TCP listener under it.
    public let tcp: TCPListener
    /// The server context every handshake uses.
    public let context: TLSContext
    private let ready: AsyncStream<TLSConnection>
    private let acceptor: Task<Void, Never>
    private let failures = FailedHandshakes()

    /// Listens on `endpoint` with `context`; a handshake not done within `handshakeTimeout` is
    /// given up (`nil`: no limit).
    public init(on endpoint: IPEndpoint, loop: TCPEventLoop, context: TLSContext,
                handshakeTimeout: Duration? = .seconds(10)) async throws(SystemCallError) {
        let tcp = try await loop.listen(on: endpoint)
        self.tcp = tcp
        self.context = context
        let (ready, continuation) = AsyncStream<TLSConnection>.makeStream()
        self.ready = ready
        let failures = failures
        acceptor = Task {
            await withDiscardingTaskGroup { group in
                for await connection in tcp.connections {
                    group.addTask {
                        // A failed handshake is the client's business: its connection is closed, the
                        // listener goes on, and the failure is counted.
                        do throws(TLSConnectionError) {
                            let tls = try await TLSConnection.accept(connection, context: context, timeout: handshakeTimeout)
                            continuation.yield(tls)
                        } catch {
                            failures.state.withLock { $0 = ($0.count + 1, error) }
                        }
                    }
                }
            }
            continuation.finish()
        }
    }

    /// Handshakes that failed (or timed out) so far, and the last one's error.
    public var failedHandshakes: (count: Int, last: TLSConnectionError?) { failures.state.withLock { $0 } }

    /// Shared by the listener and its accepting task.
    private final class FailedHandshakes: Sendable {
        let state = Mutex<(count: Int, last: TLSConnectionError?)>((0, nil))
    }

    deinit { acceptor.cancel() }

    /// The address it is bound to.
    public var localEndpoint: IPEndpoint { tcp.localEndpoint }

    /// The next connection whose handshake succeeded, or nil once the listener is closed and
    /// every handshake under way has ended. One caller at a time.
    public func accept() async -> TLSConnection? {
        var iterator = ready.makeAsyncIterator()
        return await iterator.next()
    }

    /// Stops listening; handshakes under way finish.
    public func close() { tcp.close() }
}
