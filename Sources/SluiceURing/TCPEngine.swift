#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import Logging
import CSluiceURing
import SluiceCore
import SluiceSystem
import SluicePackets

/// How a ``TCPEngine`` is sized and which ring it runs on.
public struct TCPEngineConfiguration: Sendable {
    /// The ring's mode (plain, SQPOLL, DEFER_TASKRUN, cooperative task running).
    public var mode: URingMode = .plain
    /// Submission queue entries.
    public var ringEntries: UInt32 = 512
    /// The most connections (listeners included) open at once; accepts past it are closed at once and counted.
    public var maximumConnections: Int = 256
    /// The most send operations submitted and not yet completed (zero-copy ones until their
    /// notification); never fewer than ``maximumConnections``: a send waiting on a peer that does
    /// not read keeps its credit, and with fewer credits than connections such peers would
    /// stall every other.
    public var maximumSendsInFlight: Int = 256
    /// Frames a connection may hold for sending (queued, in flight, or awaiting a zero-copy
    /// notification) before its receiving pauses (echo back-pressure). While many connections are
    /// open each gets at most its fair share of the frames outside the receive ring (never below
    /// 2), so peers that send and never read cannot pin the pool between them.
    public var maximumQueuedPerConnection: Int = 32
    /// A connection that moves no data either way for this long is aborted and counted
    /// (``TCPEngineCounters/idleClosed``); `nil` keeps idle connections. Checked when
    /// ``TCPEngine/poll(_:timeout:)`` returns, so poll with a timeout.
    public var idleTimeout: Duration? = .seconds(60)
    /// With the table nearly full, close connections to keep room for new ones, and count them
    /// (``TCPEngineCounters/evicted``): first, of those whose handler waits on a deadline (a
    /// handshake, a message not whole), the one that has moved no data for longest (a quarter
    /// second at least); with none such, any idle longest (a sixteenth of ``idleTimeout`` at
    /// least), unless enough are waiting to make the room soon. Clients that connect and stay
    /// silent can neither lock the others out (RFC 7766 section 6.2.3) nor close established
    /// connections. Off, accepts past the limit are refused. Needs an
    /// ``idleTimeout``.
    public var closesIdlestWhenFull = false
    /// Frames in the engine's pool: receive buffers, queued and in-flight sends.
    public var frameCount: Int = 1024
    /// Bytes per frame: the most one receive completion carries.
    public var frameSize: Int = 16384
    /// Frames kept in the provided-buffer ring for receiving (a power of two, below `frameCount`).
    public var receiveBuffers: UInt32 = 512
    /// The buffer group id of the receive ring.
    public var bufferGroup: UInt16 = 1
    /// Sends of at least this many bytes use `IORING_OP_SEND_ZC` (the frame returns only after the
    /// notification); `nil`, the default, never uses zero copy. Zero copy pays off for large sends
    /// out of a NIC; on loopback and veth the receiver is charged whole pages for zero-copy data,
    /// so a peer with a small receive buffer (2 KiB) offers a window below one segment and the
    /// connection crawls at the kernel's window probes (a few KB/s against 40 MB/s copied).
    public var zeroCopyThreshold: Int? = nil
    /// Multishot receives (one SQE, a completion per chunk); false re-arms a one-shot receive after
    /// each chunk, as the engine does by itself on kernels without `IORING_RECV_MULTISHOT`.
    public var multishotReceive = true
    /// Where the engine reports what it changes on its own (a fallback); silent by default.
    public var logger: Logger = .disabled

    /// The defaults: 1024 frames of 16 KiB, 512 of them for receiving, 256 connections.
    public init(mode: URingMode = .plain) { self.mode = mode }
}

/// What a ``TCPEngine`` has done, for summaries and tests.
public struct TCPEngineCounters: Sendable, Equatable {
    /// Connections accepted.
    public var accepted: UInt64 = 0
    /// Connections refused because the table was full.
    public var rejected: UInt64 = 0
    /// Outgoing connections established.
    public var connected: UInt64 = 0
    /// Connections closed.
    public var closed: UInt64 = 0
    /// Bytes received.
    public var receivedBytes: UInt64 = 0
    /// Receive completions carrying data.
    public var receivedChunks: UInt64 = 0
    /// Bytes sent.
    public var sentBytes: UInt64 = 0
    /// Send operations submitted (zero-copy included).
    public var sends: UInt64 = 0
    /// Of those, zero-copy sends.
    public var zeroCopySends: UInt64 = 0
    /// Times a multishot receive stopped for want of buffers and was re-armed later.
    public var receiveStarved: UInt64 = 0
    /// Operations cancelled at close.
    public var cancelled: UInt64 = 0
    /// Times receiving paused: a connection queued too much to send, or its reader fell behind.
    public var receivePauses: UInt64 = 0
    /// Connections aborted for moving no data for ``TCPEngineConfiguration/idleTimeout``.
    public var idleClosed: UInt64 = 0
    /// Idle connections closed to make room for new ones (``TCPEngineConfiguration/closesIdlestWhenFull``).
    public var evicted: UInt64 = 0
    /// Times a listener stopped accepting because the process ran out of descriptors
    /// (`EMFILE`/`ENFILE`); it accepts again once one of the engine's descriptors closes.
    public var acceptPauses: UInt64 = 0
    /// Connects that ran out of time (their linked timeout fired first).
    public var connectTimeouts: UInt64 = 0
    /// Connections aborted at a deadline their handler set (``TCPEngine/setDeadline(_:in:)``).
    public var deadlineClosed: UInt64 = 0

    public init() {}
}

/// A TCP engine over one io_uring, driven by one thread: listeners with multishot accept,
/// connections receiving with multishot recv into a provided-buffer ring of pool frames, sends
/// (zero-copy above a threshold), connect, `shutdown(SHUT_WR)` and close, all as ring operations.
///
/// Each operation's `user_data` encodes the connection (slot and generation), the operation and,
/// for sends, the send slot holding the frame (see `Tag`). Frames are always in exactly one
/// place: the pool, the buffer ring (the kernel), a delegate's hands, a connection's send queue,
/// or in flight; a zero-copy send's frame comes back only with the notification completion.
///
/// Bounded: at most ``TCPEngineConfiguration/maximumConnections`` connections, one send in
/// flight per connection (order on the stream), at most
/// ``TCPEngineConfiguration/maximumSendsInFlight`` in all, and a connection that holds more than
/// ``TCPEngineConfiguration/maximumQueuedPerConnection`` frames for sending stops receiving until
/// it drains.
/// Nothing allocates per chunk: tables are made once.
///
/// Not thread-safe: make it, use it and `shutdown(timeout:)` it on one thread.
public final class TCPEngine: StreamTransport {
    /// The ring.
    public let ring: URing
    /// The frames.
    public let pool: FramePool
    /// The configuration.
    public let configuration: TCPEngineConfiguration
    /// What happened so far.
    public private(set) var counters = TCPEngineCounters()

