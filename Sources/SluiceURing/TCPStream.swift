#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceURing
import SluiceCore
import SluiceSystem
import SluicePackets
import Synchronization

// The async edge of the TCP engine, in SwiftNIO's spirit:
//
// ```swift
// let loop = try TCPEventLoop()
// let listener = try await loop.listen(on: IPEndpoint("127.0.0.1:7000")!)
// for await connection in listener.connections {
//     Task {
//         for try await chunk in connection.inbound { try await connection.send(chunk) }
//         connection.close()          // the peer shut its write side: finish and close
//     }
// }
// ```
//
// One ``TCPEngine`` runs on a thread of its own (``TCPEventLoop``); async callers post commands
// to it through a locked mailbox and wake it through a pipe whose read end stays armed on the
// ring. Received chunks are copied out of their frames into `[UInt8]` at this edge (the frame goes
// straight back to the receive ring) and handed over through an `AsyncThrowingStream`; bytes to
// send are copied into pool frames on the engine thread. Allocation happens here and only here:
// the engine below allocates nothing per chunk.
//
// Back-pressure both ways: ``TCPConnection/send(_:)`` returns once its bytes sit in frames queued
// on the socket (at most a small window per connection), and a connection whose reader falls
// more than ``TCPEventLoop/inboundHighWater`` bytes behind stops receiving until it catches up.

/// What ``TCPEventLoop/shutdown()`` reports.
public struct TCPEventLoopReport: Sendable {
    /// The engine's counters.
    public var counters: TCPEngineCounters
    /// `io_uring_enter` calls.
    public var enterCalls: UInt64
    /// Where the frames were after the engine shut down (balanced: none leaked).
    public var frames: FrameTally
    /// Operations still in flight after shutdown (0 unless it timed out).
    public var operationsInFlight: Int
}

extension TCPEventLoopReport: CustomStringConvertible {
    /// One line: connections, bytes each way, `io_uring_enter` calls, and where the frames are.
    public var description: String {
        "\(counters.accepted) accepted, \(counters.connected) connected, \(counters.closed) closed; "
            + "\(counters.receivedBytes) bytes in, \(counters.sentBytes) out; \(enterCalls) io_uring_enter calls; "
            + (frames.isBalanced ? "frames: all returned to their pool" : "\(frames)")
            + (operationsInFlight > 0 ? "; \(operationsInFlight) operations still in flight" : "")
    }
}

/// A ``TCPEngine`` on a thread of its own, offered to async code: listen, connect, then use the
/// ``TCPListener`` and ``TCPConnection`` it hands out.
public final class TCPEventLoop: Sendable {
    /// Bytes received and not yet taken from a connection's ``TCPConnection/inbound`` above which
    /// the connection stops receiving (TCP flow control then holds the peer back).
    public static let inboundHighWater = 4 << 20
    /// Where receiving resumes.
    public static let inboundLowWater = 1 << 20

    let channel: TCPLoopChannel
    private let thread: Mutex<WorkerThread?>

    /// Starts the engine thread and returns once the ring is up.
    ///
    /// - Throws: `SystemCallError` when the ring, pool or buffer ring cannot be made.
    public init(configuration: TCPEngineConfiguration = .init()) throws(SystemCallError) {
        let channel = TCPLoopChannel()
        self.channel = channel
        let startup = Mutex<Result<Void, SystemCallError>?>(nil)
        let thread = try WorkerThread(name: "sluice-tcp", logger: configuration.logger) {
            let engine: TCPEngine
            do throws(SystemCallError) {
                engine = try TCPEngine(configuration: configuration)
                channel.doorbell.store(try engine.doorbellDescriptor(), ordering: .releasing)
            } catch {
                startup.withLock { $0 = .failure(error) }
                return
            }
            startup.withLock { $0 = .success(()) }
            let final = TCPStreamBridge.run(engine: engine, channel: channel)
            channel.report.withLock { $0 = final }
        }
        while startup.withLock({ $0 }) == nil { usleep(200) }
        if case .failure(let error) = startup.withLock({ $0 })! {
            thread.join()
            throw error
        }
        self.thread = Mutex(thread)
    }

    deinit { _ = shutdown() }

    /// Listens on `endpoint` (port 0: the kernel picks; ``TCPListener/localEndpoint`` says which).
    public func listen(on endpoint: IPEndpoint) async throws(SystemCallError) -> TCPListener {
        let result = await withCheckedContinuation { continuation in
            channel.post(.listen(endpoint, continuation))
        }
        return try result.get()
    }

