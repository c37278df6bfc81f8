#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceXDP
import Logging
import SluiceCore
import SluiceSystem

/// How an XSK socket binds: zero-copy (driver support needed) or copy.
public enum XSKBindMode: String, Sendable, CaseIterable {
    /// Try zero-copy, fall back to copy, and say so in one line.
    case automatic
    /// Zero-copy or fail.
    case zeroCopy = "zero-copy"
    /// Copy mode (works on every driver, including veth and generic XDP).
    case copy
}

/// How an ``XDPPort`` sets up its socket.
public struct XDPPortConfiguration: Sendable {
    /// The interface.
    public var interface: String
    /// The receive queue this socket serves.
    public var queue: UInt32
    /// Zero-copy, copy, or try one then the other.
    public var bindMode: XSKBindMode = .automatic
    /// RX and TX ring sizes (powers of two).
    public var ringSize: UInt32 = 2048
    /// `XDP_USE_NEED_WAKEUP`: the kernel says when it needs a syscall to make progress.
    public var needWakeup: Bool = true
    /// Where the port reports what it changes on its own (a refused mode); silent by default.
    public var logger: Logger = .disabled
    /// Busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` in microseconds, `SO_BUSY_POLL_BUDGET`); `nil` for none.
    public var busyPoll: (timeoutMicroseconds: Int32, budget: Int32)? = nil
    /// How long ``XDPPort/receive(into:)`` waits in `poll` when nothing has arrived.
    public var receiveTimeout: Duration = .milliseconds(100)
    /// How many times an empty RX ring is looked at again before sleeping in `poll`. A short spin
    /// saves the kernel a wakeup per burst (on veth that wakeup is paid on the sender's CPU).
    public var idleSpins: Int = 2000
    /// Frames a port leaves in its pool for sending datagrams of its own; the rest stock the fill ring.
    public var reservedFrames: Int = 128
    /// The XDP program that feeds the socket, as the interface reports it
    /// (``XDPProgram/interfaceProgramID``): another attached in its place stops
    /// ``XDPPort/receive(into:)`` with an error. `nil`: any program will do.
    public var programID: UInt32?

    /// A configuration for `queue` of `interface`, other settings at their defaults.
    public init(interface: String, queue: UInt32 = 0) {
        self.interface = interface
        self.queue = queue
    }
}

/// Where a UMEM frame is, from one port's point of view.
@usableFromInline
enum FrameState {
    /// In the pool, a batch, or anywhere else in user space.
    @usableFromInline static let user: UInt8 = 0
    /// Given to the kernel through the fill ring.
    @usableFromInline static let fill: UInt8 = 1
    /// Given to the kernel through the TX ring.
    @usableFromInline static let transmit: UInt8 = 2
}

/// The kernel's counts for one XSK socket (`XDP_STATISTICS`).
public struct XSKStatistics: Equatable, Sendable {
    /// Frames dropped for other reasons.
    public var receiveDropped: UInt64 = 0
    /// Fill-ring descriptors the kernel found invalid.
    public var receiveInvalidDescriptors: UInt64 = 0
    /// TX descriptors the kernel found invalid (bad address or length): those frames were not sent.
    public var transmitInvalidDescriptors: UInt64 = 0
    /// Frames dropped because the RX ring was full.
    public var receiveRingFull: UInt64 = 0
    /// Times the kernel found the fill ring empty (frames then dropped).
    public var fillRingEmpty: UInt64 = 0
    /// Times the kernel found the TX ring empty when woken.
    public var transmitRingEmpty: UInt64 = 0

    /// Creates zero counts.
    public init() {}