    let buffers: URingBufferRing
    var slots: [Slot]
    var freeSlots: [UInt32]
    var sendSlots: [SendSlot]
    var freeSendSlots: [Int32]
    /// Connections with queued data that wait for a send credit (slot indices).
    var sendWaiters: [UInt32]
    var sendWaiterHead = 0
    var sendsInFlight = 0
    /// Connections whose multishot receive stopped for want of buffers.
    var starved: [UInt32]
    /// Listeners whose accept stopped for want of descriptors (slot indices; see ``Slot/acceptPaused``).
    var pausedListeners: [UInt32]
    /// Connections whose handler found no frame to send in (``notifyWhenFramesFree(_:)``).
    var frameWaiters: [UInt32]
    /// A frame came back to the pool since the frame waiters were last woken.
    var framesReturned = false
    /// Why the ring stopped taking submissions; once set, the engine is broken for good and
    /// ``poll(_:timeout:)`` throws it.
    var ringFailure: SystemCallError?
    /// Operations submitted whose last completion has not come yet (doorbell included).
    public private(set) var operationsInFlight = 0
    /// Frames this engine holds outside the pool and the buffer ring: queued and in-flight sends.
    public private(set) var framesHeld = 0
    /// Connections open now (accepted or connected, not yet freed).
    public private(set) var openConnections = 0
    /// Monotonic nanoseconds, read once per poll: when connections last moved data.
    var pollTime: UInt64 = MonotonicTimeSource().now().nanoseconds
    var nextIdleScan: UInt64 = 0
    /// When ``keepRoom()`` next looks for a connection to close, after finding none idle enough.
    var nextRoomScan: UInt64 = 0
    /// The earliest handler deadline (``setDeadline(_:in:)``), or `.max`.
    var nextDeadline: UInt64 = .max
    var doorbell: Int32 = -1
    var doorbellWriter: Int32 = -1
    let doorbellValue = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
    /// Per slot, what a pending connect's SQEs point at until the kernel has read them: the
    /// peer's address and the linked timeout. Allocated once, so the pointers stay put.
    let connectAddresses: UnsafeMutablePointer<sockaddr_in6>
    let connectTimeouts: UnsafeMutablePointer<__kernel_timespec>
    var doorbellArmed = false
    var shuttingDown = false
    /// Whether receives are multishot (`IORING_RECV_MULTISHOT`, Linux 6.0+). A kernel that refuses
    /// it (`EINVAL`) gets one-shot receives re-armed after every chunk, reported once on stdout.
    public private(set) var usesMultishotReceive = true

    /// Makes the ring, the pool and the receive-buffer ring.
    public init(configuration: TCPEngineConfiguration = .init()) throws(SystemCallError) {
        self.configuration = configuration
        precondition(configuration.maximumConnections > 0 && configuration.maximumConnections < 1 << 24)
        precondition(Int(configuration.receiveBuffers) < configuration.frameCount, "receive buffers must leave frames for sending")
        precondition(configuration.frameCount <= 1 << 16, "send slots are named in 16 bits of user_data")
        ring = try URing(entries: configuration.ringEntries, mode: configuration.mode)
        pool = try FramePool(frameCount: configuration.frameCount, frameSize: configuration.frameSize, headroom: 0)
        buffers = try URingBufferRing(ring: ring, group: configuration.bufferGroup,
                                      entries: configuration.receiveBuffers, pool: pool)
        slots = Array(repeating: Slot(), count: configuration.maximumConnections)
        connectAddresses = .allocate(capacity: configuration.maximumConnections)
        connectAddresses.initialize(repeating: sockaddr_in6(), count: configuration.maximumConnections)
        connectTimeouts = .allocate(capacity: configuration.maximumConnections)
        connectTimeouts.initialize(repeating: __kernel_timespec(), count: configuration.maximumConnections)
        freeSlots = (0..<UInt32(configuration.maximumConnections)).reversed()
        sendSlots = Array(repeating: SendSlot(), count: configuration.frameCount)
        freeSendSlots = (0..<Int32(configuration.frameCount)).reversed()
        sendWaiters = []
        sendWaiters.reserveCapacity(configuration.maximumConnections)
        starved = []
        starved.reserveCapacity(configuration.maximumConnections)
        pausedListeners = []
        pausedListeners.reserveCapacity(configuration.maximumConnections)
        frameWaiters = []
        frameWaiters.reserveCapacity(configuration.maximumConnections)
        usesMultishotReceive = configuration.multishotReceive
        try refillReceiveBuffers()
    }

    deinit {
        for slot in slots where slot.fd >= 0 { Glibc.close(slot.fd) }
        if doorbell >= 0 { Glibc.close(doorbell) }
        if doorbellWriter >= 0 { Glibc.close(doorbellWriter) }
        doorbellValue.deallocate()
        connectAddresses.deallocate()
        connectTimeouts.deallocate()
    }

    // MARK: - Opening

    /// Binds and listens on `endpoint` (port 0: the kernel picks) and starts a multishot accept.
    ///
    /// - Returns: the listener's id and the endpoint it is bound to.
    public func listen(on endpoint: IPEndpoint, backlog: Int32 = 512) throws(SystemCallError) -> (StreamID, IPEndpoint) {
        let fd = try TCPSocket.listen(on: endpoint, backlog: backlog)
        guard let slot = allocateSlot(fd: fd, kind: .listener) else {
            Glibc.close(fd)
            throw SystemCallError(.tcp, operation: "listen(\(endpoint))", errno: EMFILE)
        }
        do throws(SystemCallError) {
            try armAccept(slot)
        } catch {
            freeSlot(slot)
            Glibc.close(fd)
            throw error
        }
        return (id(slot), SocketAddress.localEndpoint(of: fd) ?? endpoint)
    }

    /// Starts connecting to `endpoint`; `StreamHandler/connected(_:error:transport:)` says how it went.
    ///
    /// With a `timeout`, the connect is linked to an `IORING_OP_LINK_TIMEOUT`: if the handshake
    /// has not completed by then the kernel cancels it and the connection fails with `ETIMEDOUT`
    /// (a peer that drops SYNs would otherwise take the kernel's two minutes of retries).
    public func connect(to endpoint: IPEndpoint, timeout: Duration? = nil) throws(SystemCallError) -> StreamID {
        let fd = try TCPSocket.make(family: endpoint.address.family)
        guard let slot = allocateSlot(fd: fd, kind: .connecting) else {
            Glibc.close(fd)
            throw SystemCallError(.tcp, operation: "connect(\(endpoint))", errno: EMFILE)
        }
        let s = Int(slot)
        TCPSocket.store(endpoint, into: &connectAddresses[s])
        let generation = slots[s].generation
        do {
            let sqe = try submission()
            connectAddresses.advanced(by: s).withMemoryRebound(to: sockaddr.self, capacity: 1) {
                io_uring_prep_connect(sqe, fd, $0, TCPSocket.length(of: endpoint))
            }
            sqe.pointee.user_data = Tag(op: .connect, slot: slot, generation: generation).rawValue
            if let timeout {
                // Reserve the timeout's SQE before linking, so a full queue cannot leave a dangling link.
                sqe.pointee.flags |= TCPEngine.linkFlag
                let timer = try submission()
                connectTimeouts[s] = max(timeout, .nanoseconds(1)).kernelTimespec
                io_uring_prep_link_timeout(timer, connectTimeouts.advanced(by: s), 0)
                timer.pointee.user_data = Tag(op: .linkTimeout, slot: slot, generation: generation).rawValue
                slots[s].connectDeadline = true
                started(slot)
            }
        } catch {
            freeSlot(slot)
            Glibc.close(fd)
            throw error
        }
        started(slot)
        return id(slot)
    }