    /// Connects to `endpoint`; with a `timeout`, fails with `ETIMEDOUT` when the handshake takes
    /// longer (an io_uring linked timeout on the connect).
    public func connect(to endpoint: IPEndpoint, timeout: Duration? = nil) async throws(SystemCallError) -> TCPConnection {
        let result = await withCheckedContinuation { continuation in
            channel.post(.connect(endpoint, timeout, continuation))
        }
        return try result.get()
    }

    /// Closes every listener and connection (cancelling whatever is in flight: pending sends and
    /// accepts fail, inbound streams end), stops the thread and reports. Safe to call from several
    /// threads at once; every call returns the same report.
    @discardableResult
    public func shutdown() -> TCPEventLoopReport {
        // Joined under the lock: a concurrent caller waits here until the thread has ended, and
        // the thread stores its report before it ends.
        thread.withLock { current in
            guard let running = current else { return }
            channel.post(.stop)
            running.join()
            current = nil
        }
        return channel.report.withLock { $0 }!
    }
}

/// A listening socket of a ``TCPEventLoop``.
public final class TCPListener: Sendable {
    /// The address it is bound to.
    public let localEndpoint: IPEndpoint
    let id: StreamID
    let channel: TCPLoopChannel
    let queue = Mutex(AcceptQueue())

    struct AcceptQueue {
        var ready: [TCPConnection] = []
        var waiters: [CheckedContinuation<TCPConnection?, Never>] = []
        var finished = false
    }

    init(id: StreamID, localEndpoint: IPEndpoint, channel: TCPLoopChannel) {
        self.id = id
        self.localEndpoint = localEndpoint
        self.channel = channel
    }

    /// The next accepted connection, or `nil` once the listener is closed.
    public func accept() async -> TCPConnection? {
        await withCheckedContinuation { continuation in
            let now = queue.withLock { queue -> (TCPConnection?, Bool) in
                if !queue.ready.isEmpty { return (queue.ready.removeFirst(), true) }
                if queue.finished { return (nil, true) }
                queue.waiters.append(continuation)
                return (nil, false)
            }
            if now.1 { continuation.resume(returning: now.0) }
        }
    }

    /// Accepted connections, until the listener closes.
    public var connections: Connections { Connections(listener: self) }

    /// Stops listening; ``accept()`` returns `nil` from then on. Connections already accepted stay open.
    public func close() { channel.post(.close(id)) }

    /// The accepted connections as an `AsyncSequence`.
    public struct Connections: AsyncSequence, Sendable {
        let listener: TCPListener
        public typealias Element = TCPConnection

        public struct AsyncIterator: AsyncIteratorProtocol {
            let listener: TCPListener
            public mutating func next() async -> TCPConnection? { await listener.accept() }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(listener: listener) }
    }

    /// Engine thread: hands over an accepted connection.
    func deliver(_ connection: TCPConnection) {
        let waiter = queue.withLock { queue -> CheckedContinuation<TCPConnection?, Never>? in
            if !queue.waiters.isEmpty { return queue.waiters.removeFirst() }
            queue.ready.append(connection)
            return nil
        }
        waiter?.resume(returning: connection)
    }

    /// Engine thread: the listener is gone.
    func finish() {
        let waiters = queue.withLock { queue -> [CheckedContinuation<TCPConnection?, Never>] in
            queue.finished = true
            defer { queue.waiters = [] }
            return queue.waiters
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }
}

/// One TCP connection of a ``TCPEventLoop``: bytes in through ``inbound``, out through ``send(_:)``.
public final class TCPConnection: Sendable {
    /// The engine's name for it.
    public let id: StreamID
    /// The received bytes, chunk by chunk in order; ends when the peer shuts its write side (or
    /// the connection closes), throws a `SystemCallError` when it fails. One reader at a time.
    public let inbound: TCPInbound
    let channel: TCPLoopChannel

    init(id: StreamID, channel: TCPLoopChannel, inbound: TCPInbound) {
        self.id = id
        self.channel = channel
        self.inbound = inbound
    }

    /// Sends `bytes` after everything sent before; returns once they are queued on the socket in
    /// frames (not necessarily acknowledged by the peer).
    ///
    /// The bytes are handed to the loop on the caller's executor, before the first suspension:
    /// two sends from one actor go in the order they were made, even when the actor runs
    /// something else while the first waits (a TLS connection's records and the KeyUpdate it
    /// answers with must not pass each other).
    ///
    /// - Throws: `SystemCallError` when the connection is closed or fails first: `EPIPE` once
    ///   ``shutdownWrite()`` or ``close()`` was called, `ENOTCONN` once it is gone.
    public nonisolated(nonsending) func send(_ bytes: some Sequence<UInt8>) async throws(SystemCallError) {
        let array = Array(bytes)
        guard !array.isEmpty else { return }
        let result = await withCheckedContinuation { continuation in
            channel.post(.send(id, array, continuation))
        }
        try result.get()
    }