    /// The counts of the XSK socket `descriptor` now (`getsockopt(XDP_STATISTICS)`), from any
    /// thread; `nil` when the kernel refuses (not an XSK socket).
    public init?(socket descriptor: Int32) {
        var raw = xdp_statistics()
        var length = socklen_t(MemoryLayout<xdp_statistics>.size)
        guard getsockopt(descriptor, Int32(SOL_XDP), Int32(XDP_STATISTICS), &raw, &length) == 0 else { return nil }
        receiveDropped = raw.rx_dropped
        receiveInvalidDescriptors = raw.rx_invalid_descs
        transmitInvalidDescriptors = raw.tx_invalid_descs
        receiveRingFull = raw.rx_ring_full
        fillRingEmpty = raw.rx_fill_ring_empty_descs
        transmitRingEmpty = raw.tx_ring_empty_descs
    }
}

/// Where an XDP port's frames are, for accounting.
public struct XSKFrameCounts: Equatable, Sendable {
    /// Frames in the fill ring or taken from it by the kernel and not yet on the RX ring.
    public var fill: Int
    /// Frames on the RX ring, not yet received.
    public var receive: Int
    /// Frames on the TX ring or being sent.
    public var transmit: Int
    /// Frames on the completion ring, sent and not yet reclaimed.
    public var completion: Int

    /// All of them.
    public var total: Int { fill + receive + transmit + completion }
}

/// A port over one AF_XDP socket: frames go from the pool to the fill ring, come back on the
/// RX ring as packets, leave through the TX ring and return through the completion ring, with
/// no copy in user space and one syscall only when the kernel asks (need_wakeup) or when idle.
public struct XDPPort: Port, ~Copyable {
    /// The configuration.
    public let configuration: XDPPortConfiguration
    /// The UMEM, shared with the other queues' ports of the interface.
    public let umem: XSKUmem
    /// Whether the socket ended up in zero-copy mode.
    public let isZeroCopy: Bool
    /// The socket's descriptor (for the XSKMAP and `poll`).
    public let descriptor: Int32
    @usableFromInline let socket: OpaquePointer
    @usableFromInline let pool: FramePool
    @usableFromInline let fillRing: UnsafeMutablePointer<xsk_ring_prod>
    @usableFromInline let completionRing: UnsafeMutablePointer<xsk_ring_cons>
    @usableFromInline let receiveRing: UnsafeMutablePointer<xsk_ring_cons>
    @usableFromInline let transmitRing: UnsafeMutablePointer<xsk_ring_prod>
    /// Where each frame of the region is, as far as this port knows (see ``FrameState``): a
    /// completion or RX descriptor is honoured only for a frame the port gave the kernel for that.
    @usableFromInline let frameStates: UnsafeMutablePointer<UInt8>
    /// Frames in the whole region, and log2 of the frame size (2048 or 4096): a frame's index
    /// is its address shifted, not divided, on the packet path.
    @usableFromInline let regionFrameCount: Int
    @usableFromInline let frameShift: Int
    @usableFromInline var fillCount = 0
    /// Frames kept out of the fill ring (``XDPPortConfiguration/reservedFrames`` until changed).
    @usableFromInline var reserve: Int
    @usableFromInline var transmitCount = 0
    @usableFromInline let pollTimeoutMilliseconds: Int32
    /// The interface's index when the socket was made: another index under the same name, or
    /// none, means the interface went away under the socket.
    let interfaceIndex: UInt32
    /// The network namespace the socket was made in (its inode): names and indexes are looked
    /// up only from a thread in it.
    let namespace: UInt64
    /// Receive waits in a row that found nothing; every half second's worth of them, the path is checked.
    @usableFromInline var idleWaits = 0
    @usableFromInline var _counters = PortCounters()