    /// The address of the connection's peer, or its bound address for a listener.
    public func localEndpoint(of connection: StreamID) -> IPEndpoint? {
        guard let slot = live(connection) else { return nil }
        return SocketAddress.localEndpoint(of: slots[Int(slot)].fd)
    }

    /// True while `connection` names an open connection or listener.
    public func isOpen(_ connection: StreamID) -> Bool { live(connection) != nil }

    /// True while `connection` is connected and its write side is neither shut nor about to be
    /// (by ``shutdownWrite(_:)`` or a close): what ``send(_:on:)`` needs to take a frame.
    public func isWritable(_ connection: StreamID) -> Bool {
        guard let slot = live(connection) else { return false }
        return slots[Int(slot)].writable
    }

    /// Why `connection` is closing, when it failed (a reset, a timeout, a refused send); `nil` while
    /// it is open, after a close that was asked for, or once it is gone.
    public func failure(of connection: StreamID) -> SystemCallError? {
        guard let slot = live(connection) else { return nil }
        return slots[Int(slot)].error
    }

    /// Frames `connection` holds for sending: queued, in flight, or sent zero-copy and awaiting the
    /// kernel's notification. On loopback a zero-copy frame stays pinned until the peer's window
    /// lets it out, so this, not the queue length, is what bounds the pool a connection can take.
    public func framesHeld(on connection: StreamID) -> Int {
        guard let slot = live(connection) else { return 0 }
        return Int(slots[Int(slot)].held)
    }

    // MARK: - Frames and sending

    /// A fresh frame to fill and ``send(_:on:)``, or `nil` when the pool is empty.
    public func makeFrame() -> Packet? {
        guard let packet = pool.allocate() else { return nil }
        return packet
    }

    /// Frames free for ``makeFrame()`` now.
    public var freeFrames: Int { pool.freeCount }

    /// Gives a frame back to the pool (the receive ring is topped up from the pool after every poll).
    public func release(_ packet: consuming Packet) {
        pool.release(packet)
        framesReturned = true
    }

    /// Calls the handler's `sendQueueDrained` for `connection` after the first poll in which
    /// frames came back to the pool (once; ask again if that was not enough).
    public func notifyWhenFramesFree(_ connection: StreamID) {
        guard let slot = live(connection), slots[Int(slot)].kind == .open, !slots[Int(slot)].waitingForFrames else { return }
        slots[Int(slot)].waitingForFrames = true
        frameWaiters.append(slot)
    }

    /// Aborts `connection` at the first poll `timeout` from now, unless set again or cleared (`nil`) first.
    public func setDeadline(_ connection: StreamID, in timeout: Duration?) {
        guard let slot = live(connection), slots[Int(slot)].kind == .open else { return }
        guard let timeout else {
            slots[Int(slot)].deadline = 0
            return
        }
        let deadline = max(pollTime &+ UInt64(clamping: timeout.nanosecondsClamped), 1)
        slots[Int(slot)].deadline = deadline
        nextDeadline = min(nextDeadline, deadline)
    }

    /// Queues `packet`'s data to be sent on `connection`, after everything queued before.
    ///
    /// - Returns: false when the connection is gone or its write side is shut (the frame is released).
    @discardableResult
    public func send(_ packet: consuming Packet, on connection: StreamID) -> Bool {
        guard let slot = live(connection), slots[Int(slot)].writable, packet.length > 0 else {
            pool.release(packet)
            return false
        }
        let index = freeSendSlots.removeLast()   // one send slot per frame: never runs out
        sendSlots[Int(index)] = SendSlot(
            address: pool.address(of: packet), offset: UInt32(packet.offset), length: UInt32(packet.length),
            next: -1)
        _ = consume packet
        framesHeld += 1
        let s = Int(slot)
        if slots[s].sendTail >= 0 { sendSlots[Int(slots[s].sendTail)].next = index } else { slots[s].sendHead = index }
        slots[s].sendTail = index
        slots[s].queued += 1
        slots[s].held += 1
        deferringRingFailure {
            if Int(slots[s].held) > sendBudget, slots[s].receiving, !slots[s].receivePaused {
                try pauseReceive(slot)
            }
            try kick(slot)
        }
        return true
    }

    /// Shuts the write side (`shutdown(SHUT_WR)`) once everything queued has been sent.
    public func shutdownWrite(_ connection: StreamID) {
        guard let slot = live(connection), slots[Int(slot)].writable else { return }
        slots[Int(slot)].wantShutdownWrite = true
        deferringRingFailure { try kick(slot) }
    }

    /// Closes `connection` once everything queued has been sent (`abort`: now, dropping queued data
    /// and cancelling what is in flight). `StreamHandler/closed(_:error:transport:)` follows
    /// when the last operation on it has completed.
    public func close(_ connection: StreamID, abort: Bool = false) {
        guard let slot = live(connection) else { return }
        // Listeners and connections still connecting have nothing to finish: they close at once.
        if abort || slots[Int(slot)].kind != .open {
            if !slots[Int(slot)].closeSubmitted {
                deferringRingFailure { try abortConnection(slot, error: nil) }
            }
        } else {
            slots[Int(slot)].wantClose = true
            deferringRingFailure { try kick(slot) }
        }
    }

    /// Stops receiving on `connection` (for a consumer that falls behind) until ``resumeReceiving(_:)``.
    public func pauseReceiving(_ connection: StreamID) {
        guard let slot = live(connection), slots[Int(slot)].kind == .open else { return }
        slots[Int(slot)].userPaused = true
        if slots[Int(slot)].receiving, !slots[Int(slot)].receivePaused {
            deferringRingFailure { try pauseReceive(slot) }
        }
    }

    /// Receives again on a connection paused by ``pauseReceiving(_:)``.
    public func resumeReceiving(_ connection: StreamID) {
        guard let slot = live(connection) else { return }
        slots[Int(slot)].userPaused = false
        deferringRingFailure { try maybeRearmReceive(slot) }
    }

    // MARK: - Cross-thread doorbell