    /// Shuts the write side once everything sent so far has gone: the peer reads EOF.
    public func shutdownWrite() { channel.post(.shutdownWrite(id)) }

    /// Closes once everything sent so far has gone.
    public func close() { channel.post(.close(id)) }
}

/// A connection's received chunks (see ``TCPConnection/inbound``).
public struct TCPInbound: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let stream: AsyncThrowingStream<[UInt8], any Error>
    let credit: TCPInboundCredit
    let id: StreamID
    let channel: TCPLoopChannel

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator
        let credit: TCPInboundCredit
        let id: StreamID
        let channel: TCPLoopChannel

        public mutating func next() async throws -> [UInt8]? {
            guard let chunk = try await base.next() else { return nil }
            let left = credit.buffered.subtract(chunk.count, ordering: .acquiringAndReleasing).newValue
            if left < TCPEventLoop.inboundLowWater,
               credit.paused.compareExchange(expected: true, desired: false, ordering: .acquiringAndReleasing).exchanged {
                channel.post(.resume(id))
            }
            return chunk
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), credit: credit, id: id, channel: channel)
    }
}

/// Bytes handed to a reader and not yet taken, and whether receiving is paused for it.
final class TCPInboundCredit: Sendable {
    let buffered = Atomic<Int>(0)
    let paused = Atomic<Bool>(false)
}

/// What async callers ask of the engine thread.
enum TCPLoopCommand: Sendable {
    case listen(IPEndpoint, CheckedContinuation<Result<TCPListener, SystemCallError>, Never>)
    case connect(IPEndpoint, Duration?, CheckedContinuation<Result<TCPConnection, SystemCallError>, Never>)
    case send(StreamID, [UInt8], CheckedContinuation<Result<Void, SystemCallError>, Never>)
    case shutdownWrite(StreamID)
    case close(StreamID)
    case resume(StreamID)
    case stop

    /// Answers the caller of a command the loop will never run.
    func refuse() {
        let error = SystemCallError(.tcp, operation: "tcp event loop (stopped)", errno: ECANCELED)
        switch self {
        case .listen(_, let c): c.resume(returning: .failure(error))
        case .connect(_, _, let c): c.resume(returning: .failure(error))
        case .send(_, _, let c): c.resume(returning: .failure(error))
        default: break
        }
    }
}

/// The mailbox from async callers to the engine thread, and the doorbell that wakes it.
final class TCPLoopChannel: Sendable {
    let doorbell = Atomic<Int32>(-1)
    /// The engine thread's last word.
    let report = Mutex<TCPEventLoopReport?>(nil)
    private let mailbox = Mutex<(commands: [TCPLoopCommand], stopped: Bool)>(([], false))

    /// Queues `command` and wakes the engine (a write to the doorbell pipe when the mailbox was empty).
    func post(_ command: TCPLoopCommand) {
        let (accepted, wasEmpty) = mailbox.withLock { box -> (Bool, Bool) in
            if box.stopped { return (false, false) }
            box.commands.append(command)
            return (true, box.commands.count == 1)
        }
        guard accepted else {
            command.refuse()
            return
        }
        if wasEmpty {
            var byte: UInt8 = 1
            _ = write(doorbell.load(ordering: .acquiring), &byte, 1)
        }
    }

    /// Engine thread: everything posted so far.
    func take() -> [TCPLoopCommand] {
        mailbox.withLock { box in
            defer { box.commands.removeAll(keepingCapacity: true) }
            return box.commands
        }
    }

    /// Engine thread: refuses everything from now on, returning what was still queued.
    func close() -> [TCPLoopCommand] {
        mailbox.withLock { box in
            box.stopped = true
            defer { box.commands = [] }
            return box.commands
        }
    }
}

/// The engine-thread side of the stream API: the ``StreamHandler`` that turns engine events
/// into stream elements and continuations.
struct TCPStreamBridge: StreamHandler {
    /// Frames a connection may hold for ``TCPConnection/send(_:)`` (see ``TCPEngine/framesHeld(on:)``).
    static let sendWindow = 8
    /// How long a stopping loop keeps sending what was queued before it.
    static let drainTime: Duration = .seconds(1)

    /// Whether every byte handed to the loop has left: nothing waits for frames, none is queued.
    func isDrained(_ engine: TCPEngine) -> Bool {
        pending.isEmpty && connections.keys.allSatisfy { engine.framesHeld(on: $0) == 0 }
    }