    /// Opens an XSK socket on the configured queue over `umem`, drawing frames from `pool`
    /// (the UMEM's pool, or a partition of it). An XDP program must redirect into the socket
    /// (insert ``descriptor`` into its XSKMAP) for frames to arrive. The port must be opened in
    /// the network namespace where the UMEM was made.
    ///
    /// EBUSY right after another socket on the queue closed is retried with backoff.
    public init(configuration: XDPPortConfiguration, umem: XSKUmem, pool: FramePool) throws(SystemCallError) {
        LibraryLog.install()   // libxdp prints to stderr until its messages are taken over
        precondition(pool.base == umem.pool.base, "the port's pool must be the UMEM's pool or a partition of it")
        self.configuration = configuration
        reserve = configuration.reservedFrames
        interfaceIndex = if_nametoindex(configuration.interface)
        namespace = Self.currentNamespace()
        self.umem = umem
        self.pool = pool
        (fillRing, completionRing) = umem.ringsForNewSocket()
        receiveRing = .allocate(capacity: 1)
        receiveRing.initialize(to: xsk_ring_cons())
        transmitRing = .allocate(capacity: 1)
        transmitRing.initialize(to: xsk_ring_prod())
        let regionFrames = pool.regionSize / pool.frameSize
        regionFrameCount = regionFrames
        frameShift = pool.frameSize.trailingZeroBitCount
        frameStates = .allocate(capacity: regionFrames)
        frameStates.initialize(repeating: FrameState.user, count: regionFrames)
        let timeout = configuration.receiveTimeout.components
        pollTimeoutMilliseconds = Int32(clamping: timeout.seconds * 1000 + timeout.attoseconds / 1_000_000_000_000_000)

        let created: (OpaquePointer, Bool)
        do {
            created = try Self.createSocket(configuration, umem: umem, rings: (receiveRing, transmitRing, fillRing, completionRing))
        } catch {
            umem.returnRings(fillRing, completionRing)
            receiveRing.deallocate()
            transmitRing.deallocate()
            frameStates.deallocate()
            throw error
        }
        socket = created.0
        isZeroCopy = created.1
        descriptor = xsk_socket__fd(socket)
        if let busyPoll = configuration.busyPoll { Self.enableBusyPoll(descriptor, busyPoll, configuration: configuration) }
        refill()
    }

    deinit {
        xsk_socket__delete(socket)
        // With the socket gone, every frame the kernel held is the pool's again.
        for i in 0..<regionFrameCount where frameStates[i] != FrameState.user { pool.releaseAddress(UInt64(i * pool.frameSize)) }
        frameStates.deallocate()
        fillRing.deallocate()
        completionRing.deallocate()
        receiveRing.deallocate()
        transmitRing.deallocate()
    }

    static func createSocket(
        _ configuration: XDPPortConfiguration, umem: XSKUmem,
        rings: (UnsafeMutablePointer<xsk_ring_cons>, UnsafeMutablePointer<xsk_ring_prod>,
                UnsafeMutablePointer<xsk_ring_prod>, UnsafeMutablePointer<xsk_ring_cons>)
    ) throws(SystemCallError) -> (OpaquePointer, Bool) {
        let name = "xsk_socket__create(\(configuration.interface) queue \(configuration.queue))"
        guard currentNetworkNamespaceInode() == umem.namespaceInode else {
            // The first socket shares the UMEM's, which binds by interface index in the UMEM's
            // namespace: it would silently pick another device.
            throw SystemCallError(.xsk, operation: name + " in another network namespace than its UMEM", errno: EXDEV)
        }
        let attempts: [(UInt16, Bool)]
        switch configuration.bindMode {
        case .automatic: attempts = [(UInt16(XDP_ZEROCOPY), true), (UInt16(XDP_COPY), false)]
        case .zeroCopy: attempts = [(UInt16(XDP_ZEROCOPY), true)]
        case .copy: attempts = [(UInt16(XDP_COPY), false)]
        }
        var lastError: Int32 = 0
        for (index, (modeFlag, zeroCopy)) in attempts.enumerated() {
            var config = xsk_socket_config()
            config.rx_size = configuration.ringSize
            config.tx_size = configuration.ringSize
            config.libxdp_flags = UInt32(XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD)
            config.xdp_flags = 0
            config.bind_flags = modeFlag | (configuration.needWakeup ? UInt16(XDP_USE_NEED_WAKEUP) : 0)
            var socket: OpaquePointer?
            var result: Int32 = 0
            // A queue's previous socket may still be going away in the kernel: EBUSY for a moment.
            for backoff in [0, 10, 20, 50, 100, 200, 400] {
                if backoff > 0 { usleep(UInt32(backoff * 1000)) }
                result = xsk_socket__create_shared(
                    &socket, configuration.interface, configuration.queue, umem.umem,
                    rings.0, rings.1, rings.2, rings.3, &config)
                if result != -EBUSY { break }
            }
            if result == 0, let socket { return (socket, boundZeroCopy(socket) ?? zeroCopy) }
            lastError = -result
            if zeroCopy, index + 1 < attempts.count {
                configuration.logger.notice(
                    "zero-copy AF_XDP refused; using copy mode",
                    metadata: ["interface": "\(configuration.interface)", "queue": "\(configuration.queue)",
                               "reason": "\(String(cString: strerror(lastError)))"])
            }
        }
        throw SystemCallError(.xsk, operation: name, errno: lastError)
    }