    /// The write end of a pipe that another thread writes a byte to (non-blocking; a full pipe
    /// already rings) to wake ``poll(_:timeout:)``: one read of the other end stays armed on the
    /// ring. Made on first use.
    public func doorbellDescriptor() throws(SystemCallError) -> Int32 {
        if doorbell < 0 {
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else { throw SystemCallError(.tcp, operation: "pipe", errno: errno) }
            for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            _ = fcntl(ends[1], F_SETFL, O_NONBLOCK)
            doorbell = ends[0]
            doorbellWriter = ends[1]
            try armDoorbell()
        }
        return doorbellWriter
    }

    func armDoorbell() throws(SystemCallError) {
        guard doorbell >= 0, !doorbellArmed, !shuttingDown else { return }
        let sqe = try submission()
        io_uring_prep_read(sqe, doorbell, doorbellValue, 64, 0)
        sqe.pointee.user_data = Tag(op: .doorbell, slot: 0, generation: 0).rawValue
        doorbellArmed = true
        operationsInFlight += 1
    }

    // MARK: - Running

    /// Submits what is queued, waits up to `timeout` (`nil`: until something completes) for at
    /// least one completion, and hands every completion to `delegate`.
    ///
    /// - Returns: the number of completions handled.
    /// - Throws: `SystemCallError` when the ring fails, here or while serving an earlier request. The
    ///   engine is broken then: every later call throws the same error, and ``shutdown(_:timeout:)``
    ///   returns at once, its tally showing what stayed in flight.
    @discardableResult
    public func poll<D: StreamHandler>(_ delegate: inout D, timeout: Duration?) throws(SystemCallError) -> Int where D.Transport == TCPEngine {
        if let ringFailure { throw ringFailure }
        do {
            _ = try ring.submitAndWait(minimumCompletions: 1, timeout: timeout)
        } catch {
            if ![ETIME, EINTR, EBUSY, EAGAIN].contains(error.code) {
                ringFailure = error
                throw error
            }
        }
        pollTime = MonotonicTimeSource().now().nanoseconds
        var handled = 0
        while true {
            let n = ring.drainCompletions { completion in
                deferringRingFailure { try handle(completion, &delegate) }
            }
            handled += n
            if n == 0 { break }
        }
        deferringRingFailure {
            try refillReceiveBuffers()
            try closeIdleConnections()
            try closeLateConnections()
            // Room for the next connection as soon as a waiting one is idle enough, not at the
            // next accept (which would be refused first).
            try keepRoom()
        }
        wakeFrameWaiters(&delegate)
        if let ringFailure { throw ringFailure }
        return handled
    }

    /// Frames came back: the connections that found none go on, in the order they asked (one
    /// that still finds too few asks again and waits for the next).
    func wakeFrameWaiters<D: StreamHandler>(_ delegate: inout D) where D.Transport == TCPEngine {
        guard framesReturned, !frameWaiters.isEmpty, pool.freeCount > 0 else { return }
        framesReturned = false
        // Walked in place (a copy would allocate on every wake): those that ask again are
        // appended behind the ones woken now, and stay for the next poll.
        let waiting = frameWaiters.count
        for index in 0..<waiting {
            let slot = frameWaiters[index]
            guard slots[Int(slot)].waitingForFrames else { continue }
            slots[Int(slot)].waitingForFrames = false
            if slots[Int(slot)].kind == .open && !slots[Int(slot)].closeSubmitted {
                delegate.sendQueueDrained(id(slot), transport: self)
            }
        }
        frameWaiters.removeFirst(waiting)
    }

    /// Sends in flight at most: ``TCPEngineConfiguration/maximumSendsInFlight``, at least one per connection.
    var sendLimit: Int { max(configuration.maximumSendsInFlight, configuration.maximumConnections) }

    /// Frames for sending: the pool's frames that are not in the receive ring.
    var framesOutsideRing: Int { configuration.frameCount - Int(configuration.receiveBuffers) }

    /// Frames one connection may hold for sending now: its fair share of those outside the
    /// receive ring, within ``TCPEngineConfiguration/maximumQueuedPerConnection``. An
    /// application that queues on its own (a file sent to every client) keeps within it, so
    /// peers that do not read cannot take the frames the others need. A share is kept for the
    /// next connection too: frames one holds come back only as its peer reads, so peers that
    /// never do would otherwise leave none for whoever connects after them.
    public var sendBudget: Int {
        min(configuration.maximumQueuedPerConnection, max(1, framesOutsideRing / (openConnections + 1)))
    }

    /// Send credits one connection may keep awaiting zero-copy notifications: its share of
    /// ``TCPEngineConfiguration/maximumSendsInFlight`` (never below 1).
    var sendCreditShare: Int32 {
        Int32(max(1, sendLimit / max(1, openConnections)))
    }

    /// Aborts the connections that moved no data for the idle timeout (a peer that stopped
    /// reading holds its frames until then), 16 times per timeout, so none outlives it by more
    /// than a sixteenth.
    func closeIdleConnections() throws(SystemCallError) {
        guard let timeout = configuration.idleTimeout, pollTime >= nextIdleScan, !shuttingDown else { return }
        let limit = UInt64(clamping: timeout.nanosecondsClamped)
        nextIdleScan = pollTime + max(limit / 16, 10_000_000)
        for index in slots.indices where slots[index].kind == .open && !slots[index].closeSubmitted
            && pollTime &- slots[index].lastProgress >= limit / 2 {
            // A send completes only once the kernel has taken all of it: a peer draining a full
            // socket buffer slowly moves data with no completion to show. Its send queue, looked
            // at half way and again at the end, tells.
            let unsent = Self.unsentBytes(slots[index].fd)
            guard pollTime &- slots[index].lastProgress >= limit else {
                slots[index].lastUnsent = unsent
                continue
            }
            if unsent > 0, unsent != slots[index].lastUnsent {
                slots[index].lastUnsent = unsent
                slots[index].lastProgress = pollTime
                continue
            }
            counters.idleClosed += 1
            try abortConnection(UInt32(index), error: SystemCallError(
                .tcp, operation: "waiting on a connection", errno: ETIMEDOUT,
                hint: "no data moved either way for the idle timeout (\(timeout))"))
        }
        try keepRoom()
    }

    /// Bytes in `fd`'s send queue not yet acknowledged by the peer (`SIOCOUTQ`); -1 when unknown.
    static func unsentBytes(_ fd: Int32) -> Int32 {
        var count: Int32 = 0
        return sluice_ioctl_pointer(fd, UInt(TIOCOUTQ), &count) == 0 ? count : -1
    }

    /// Slots ``TCPEngineConfiguration/closesIdlestWhenFull`` keeps free for new connections.
    var roomKept: Int { max(1, configuration.maximumConnections / 64) }