    struct PendingSend {
        var bytes: [UInt8]
        var offset: Int
        let continuation: CheckedContinuation<Result<Void, SystemCallError>, Never>
    }

    struct ConnectionState {
        let continuation: AsyncThrowingStream<[UInt8], any Error>.Continuation
        let credit: TCPInboundCredit
        var sends: [PendingSend] = []
        /// Asked for by the user; applied once the sends before it are in frames, and kept after
        /// that, so later sends fail.
        var wantShutdownWrite = false
        var wantClose = false
    }

    let channel: TCPLoopChannel
    var listeners: [StreamID: TCPListener] = [:]
    var connections: [StreamID: ConnectionState] = [:]
    var connecting: [StreamID: CheckedContinuation<Result<TCPConnection, SystemCallError>, Never>] = [:]
    /// Connections with sends waiting for frames or window.
    var pending: Set<StreamID> = []

    /// The engine thread's loop: commands, completions, pumping, until `.stop`.
    static func run(engine: TCPEngine, channel: TCPLoopChannel) -> TCPEventLoopReport {
        var bridge = TCPStreamBridge(channel: channel)
        // Set by `.stop`: what was sent before it (a close_notify, the records ahead of it) still
        // goes out, for at most `drainTime`, rather than being cut mid-record.
        var stopBy: ContinuousClock.Instant?
        while true {
            for command in channel.take() {
                if case .stop = command { stopBy = stopBy ?? .now + drainTime } else { bridge.perform(command, engine) }
            }
            bridge.pumpAll(engine)
            if let stopBy, bridge.isDrained(engine) || .now >= stopBy { break }
            do {
                try engine.poll(&bridge, timeout: stopBy == nil ? .seconds(1) : .milliseconds(10))
            } catch {
                // A ring that cannot enter the kernel any more: fail everything and stop.
                break
            }
            bridge.pumpAll(engine)
        }
        for command in channel.close() { command.refuse() }
        let tally = engine.shutdown(&bridge)
        bridge.failAll(SystemCallError(.tcp, operation: "tcp event loop (stopped)", errno: ECANCELED))
        return TCPEventLoopReport(counters: engine.counters, enterCalls: engine.enterCalls, frames: tally,
                                  operationsInFlight: engine.operationsInFlight)
    }