    /// Whether the kernel bound `socket` zero-copy (`XDP_OPTIONS`, Linux 5.3+), `nil` when it
    /// does not say. Asked, not assumed: a socket sharing another's UMEM takes that socket's mode
    /// whatever its own bind flags asked for.
    static func boundZeroCopy(_ socket: OpaquePointer) -> Bool? {
        var options = xdp_options()
        var length = socklen_t(MemoryLayout<xdp_options>.size)
        guard getsockopt(xsk_socket__fd(socket), SOL_XDP, XDP_OPTIONS, &options, &length) == 0 else { return nil }
        return options.flags & UInt32(XDP_OPTIONS_ZEROCOPY) != 0
    }

    static func enableBusyPoll(_ fd: Int32, _ settings: (timeoutMicroseconds: Int32, budget: Int32),
                               configuration: XDPPortConfiguration) {
        // SO_PREFER_BUSY_POLL (69) and SO_BUSY_POLL_BUDGET (70) are newer than Debian 12's headers.
        let options: [(Int32, Int32, String)] = [(69, 1, "SO_PREFER_BUSY_POLL"), (SO_BUSY_POLL, settings.timeoutMicroseconds, "SO_BUSY_POLL"),
                                                 (70, settings.budget, "SO_BUSY_POLL_BUDGET")]
        for (name, value, label) in options {
            var v = value
            if setsockopt(fd, SOL_SOCKET, name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                configuration.logger.notice(
                    "busy polling unavailable; polling normally",
                    metadata: ["interface": "\(configuration.interface)", "option": "\(label)",
                               "reason": "\(String(cString: strerror(errno)))"])
                return
            }
        }
    }

    public var format: FrameFormat { .ethernet }

    public var framesHeld: Int { fillCount + transmitCount }

    public var counters: PortCounters { _counters }

    /// Where the port's frames are now.
    public var frameCounts: XSKFrameCounts {
        let receiving = Int(xsk_cons_nb_avail(receiveRing, UInt32.max))
        let completed = Int(xsk_cons_nb_avail(completionRing, UInt32.max))
        return XSKFrameCounts(fill: fillCount - receiving, receive: receiving,
                              transmit: transmitCount - completed, completion: completed)
    }

    /// The kernel's statistics for this socket.
    public var statistics: XSKStatistics { XSKStatistics(socket: descriptor) ?? XSKStatistics() }

    // MARK: Receive

    /// Keeps `count` frames out of the fill ring from now on (a sender wants them all; a
    /// receiver none), and tops the fill ring up at once.
    public mutating func setReservedFrames(_ count: Int) {
        reserve = max(count, 0)
        refill()
    }