    /// Closes the idlest connections while fewer than ``roomKept`` slots are free or closing
    /// (``TCPEngineConfiguration/closesIdlestWhenFull``): first the idlest of those whose handler
    /// waits on a deadline (a handshake, a message not whole), idle for a quarter second at least,
    /// so silent clients can neither keep new ones out for long nor displace established ones;
    /// with none such, the idlest of all, idle for a sixteenth of the idle timeout at least,
    /// unless so many are waiting (``roomKept`` or more: a flood) that they will make the room.
    func keepRoom() throws(SystemCallError) {
        guard configuration.closesIdlestWhenFull, let timeout = configuration.idleTimeout, !shuttingDown,
              freeSlots.count < roomKept, pollTime >= nextRoomScan else { return }
        let minimumIdle = UInt64(clamping: timeout.nanosecondsClamped) / 16
        let minimumIdleWaiting: UInt64 = 250_000_000
        var room = freeSlots.count + slots.count(where: { $0.kind != .free && ($0.wantClose || $0.closeSubmitted) })
        while room < roomKept {
            var idlest = -1
            var idlestWaiting = -1
            var waiting = 0
            for index in slots.indices where slots[index].kind == .open && !slots[index].wantClose && !slots[index].closeSubmitted {
                let progress = slots[index].lastProgress
                let idle = pollTime &- progress
                if slots[index].deadline != 0 {
                    waiting += 1
                    if idle >= minimumIdleWaiting, idlestWaiting < 0 || progress < slots[idlestWaiting].lastProgress { idlestWaiting = index }
                } else if idle >= minimumIdle, idlest < 0 || progress < slots[idlest].lastProgress {
                    idlest = index
                }
            }
            let victim = idlestWaiting >= 0 || waiting >= roomKept ? idlestWaiting : idlest
            guard victim >= 0 else {
                // None idle enough: a flood of accepts must not scan the table for each.
                nextRoomScan = pollTime + min(minimumIdle, minimumIdleWaiting) / 4
                return
            }
            counters.evicted += 1
            room += 1
            try abortConnection(UInt32(victim), error: SystemCallError(
                .tcp, operation: "making room for a new connection", errno: ECONNABORTED,
                hint: "the connection table was full and this connection the idlest"
                    + (victim == idlestWaiting ? " of those its handler was waiting on" : "")))
        }
    }

    /// Aborts the connections whose handler's deadline has passed, and finds the next deadline.
    func closeLateConnections() throws(SystemCallError) {
        guard pollTime >= nextDeadline, !shuttingDown else { return }
        nextDeadline = .max
        for index in slots.indices where slots[index].deadline != 0 && slots[index].kind == .open && !slots[index].closeSubmitted {
            guard pollTime >= slots[index].deadline else {
                nextDeadline = min(nextDeadline, slots[index].deadline)
                continue
            }
            slots[index].deadline = 0
            counters.deadlineClosed += 1
            try abortConnection(UInt32(index), error: SystemCallError(
                .tcp, operation: "waiting on a connection", errno: ETIMEDOUT,
                hint: "its handler's deadline passed (a message not whole in time)"))
        }
    }

    /// Submits pending operations without waiting.
    public func flush() throws(SystemCallError) {
        if let ringFailure { throw ringFailure }
        _ = try ring.submit()
    }