    mutating func perform(_ command: TCPLoopCommand, _ engine: TCPEngine) {
        switch command {
        case let .listen(endpoint, continuation):
            do {
                let (id, bound) = try engine.listen(on: endpoint)
                let listener = TCPListener(id: id, localEndpoint: bound, channel: channel)
                listeners[id] = listener
                continuation.resume(returning: .success(listener))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        case let .connect(endpoint, timeout, continuation):
            do {
                connecting[try engine.connect(to: endpoint, timeout: timeout)] = continuation
            } catch {
                continuation.resume(returning: .failure(error))
            }
        case let .send(id, bytes, continuation):
            guard let state = connections[id], engine.isOpen(id) else {
                continuation.resume(returning: .failure(SystemCallError(.tcp, operation: "send", errno: ENOTCONN)))
                return
            }
            guard !state.wantShutdownWrite, !state.wantClose, engine.isWritable(id) else {
                continuation.resume(returning: .failure(engine.failure(of: id) ?? Self.writeSideShut))
                return
            }
            connections[id]!.sends.append(PendingSend(bytes: bytes, offset: 0, continuation: continuation))
            pending.insert(id)
        case let .shutdownWrite(id):
            connections[id]?.wantShutdownWrite = true
            pending.insert(id)
        case let .close(id):
            if listeners[id] != nil {
                engine.close(id)
            } else {
                connections[id]?.wantClose = true
                pending.insert(id)
            }
        case let .resume(id):
            engine.resumeReceiving(id)
        case .stop:
            break
        }
    }

    /// What a send gets once the connection's write side is shut or closing, unless the connection
    /// failed: then the failure (a reset, say) is the reason it gets.
    static let writeSideShut = SystemCallError(.tcp, operation: "send", errno: EPIPE)

    /// Copies pending sends into frames, within each connection's window, and applies a
    /// shutdown or close once nothing is left to copy.
    mutating func pumpAll(_ engine: TCPEngine) {
        guard !pending.isEmpty else { return }
        for id in pending {
            guard var state = connections[id] else {
                pending.remove(id)
                continue
            }
            var done = 0
            while done < state.sends.count, engine.isWritable(id), engine.framesHeld(on: id) < Self.sendWindow,
                  var frame = engine.makeFrame() {
                let count = state.sends[done].bytes.withUnsafeBytes { source -> Int in
                    let count = min(source.count - state.sends[done].offset, frame.capacity - frame.offset)
                    frame.length = count
                    frame.data.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[state.sends[done].offset...][..<(state.sends[done].offset + count)]))
                    return count
                }
                engine.send(frame, on: id)   // writable, so it takes the frame
                state.sends[done].offset += count
                if state.sends[done].offset == state.sends[done].bytes.count {
                    state.sends[done].continuation.resume(returning: .success(()))
                    done += 1
                }
            }
            if done > 0 { state.sends.removeFirst(done) }
            if !state.sends.isEmpty && !engine.isWritable(id) {
                // The engine is closing the connection: the rest can never go, and waiting for its
                // close would leave the callers hanging as long as that takes.
                let failure = engine.failure(of: id) ?? Self.writeSideShut
                for send in state.sends { send.continuation.resume(returning: .failure(failure)) }
                state.sends = []
            }
            if state.sends.isEmpty {
                if state.wantShutdownWrite { engine.shutdownWrite(id) }
                if state.wantClose { engine.close(id) }
                pending.remove(id)
            }
            connections[id] = state
        }
    }

    /// Fails whatever is still waiting (after the engine shut down).
    mutating func failAll(_ error: SystemCallError) {
        for (_, continuation) in connecting { continuation.resume(returning: .failure(error)) }
        connecting = [:]
        for (_, state) in connections {
            for send in state.sends { send.continuation.resume(returning: .failure(error)) }
            state.continuation.finish(throwing: error)
        }
        connections = [:]
        for (_, listener) in listeners { listener.finish() }
        listeners = [:]
    }

    func makeConnection(_ id: StreamID) -> (TCPConnection, ConnectionState) {
        let (stream, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let credit = TCPInboundCredit()
        let inbound = TCPInbound(stream: stream, credit: credit, id: id, channel: channel)
        return (TCPConnection(id: id, channel: channel, inbound: inbound),
                ConnectionState(continuation: continuation, credit: credit))
    }

    // MARK: StreamHandler

    mutating func accepted(_ connection: StreamID, listener: StreamID, transport engine: TCPEngine) {
        let (handle, state) = makeConnection(connection)
        connections[connection] = state
        if let owner = listeners[listener] { owner.deliver(handle) } else { engine.close(connection, abort: true) }
    }

    mutating func connected(_ connection: StreamID, error: SystemCallError?, transport engine: TCPEngine) {
        guard let continuation = connecting.removeValue(forKey: connection) else { return }
        if let error {
            continuation.resume(returning: .failure(error))
            return
        }
        let (handle, state) = makeConnection(connection)
        connections[connection] = state
        continuation.resume(returning: .success(handle))
    }

    mutating func received(_ chunk: consuming Packet, on connection: StreamID, transport engine: TCPEngine) {
        let bytes = Array(UnsafeRawBufferPointer(chunk.data))
        engine.release(chunk)
        guard let state = connections[connection] else { return }
        state.continuation.yield(bytes)
        let buffered = state.credit.buffered.add(bytes.count, ordering: .acquiringAndReleasing).newValue
        if buffered > TCPEventLoop.inboundHighWater, !state.credit.paused.load(ordering: .acquiring) {
            state.credit.paused.store(true, ordering: .releasing)
            // The reader may have caught up meanwhile: then it will not ask to resume, so do not pause.
            if state.credit.buffered.load(ordering: .acquiring) < TCPEventLoop.inboundLowWater,
               state.credit.paused.compareExchange(expected: true, desired: false, ordering: .acquiringAndReleasing).exchanged {
                return
            }
            engine.pauseReceiving(connection)
        }
    }

    mutating func readClosed(_ connection: StreamID, transport engine: TCPEngine) {
        connections[connection]?.continuation.finish()
    }

    mutating func sendQueueDrained(_ connection: StreamID, transport engine: TCPEngine) {}

    mutating func closed(_ connection: StreamID, error: SystemCallError?, transport engine: TCPEngine) {
        if let listener = listeners.removeValue(forKey: connection) {
            listener.finish()
            return
        }
        guard let state = connections.removeValue(forKey: connection) else { return }
        pending.remove(connection)
        let failure = error ?? SystemCallError(.tcp, operation: "send (connection closed)", errno: EPIPE)
        for send in state.sends { send.continuation.resume(returning: .failure(failure)) }
        if let error { state.continuation.finish(throwing: error) } else { state.continuation.finish() }
    }
}