    /// Tops the fill ring up from the pool, keeping ``reserve`` frames back.
    @inlinable
    mutating func refill() {
        let spare = pool.freeCount - reserve
        guard spare > 0 else { return }
        let room = Int(xsk_prod_nb_free(fillRing, UInt32(spare)))
        var count = UInt32(min(spare, room))
        guard count > 0 else { return }
        var index: UInt32 = 0
        count = xsk_ring_prod__reserve(fillRing, count, &index)
        for i in 0..<count {
            let address = pool.allocateAddress()!
            xsk_ring_prod__fill_addr(fillRing, index &+ i).pointee = address
            frameStates[Int(address) >> frameShift] = FrameState.fill
        }
        xsk_ring_prod__submit(fillRing, count)
        fillCount &+= Int(count)
    }

    public mutating func receive(into batch: inout PacketBatch) throws(SystemCallError) -> Int {
        refill()
        var index: UInt32 = 0
        let limit = UInt32(batch.remainingCapacity)
        var count = xsk_ring_cons__peek(receiveRing, limit, &index)
        var spins = configuration.idleSpins
        while count == 0, spins > 0 {
            spins &-= 1
            count = xsk_ring_cons__peek(receiveRing, limit, &index)
        }
        if count == 0 {
            wait()
            count = xsk_ring_cons__peek(receiveRing, limit, &index)
            if count == 0 {
                idleWaits &+= 1
                // Twice a second while idle, so a vanished interface or program stops the worker
                // well within a second, teardown included.
                if idleWaits * max(Int(pollTimeoutMilliseconds), 1) >= 500 {
                    idleWaits = 0
                    try checkPath()
                }
            } else {
                idleWaits = 0
            }
        }
        var accepted = 0
        for i in 0..<count {
            let descriptor = xsk_ring_cons__rx_desc(receiveRing, index &+ i)!.pointee
            let address = xsk_umem__add_offset_to_addr(descriptor.addr)
            let frame = Int(address) >> frameShift
            guard frame < regionFrameCount, frameStates[frame] == FrameState.fill,
                  Int(address) & ((1 << frameShift) - 1) + Int(descriptor.len) <= 1 << frameShift
            else {
                _counters.droppedTruncated &+= 1
                continue
            }
            frameStates[frame] = FrameState.user
            // The kernel (or the NIC) wrote the frame from another CPU: start every header's
            // cache miss now, so they overlap instead of stalling the stage one frame at a time.
            sluice_prefetch_for_write(pool.base + Int(address))
            batch.append(pool.packet(at: address, offset: 0, length: Int(descriptor.len)))
            _counters.receivedBytes &+= UInt64(descriptor.len)
            accepted &+= 1
        }
        xsk_ring_cons__release(receiveRing, count)
        fillCount &-= accepted
        _counters.receivedPackets &+= UInt64(accepted)
        refill()
        return accepted
    }