    /// Closes every listener and connection at once, cancelling whatever is in flight, and waits up
    /// to `timeout` until every operation has completed and every frame is back.
    ///
    /// - Returns: the frame tally: balanced when nothing leaked.
    @discardableResult
    public func shutdown<D: StreamHandler>(_ delegate: inout D, timeout: Duration = .seconds(5)) -> FrameTally where D.Transport == TCPEngine {
        shuttingDown = true
        deferringRingFailure {
            for index in slots.indices where slots[index].kind != .free && !slots[index].closeSubmitted {
                try abortConnection(UInt32(index), error: nil)
            }
            if doorbellArmed {
                let sqe = try submission()
                io_uring_prep_cancel64(sqe, Tag(op: .doorbell, slot: 0, generation: 0).rawValue, 0)
                sqe.pointee.user_data = Tag(op: .engineCancel, slot: 0, generation: 0).rawValue
                operationsInFlight += 1
            }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        // A broken ring completes nothing more: what is in flight stays there (the tally says so).
        while operationsInFlight > 0, ringFailure == nil, clock.now < deadline {
            _ = try? poll(&delegate, timeout: .milliseconds(50))
        }
        return tally()
    }

    /// Where the frames are: free, in the receive ring, or held (queued and in-flight sends).
    public func tally() -> FrameTally {
        pool.tally(held: framesHeld + buffers.providedCount)
    }

    /// The number of `io_uring_enter` calls so far.
    public var enterCalls: UInt64 { ring.enterCalls }

    // MARK: - Internals

    func id(_ slot: UInt32) -> StreamID {
        StreamID(slot: slot, generation: slots[Int(slot)].generation)
    }

    func live(_ connection: StreamID) -> UInt32? {
        let s = Int(connection.slot)
        guard s < slots.count, slots[s].kind != .free, slots[s].generation == connection.generation else { return nil }
        return connection.slot
    }

    func allocateSlot(fd: Int32, kind: Slot.Kind) -> UInt32? {
        guard let slot = freeSlots.popLast() else { return nil }
        let generation = slots[Int(slot)].generation
        slots[Int(slot)] = Slot()
        slots[Int(slot)].generation = generation
        slots[Int(slot)].fd = fd
        slots[Int(slot)].kind = kind
        slots[Int(slot)].lastProgress = pollTime
        if kind == .open { openConnections += 1 }
        return slot
    }

    func freeSlot(_ slot: UInt32) {
        let s = Int(slot)
        if slots[s].kind == .open { openConnections -= 1 }
        slots[s].kind = .free
        slots[s].fd = -1
        slots[s].generation &+= 1
        freeSlots.append(slot)
    }

    /// The next submission entry. When the queue is full the ring submits to make room (and
    /// under SQPOLL waits for its thread), retrying a bounded number of times; a ring that still
    /// cannot give an entry is broken: the error is kept in ``ringFailure`` and thrown, here and by
    /// every later submission and ``poll(_:timeout:)``.
    func submission() throws(SystemCallError) -> UnsafeMutablePointer<io_uring_sqe> {
        if let ringFailure { throw ringFailure }
        do {
            return try ring.nextSubmission()
        } catch {
            let failure = SystemCallError(.tcp, operation: "io_uring submission (\(error.operation))", errno: error.errno, hint: error.hint)
            ringFailure = failure
            throw failure
        }
    }

    /// Runs `body` for a caller that cannot take an error (a request such as ``send(_:on:)``, or a
    /// completion being handled): a ring failure is in ``ringFailure`` already, for
    /// ``poll(_:timeout:)`` to throw.
    func deferringRingFailure(_ body: () throws -> Void) {
        do { try body() } catch { assert(ringFailure != nil, "tcp engine: \(error) not kept") }
    }

    func started(_ slot: UInt32) {
        slots[Int(slot)].pendingOps += 1
        operationsInFlight += 1
    }

    func finished(_ slot: UInt32) {
        slots[Int(slot)].pendingOps -= 1
        operationsInFlight -= 1
    }

    func armAccept(_ slot: UInt32) throws(SystemCallError) {
        let sqe = try submission()
        io_uring_prep_multishot_accept(sqe, slots[Int(slot)].fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        sqe.pointee.user_data = Tag(op: .accept, slot: slot, generation: slots[Int(slot)].generation).rawValue
        started(slot)
    }

    /// Stops accepting on a listener until a descriptor is freed (see ``resumeAccepting()``): with
    /// none left, a re-armed accept would fail at once, again and again.
    func pauseAccepting(_ slot: UInt32) {
        slots[Int(slot)].acceptPaused = true
        pausedListeners.append(slot)
        counters.acceptPauses += 1
    }

    /// Re-arms the listeners paused for want of descriptors: one of the engine's has just closed.
    func resumeAccepting() throws(SystemCallError) {
        guard !pausedListeners.isEmpty else { return }
        let paused = pausedListeners
        pausedListeners.removeAll(keepingCapacity: true)
        for slot in paused where slots[Int(slot)].kind == .listener && slots[Int(slot)].acceptPaused {
            slots[Int(slot)].acceptPaused = false
            if !slots[Int(slot)].closeSubmitted && !shuttingDown { try armAccept(slot) }
        }
    }

    func armReceive(_ slot: UInt32) throws(SystemCallError) {
        let s = Int(slot)
        let sqe = try submission()
        // A multishot receive takes buffers as fast as its peer sends, past any budget: with more
        // connections than the frames outside the ring cover at full budget, each receive takes one.
        if usesMultishotReceive && openConnections * configuration.maximumQueuedPerConnection <= framesOutsideRing {
            io_uring_prep_recv_multishot(sqe, slots[s].fd, nil, 0, 0)
        } else {
            io_uring_prep_recv(sqe, slots[s].fd, nil, 0, 0)
        }
        sqe.pointee.flags |= TCPEngine.bufferSelectFlag
        sqe.pointee.buf_group = configuration.bufferGroup
        sqe.pointee.user_data = Tag(op: .receive, slot: slot, generation: slots[s].generation).rawValue
        slots[s].receiving = true
        slots[s].receivePaused = false
        started(slot)
    }

    /// Cancels the multishot receive (its last completion clears `receiving`).
    func pauseReceive(_ slot: UInt32) throws(SystemCallError) {
        let s = Int(slot)
        slots[s].receivePaused = true
        counters.receivePauses += 1
        let sqe = try submission()
        let target = Tag(op: .receive, slot: slot, generation: slots[s].generation).rawValue
        io_uring_prep_cancel64(sqe, target, 0)
        sqe.pointee.user_data = Tag(op: .cancel, slot: slot, generation: slots[s].generation).rawValue
        started(slot)
    }

    func maybeRearmReceive(_ slot: UInt32) throws(SystemCallError) {
        let s = Int(slot)
        guard slots[s].kind == .open, !slots[s].receiving, !slots[s].readClosed, !slots[s].userPaused,
              !slots[s].closeSubmitted, !slots[s].starved,
              Int(slots[s].held) <= sendBudget / 2
        else { return }
        try armReceive(slot)
    }

    /// Starts the next send, or the shutdown/close that waited for the queue to drain.
    func kick(_ slot: UInt32) throws(SystemCallError) {
        let s = Int(slot)
        guard slots[s].kind == .open, !slots[s].closeSubmitted else { return }
        if slots[s].sendInFlight { return }
        if slots[s].sendHead >= 0 {
            // A peer that does not read leaves its zero-copy sends unacknowledged, so each keeps a
            // credit until then: a connection gets its share, and goes on at its own notifications.
            guard slots[s].notificationsPending < sendCreditShare else { return }
            guard sendsInFlight < sendLimit else {
                if !slots[s].waitingForCredit {
                    slots[s].waitingForCredit = true
                    sendWaiters.append(slot)
                }
                return
            }
            try submitSend(slot, index: slots[s].sendHead)
            return
        }
        if slots[s].wantShutdownWrite && !slots[s].shutdownSubmitted {
            slots[s].shutdownSubmitted = true
            let sqe = try submission()
            io_uring_prep_shutdown(sqe, slots[s].fd, Int32(SHUT_WR))
            sqe.pointee.user_data = Tag(op: .shutdown, slot: slot, generation: slots[s].generation).rawValue
            started(slot)
            return
        }
        if slots[s].wantClose && (!slots[s].shutdownSubmitted || slots[s].shutdownDone) {
            try submitClose(slot)
        }
    }

    func submitSend(_ slot: UInt32, index: Int32) throws(SystemCallError) {
        let s = Int(slot)
        let send = sendSlots[Int(index)]
        let data = pool.base + Int(send.address) + Int(send.offset)
        let sqe = try submission()
        let zeroCopy = configuration.zeroCopyThreshold.map { Int(send.length) >= $0 } ?? false
        // More queued behind it: TCP fills whole segments instead of pushing each frame as its
        // own (under TCP_NODELAY); the last frame of the queue pushes them.
        let flags = Int32(MSG_NOSIGNAL) | (send.next >= 0 ? Int32(MSG_MORE) : 0)
        if zeroCopy {
            io_uring_prep_send_zc(sqe, slots[s].fd, data, Int(send.length), flags, 0)
            counters.zeroCopySends += 1
        } else {
            io_uring_prep_send(sqe, slots[s].fd, data, Int(send.length), flags)
        }
        sqe.pointee.user_data = Tag(op: zeroCopy ? .sendZeroCopy : .send, slot: slot,
                                    generation: slots[s].generation, aux: UInt16(index)).rawValue
        counters.sends += 1
        slots[s].sendInFlight = true
        sendsInFlight += 1
        started(slot)
    }

    /// Cancels everything on the descriptor, then closes it (hard-linked: the close runs whatever
    /// the cancel found).
    func submitClose(_ slot: UInt32) throws(SystemCallError) {
        let s = Int(slot)
        guard !slots[s].closeSubmitted else { return }
        slots[s].closeSubmitted = true
        let generation = slots[s].generation
        let cancel = try submission()
        io_uring_prep_cancel_fd(cancel, slots[s].fd, UInt32(IORING_ASYNC_CANCEL_ALL))
        cancel.pointee.flags |= TCPEngine.hardLinkFlag
        cancel.pointee.user_data = Tag(op: .cancel, slot: slot, generation: generation).rawValue
        started(slot)
        let close = try submission()
        io_uring_prep_close(close, slots[s].fd)
        close.pointee.user_data = Tag(op: .close, slot: slot, generation: generation).rawValue
        started(slot)
    }

    /// Drops queued data and closes now.
    func abortConnection(_ slot: UInt32, error: SystemCallError?) throws(SystemCallError) {
        let s = Int(slot)
        if slots[s].error == nil { slots[s].error = error }
        // Queued sends not yet in flight go back now; the one in flight returns on its completion.
        let inFlight: Int32 = slots[s].sendInFlight ? slots[s].sendHead : -1
        var index = inFlight >= 0 ? sendSlots[Int(inFlight)].next : slots[s].sendHead
        while index >= 0 {
            let next = sendSlots[Int(index)].next
            if sendSlots[Int(index)].notifications > 0 {
                sendSlots[Int(index)].completed = true   // its notification brings the frame back
            } else {
                releaseSendSlot(index, of: slot)
            }
            slots[s].queued -= 1
            index = next
        }
        if inFlight >= 0 { sendSlots[Int(inFlight)].next = -1 }
        slots[s].sendHead = inFlight
        slots[s].sendTail = inFlight
        slots[s].wantClose = true
        if slots[s].kind == .connecting || slots[s].kind == .listener || slots[s].kind == .open {
            try submitClose(slot)
        }
    }

    func releaseSendSlot(_ index: Int32, of slot: UInt32) {
        pool.releaseAddress(sendSlots[Int(index)].address)
        framesReturned = true
        freeSendSlots.append(index)
        framesHeld -= 1
        slots[Int(slot)].held -= 1
    }

    func refillReceiveBuffers() throws(SystemCallError) {
        var added = false
        while buffers.providedCount < Int(configuration.receiveBuffers), let address = pool.allocateAddress() {
            buffers.provide(frameAddress: address)
            added = true
        }
        if added { buffers.commit() }
        if !starved.isEmpty && buffers.providedCount > 0 {
            let waiting = starved
            starved.removeAll(keepingCapacity: true)
            for slot in waiting {
                slots[Int(slot)].starved = false
                try maybeRearmReceive(slot)
            }
        }
    }

    func grantSendCredits() throws(SystemCallError) {
        while sendsInFlight < sendLimit, sendWaiterHead < sendWaiters.count {
            let slot = sendWaiters[sendWaiterHead]
            sendWaiterHead += 1
            slots[Int(slot)].waitingForCredit = false
            try kick(slot)
        }
        if sendWaiterHead == sendWaiters.count {
            sendWaiters.removeAll(keepingCapacity: true)
            sendWaiterHead = 0
        }
    }

    /// Frees the slot and tells the delegate once close has completed and nothing is in flight.
    func maybeFinish<D: StreamHandler>(_ slot: UInt32, _ delegate: inout D) throws(SystemCallError) where D.Transport == TCPEngine {
        let s = Int(slot)
        guard slots[s].kind != .free, slots[s].closeDone, slots[s].pendingOps == 0 else { return }
        let connection = id(slot)
        let kind = slots[s].kind
        let error = slots[s].error
        precondition(slots[s].sendHead < 0 && slots[s].queued == 0, "tcp engine: closed with sends queued")
        freeSlot(slot)
        counters.closed += kind == .listener ? 0 : 1
        try resumeAccepting()
        if kind == .connecting {
            delegate.connected(connection, error: error ?? SystemCallError(.tcp, operation: "connect", errno: ECANCELED), transport: self)
        } else {
            delegate.closed(connection, error: error, transport: self)
        }
    }

    func handle<D: StreamHandler>(_ completion: URingCompletion, _ delegate: inout D) throws(SystemCallError) where D.Transport == TCPEngine {
        let tag = Tag(rawValue: completion.userData)
        if tag.op == .doorbell {
            doorbellArmed = false
            operationsInFlight -= 1
            try armDoorbell()
            return
        }
        if tag.op == .engineCancel {
            operationsInFlight -= 1
            return
        }
        let slot = tag.slot
        let s = Int(slot)
        guard s < slots.count, slots[s].generation == tag.generation, slots[s].kind != .free else {
            assertionFailure("tcp engine: completion for a slot already freed: \(tag.op)")
            return
        }
        let final = !completion.hasMore
        switch tag.op {
        case .accept:
            if completion.result >= 0 {
                let fd = completion.result
                if shuttingDown || slots[s].closeSubmitted {
                    Glibc.close(fd)
                } else if let child = allocateSlot(fd: fd, kind: .open) {
                    counters.accepted += 1
                    try armReceive(child)
                    delegate.accepted(id(child), listener: id(slot), transport: self)
                    try keepRoom()
                } else {
                    counters.rejected += 1
                    Glibc.close(fd)
                    try keepRoom()
                }
            }
            if final {
                finished(slot)
                let result = completion.result
                let listening = !slots[s].closeSubmitted && !shuttingDown && result != -EBADF && result != -EINVAL
                if listening && (result == -EMFILE || result == -ENFILE) {
                    pauseAccepting(slot)
                } else if listening {
                    try armAccept(slot)
                }
            }
        case .receive:
            if completion.result > 0, let bid = completion.bufferID {
                let address = buffers.consumed(bufferID: bid)
                let packet = pool.packet(at: address, offset: 0, length: Int(completion.result))
                counters.receivedBytes += UInt64(completion.result)
                counters.receivedChunks += 1
                slots[s].lastProgress = pollTime
                delegate.received(packet, on: id(slot), transport: self)
            } else if let bid = completion.bufferID {
                pool.releaseAddress(buffers.consumed(bufferID: bid))
            }
            if final {
                finished(slot)
                slots[s].receiving = false
                let result = completion.result
                if result == 0 {
                    if !slots[s].readClosed {
                        slots[s].readClosed = true
                        delegate.readClosed(id(slot), transport: self)
                    }
                } else if result == -ENOBUFS {
                    counters.receiveStarved += 1
                    slots[s].starved = true
                    starved.append(slot)
                } else if result == -ECANCELED || result > 0 {
                    try maybeRearmReceive(slot)
                } else if result == -EINVAL && usesMultishotReceive {
                    usesMultishotReceive = false
                    configuration.logger.notice("this kernel refuses multishot recv (IORING_RECV_MULTISHOT); falling back to one-shot receives")
                    try maybeRearmReceive(slot)
                } else if result < 0 && !slots[s].closeSubmitted {
                    try abortConnection(slot, error: SystemCallError(.tcp, operation: "recv", errno: -result))
                }
            }
        case .send, .sendZeroCopy:
            let index = Int32(tag.aux)
            if completion.isNotification {
                // A zero-copy send's buffer is free: the frame returns after its last notification.
                sendSlots[Int(index)].notifications -= 1
                slots[s].notificationsPending -= 1
                sendsInFlight -= 1
                finished(slot)
                if sendSlots[Int(index)].notifications == 0 && sendSlots[Int(index)].completed {
                    releaseSendSlot(index, of: slot)
                    try maybeRearmReceive(slot)
                    // A frame back with nothing queued: a handler that stopped for want of frames goes on now.
                    if slots[s].sendHead < 0 && slots[s].kind == .open && !slots[s].closeSubmitted {
                        delegate.sendQueueDrained(id(slot), transport: self)
                    }
                }
                try kick(slot)
                try grantSendCredits()
                break
            }
            if tag.op == .sendZeroCopy && completion.hasMore {
                // Operation and credit stay until the notification.
                sendSlots[Int(index)].notifications += 1
                slots[s].notificationsPending += 1
            } else {
                sendsInFlight -= 1
                finished(slot)
            }
            slots[s].sendInFlight = false
            let result = completion.result
            var done = true
            if result >= 0 {
                counters.sentBytes += UInt64(result)
                if result > 0 { slots[s].lastProgress = pollTime }
                let remaining = Int(sendSlots[Int(index)].length) - Int(result)
                if remaining > 0 && !slots[s].closeSubmitted {
                    // Short send: the rest goes next, from the same frame, keeping order.
                    sendSlots[Int(index)].offset += UInt32(result)
                    sendSlots[Int(index)].length -= UInt32(result)
                    done = false
                }
            }
            if done {
                precondition(slots[s].sendHead == index, "tcp engine: send completion out of order")
                slots[s].sendHead = sendSlots[Int(index)].next
                if slots[s].sendHead < 0 { slots[s].sendTail = -1 }
                slots[s].queued -= 1
                sendSlots[Int(index)].completed = true
                if sendSlots[Int(index)].notifications == 0 { releaseSendSlot(index, of: slot) }
            }
            if result < 0 {
                if result != -ECANCELED || !slots[s].closeSubmitted {
                    try abortConnection(slot, error: SystemCallError(.tcp, operation: "send", errno: -result))
                }
            } else if slots[s].error != nil && !slots[s].closeSubmitted {
                try abortConnection(slot, error: slots[s].error)
            } else {
                try kick(slot)
                if slots[s].sendHead < 0 && slots[s].kind == .open && !slots[s].closeSubmitted {
                    delegate.sendQueueDrained(id(slot), transport: self)
                }
                try maybeRearmReceive(slot)
            }
            try grantSendCredits()
        case .connect:
            finished(slot)
            if completion.result == 0 && !slots[s].closeSubmitted {
                slots[s].kind = .open
                slots[s].lastProgress = pollTime
                openConnections += 1
                counters.connected += 1
                try armReceive(slot)
                delegate.connected(id(slot), error: nil, transport: self)
            } else if !slots[s].closeSubmitted {
                // Only the linked timeout cancels a connect that is not being closed.
                let timedOut = completion.result == -ECANCELED && slots[s].connectDeadline
                if timedOut { counters.connectTimeouts += 1 }
                try abortConnection(slot, error: SystemCallError(.tcp, operation: "connect", errno: timedOut ? ETIMEDOUT : -completion.result))
            }
        case .linkTimeout:
            // -ETIME: it fired and cancelled the connect; -ECANCELED: the connect finished first.
            finished(slot)
        case .shutdown:
            finished(slot)
            slots[s].shutdownDone = true
            if completion.result < 0 && completion.result != -ENOTCONN && !slots[s].closeSubmitted {
                try abortConnection(slot, error: SystemCallError(.tcp, operation: "shutdown", errno: -completion.result))
            } else {
                // Both directions have ended: nothing is left to do on the stream.
                if slots[s].readClosed { slots[s].wantClose = true }
                try kick(slot)
            }
        case .cancel:
            finished(slot)
            if completion.result > 0 { counters.cancelled += UInt64(completion.result) }
        case .close:
            finished(slot)
            slots[s].closeDone = true
            slots[s].fd = -1
        case .doorbell, .engineCancel, .none:
            break
        }
        try maybeFinish(slot, &delegate)
    }
}

// MARK: - Tables

extension TCPEngine {
    /// `IOSQE_IO_HARDLINK`, `IOSQE_IO_LINK` and `IOSQE_BUFFER_SELECT`.
    static let hardLinkFlag = UInt8(1 << IOSQE_IO_HARDLINK_BIT)
    static let linkFlag = UInt8(1 << IOSQE_IO_LINK_BIT)
    static let bufferSelectFlag = UInt8(1 << IOSQE_BUFFER_SELECT_BIT)

    /// One connection's (or listener's) state.
    struct Slot {
        enum Kind: UInt8 { case free, listener, connecting, open }
        var fd: Int32 = -1
        var generation: UInt16 = 0
        var kind: Kind = .free
        var pendingOps: Int32 = 0
        var receiving = false
        var receivePaused = false
        var userPaused = false
        var starved = false
        /// A listener whose accept stopped for want of descriptors (in ``TCPEngine/pausedListeners``).
        var acceptPaused = false
        var readClosed = false
        var sendHead: Int32 = -1
        var sendTail: Int32 = -1
        var queued: Int32 = 0
        /// Frames held for sending: `queued` plus those awaiting a zero-copy notification.
        var held: Int32 = 0
        var sendInFlight = false
        var waitingForCredit = false
        /// In ``TCPEngine/frameWaiters``.
        var waitingForFrames = false
        var wantShutdownWrite = false
        var shutdownSubmitted = false
        var shutdownDone = false
        var wantClose = false
        var closeSubmitted = false
        var closeDone = false
        var error: SystemCallError?
        /// A linked timeout guards this connection's connect.
        var connectDeadline = false
        /// Zero-copy sends of this connection whose notification has not come.
        var notificationsPending: Int32 = 0
        /// When data last moved either way (``TCPEngine/pollTime``).
        var lastProgress: UInt64 = 0
        /// The send queue's unacknowledged bytes when the idle scan last looked (`SIOCOUTQ`).
        var lastUnsent: Int32 = 0
        /// When the handler's deadline passes (``TCPEngine/pollTime``); 0 for none.
        var deadline: UInt64 = 0

        var writable: Bool { kind == .open && !wantShutdownWrite && !wantClose && !closeSubmitted }
    }

    /// One frame queued for sending or in flight.
    struct SendSlot {
        var address: UInt64 = 0
        var offset: UInt32 = 0
        var length: UInt32 = 0
        var next: Int32 = -1
        /// Zero-copy notifications still to come (a short zero-copy send resubmits from the same frame).
        var notifications: UInt8 = 0
        /// Off the queue: the frame returns when no notification is left.
        var completed = false
    }

    /// The operation kinds `user_data` names.
    enum Operation: UInt8 {
        case none = 0, accept, receive, send, sendZeroCopy, connect, shutdown, cancel, close, doorbell, engineCancel, linkTimeout
    }

    /// `user_data` layout: operation in bits 56–63, slot in 32–55, generation in 16–31, and an
    /// operation-specific 16 bits (the send slot) in 0–15.
    struct Tag {
        var rawValue: UInt64

        init(rawValue: UInt64) { self.rawValue = rawValue }

        init(op: Operation, slot: UInt32, generation: UInt16, aux: UInt16 = 0) {
            rawValue = UInt64(op.rawValue) << 56 | UInt64(slot & 0xFF_FFFF) << 32 | UInt64(generation) << 16 | UInt64(aux)
        }

        var op: Operation { Operation(rawValue: UInt8(rawValue >> 56)) ?? .none }
        var slot: UInt32 { UInt32((rawValue >> 32) & 0xFF_FFFF) }
        var generation: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 16) }
        var aux: UInt16 { UInt16(truncatingIfNeeded: rawValue) }
    }
}