    /// Throws when nothing can arrive any more: the interface is gone (deleted, or moved to
    /// another namespace), or no XDP program feeds the socket. A link that is merely down is fine:
    /// the socket receives again once it is up.
    @usableFromInline
    func checkPath() throws(SystemCallError) {
        let operation = "receiving on \(configuration.interface) queue \(configuration.queue)"
        // The kernel unbinds the socket, with ENETDOWN, when its device leaves the namespace.
        var pending: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &pending, &length) == 0, pending != 0 {
            throw SystemCallError(.xsk, operation: operation, errno: pending,
                                  hint: pending == ENETDOWN ? "the interface was deleted or moved under the running socket" : nil)
        }
        // By index only from the socket's own namespace (another thread may poll it); a renamed
        // interface keeps its index, its program and this socket.
        guard Self.currentNamespace() == namespace else { return }
        guard NetworkInterface.name(ofIndex: interfaceIndex) != nil else {
            throw SystemCallError(.xsk, operation: operation, errno: ENODEV,
                                  hint: "the interface was deleted or moved under the running socket")
        }
        var attached = bpf_xdp_query_opts()
        attached.sz = MemoryLayout<bpf_xdp_query_opts>.size
        guard bpf_xdp_query(Int32(interfaceIndex), 0, &attached) == 0 else { return }
        let programs = [attached.drv_prog_id, attached.skb_prog_id, attached.hw_prog_id].filter { $0 != 0 }
        if programs.isEmpty {
            throw SystemCallError(.xsk, operation: operation, errno: ENOENT,
                                  hint: "the XDP program that feeds this socket was removed from the interface")
        }
        if let expected = configuration.programID, !programs.contains(expected) {
            throw SystemCallError(.xsk, operation: operation, errno: ENOENT,
                                  hint: "another XDP program (id \(programs[0])) replaced the one that feeds this socket")
        }
    }

    /// The calling thread's network namespace, as the inode of its `/proc` entry; 0 when unknown.
    static func currentNamespace() -> UInt64 {
        var status = stat()
        return stat("/proc/thread-self/ns/net", &status) == 0 ? UInt64(status.st_ino) : 0
    }

    /// Nothing on the RX ring: wake the kernel if it asked, then sleep in `poll` until frames
    /// arrive or the receive timeout passes.
    @usableFromInline
    mutating func wait() {
        if !configuration.needWakeup || xsk_ring_prod__needs_wakeup(fillRing) != 0 {
            _counters.receiveCalls &+= 1
            _ = recvfrom(descriptor, nil, 0, Int32(MSG_DONTWAIT), nil, nil)
        }
        // Frames a wakeup could not send (the link was down, or the completion ring full) go now.
        if transmitWaiting > 0 { push() }
        var waiter = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        _counters.receiveCalls &+= 1
        _ = poll(&waiter, 1, pollTimeoutMilliseconds)
    }

    // MARK: Transmit

    public mutating func transmit(_ batch: inout PacketBatch) throws(SystemCallError) {
        _ = reclaim()
        let wanted = UInt32(batch.count)
        var index: UInt32 = 0
        var reserved = xsk_ring_prod__reserve(transmitRing, wanted, &index)
        if reserved < wanted {
            // The ring is full of frames waiting to go: push the kernel, take back what it sent,
            // and take whatever room there is (libxdp's reserve is all or nothing).
            push()
            _ = reclaim()
            let room = min(wanted, xsk_prod_nb_free(transmitRing, wanted))
            reserved = room > 0 ? xsk_ring_prod__reserve(transmitRing, room, &index) : 0
        }
        // What still does not fit is dropped and counted, never left dangling.
        while batch.count > Int(reserved) {
            pool.release(batch.removeLast())
            _counters.droppedTransmit &+= 1
        }
        guard reserved > 0 else { return }
        for i in 0..<Int(reserved) {
            let packet = batch[i].frameStart
            let address = UInt64(UInt(bitPattern: packet - pool.base))
            let descriptor = xsk_ring_prod__tx_desc(transmitRing, index &+ UInt32(i))!
            descriptor.pointee.addr = address &+ UInt64(batch[i].offset)
            descriptor.pointee.len = UInt32(batch[i].length)
            descriptor.pointee.options = 0
            frameStates[Int(address) >> frameShift] = FrameState.transmit
            _counters.transmittedBytes &+= UInt64(batch[i].length)
        }
        xsk_ring_prod__submit(transmitRing, reserved)
        transmitCount &+= Int(reserved)
        _counters.transmittedPackets &+= UInt64(reserved)
        batch.relinquishAll()
        if !configuration.needWakeup || xsk_ring_prod__needs_wakeup(transmitRing) != 0 { push() }
    }

    /// Descriptors on the TX ring the kernel has not taken yet.
    @usableFromInline
    var transmitWaiting: Int {
        let size = transmitRing.pointee.size
        return Int(size &- xsk_prod_nb_free(transmitRing, size))
    }

    /// Wakes the kernel to send what is on the TX ring. In copy mode one wakeup sends at most 32
    /// frames (the kernel's TX budget) and stops early once the completion ring is full, so a
    /// single wakeup would leave a batch's tail on the ring until traffic comes again: wake it,
    /// reclaiming in between, until the ring is empty or a wakeup moves nothing. A zero-copy
    /// driver takes the whole ring from one wakeup.
    @usableFromInline
    mutating func push() {
        kick()
        guard !isZeroCopy else { return }
        var waiting = transmitWaiting
        while waiting > 0 {
            let reclaimed = reclaim()
            kick()
            let left = transmitWaiting
            if left == waiting && reclaimed == 0 { return }
            waiting = left
        }
    }

    /// The addresses on the fill ring the kernel has not taken yet, oldest first.
    @_spi(Testing)
    public var fillRingAddresses: [UInt64] {
        let consumer = fillRing.pointee.consumer.pointee
        let producer = fillRing.pointee.producer.pointee
        return (0..<(producer &- consumer)).map { xsk_ring_prod__fill_addr(fillRing, consumer &+ $0)!.pointee }
    }

    /// Puts a descriptor on the TX ring exactly as given, bypassing every check, and wakes the
    /// kernel: for conformance tests that the kernel rejects and counts bad descriptors.
    @_spi(Testing)
    public mutating func submitUncheckedDescriptor(address: UInt64, length: UInt32) {
        var index: UInt32 = 0
        guard xsk_ring_prod__reserve(transmitRing, 1, &index) == 1 else { return }
        let descriptor = xsk_ring_prod__tx_desc(transmitRing, index)!
        descriptor.pointee.addr = address
        descriptor.pointee.len = length
        descriptor.pointee.options = 0
        xsk_ring_prod__submit(transmitRing, 1)
        kick()
    }

    /// Tells the kernel there is work on the TX ring.
    @usableFromInline
    mutating func kick() {
        _counters.transmitCalls &+= 1
        _ = sendto(descriptor, nil, 0, Int32(MSG_DONTWAIT), nil, 0)
    }

    /// Takes back the frames the kernel has sent. While the pool holds its reserve, they go
    /// straight back to the fill ring in the order they were sent, as the kernel's own l2fwd
    /// sample does: the kernel then meets its per-frame state in sequence, which the CPU
    /// prefetches. Through the pool (a stack) the order scrambles, and in copy mode the receive
    /// path spent 6-8 % of its CPU on those cache misses (`xp_alloc`). With a fill ring that
    /// holds every frame of the queue (the XDP backend's), a completion always finds room.
    public mutating func reclaim() -> Int {
        var index: UInt32 = 0
        let count = xsk_ring_cons__peek(completionRing, umem.completionRingSize, &index)
        guard count > 0 else { return 0 }
        var fillIndex: UInt32 = 0
        let fillRoom = pool.freeCount >= reserve ? xsk_prod_nb_free(fillRing, count) : 0
        let fillReserved = fillRoom > 0 ? xsk_ring_prod__reserve(fillRing, min(fillRoom, count), &fillIndex) : 0
        var refilled: UInt32 = 0
        var reclaimed = 0
        for i in 0..<count {
            let address = xsk_umem__extract_addr(xsk_ring_cons__comp_addr(completionRing, index &+ i)!.pointee)
            let frame = Int(address) >> frameShift
            // Completions for descriptors we never sent (the kernel returns rejected ones too) change nothing.
            guard frame < regionFrameCount, frameStates[frame] == FrameState.transmit else { continue }
            if refilled < fillReserved {
                xsk_ring_prod__fill_addr(fillRing, fillIndex &+ refilled).pointee = UInt64(frame << frameShift)
                frameStates[frame] = FrameState.fill
                refilled &+= 1
            } else {
                frameStates[frame] = FrameState.user
                pool.releaseAddress(UInt64(frame << frameShift))
            }
            reclaimed &+= 1
        }
        // Slots reserved for completions that turned out not to be ours are given back unused.
        fillRing.pointee.cached_prod &-= fillReserved &- refilled
        xsk_ring_prod__submit(fillRing, refilled)
        fillCount &+= Int(refilled)
        xsk_ring_cons__release(completionRing, count)
        transmitCount &-= reclaimed
        return reclaimed
    }
}
