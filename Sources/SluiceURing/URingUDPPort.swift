#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import Logging
import CSluiceURing
import SluiceCore
import SluiceSystem
import SluicePackets

/// How a ``URingUDPPort`` sets up its socket and ring.
public struct URingUDPConfiguration: Sendable {
    /// The address and port to bind. `0.0.0.0` takes IPv4 only; `[::]` takes both families
    /// (dual-stack, IPv4 peers seen as IPv4).
    public var listen: IPEndpoint
    /// `SO_REUSEPORT`, so each worker binds its own socket to the same port.
    public var reusePort: Bool = true
    /// Send runs of equal-size datagrams to one peer as one `UDP_SEGMENT` (GSO) `sendmsg`.
    public var segmentationOffload: Bool = false
    /// The largest segment a GSO send may use (1452 fits IPv4 and IPv6 on a 1500-byte MTU).
    public var maximumSegmentSize: Int = 1452
    /// How long ``URingUDPPort/receive(into:)`` waits for the first datagram.
    public var receiveTimeout: Duration = .milliseconds(100)
    /// `SO_RCVBUF`/`SO_SNDBUF` in bytes (forced past the sysctl limit when privileged); `nil` keeps the default.
    public var socketBufferBytes: Int? = 4 << 20
    /// How the ring runs: plain, SQPOLL, DEFER_TASKRUN or cooperative task work.
    public var mode: URingMode = .plain
    /// Frames in the provided-buffer ring the multishot receive draws from (a power of two).
    /// Received datagrams waiting for a batch count against it, so with batches of 64 and up to
    /// 128 sends in flight the default leaves a 512-frame pool room for everything.
    public var bufferRingEntries: UInt32 = 128
    /// Let sends wait for the next ``URingUDPPort/receive(into:)`` that has to wait anyway, so
    /// one `io_uring_enter` submits them and waits for datagrams (a batch's worth still goes out
    /// at once). For loops that always receive after they transmit, as `WorkerLoop` does; off,
    /// every ``URingUDPPort/transmit(_:)`` submits.
    public var defersSubmission: Bool = false
    /// Datagrams (or GSO runs) of at least this many payload bytes go out with `SENDMSG_ZC`,
    /// their frames held until the kernel's notification; 0 turns zero-copy sends off.
    public var zeroCopyThreshold: Int = 0
    /// Where the port reports what it changes on its own (a refused offload); silent by default.
    public var logger: Logger = .disabled

    /// A configuration for `listen`, other settings at their defaults.
    public init(listen: IPEndpoint) { self.listen = listen }

    /// The frame size a pool needs for datagrams of up to `maximumDatagram` payload bytes.
    public func frameSize(maximumDatagram: Int = 65507) -> Int {
        DatagramHeader.frameSize(forPayload: maximumDatagram)
    }
}

/// A UDP port over io_uring: one multishot `recvmsg` over a ring of provided pool frames, and
/// one `sendmsg` submission per datagram (or GSO run), a whole batch per `io_uring_enter`.
///
/// Seen from outside it behaves as `UDPSocketPort` does: frames carry a `DatagramHeader`
/// (the peer, and the local address from `IP_PKTINFO`/`IPV6_PKTINFO`) and the payload at the
/// pool's headroom; replies leave from the address they came to. The kernel writes each
/// datagram into a provided frame as `io_uring_recvmsg_out`, name, control and payload, placed
/// so that the payload lands at the headroom; the port then copies the name and local address
/// into the header. Sent frames stay with the port until their completion (for `SENDMSG_ZC`,
/// until the notification) and count in ``framesHeld``. `io_uring_enter` calls are counted as
/// receive and transmit calls, so syscalls per packet can be compared with the socket port.
public struct URingUDPPort: Port, ~Copyable {
    /// The socket.
    public let descriptor: Int32
    /// The address the socket is bound to (with the port the kernel chose for port 0).
    public let localEndpoint: IPEndpoint
    /// The configuration it was made with.
    public let configuration: URingUDPConfiguration
    /// The ring.
    public let ring: URing
    /// The provided-buffer ring of pool frames the receives draw from.
    public let buffers: URingBufferRing
    @usableFromInline let pool: FramePool
    @usableFromInline let family: Int32
    @usableFromInline let headroom: Int
    /// The `msghdr` the multishot receive was armed with: its name and control lengths lay out every buffer.
    @usableFromInline let receiveMessage: UnsafeMutablePointer<msghdr>
    @usableFromInline var receiveArmed = false
    @usableFromInline var receiveFailure: Int32 = 0
    /// Received datagrams not yet handed out, as (frame address, payload length).
    @usableFromInline var ready: ReadyQueue
    @usableFromInline var sends: SendSlots
    @usableFromInline var gso: SegmentationOffload
    /// When the socket's drops are read.
    @usableFromInline var dropSampler = SocketDropSampler()
    /// Whether a lone datagram without control data goes as `SEND` with its address (Linux 6.1+),
    /// instead of `SENDMSG`; turned off for good if the kernel refuses one.
    @usableFromInline var sendsWithAddress: Bool
    /// Queued submissions (sends, a re-armed receive) worth an `io_uring_enter` of their own;
    /// fewer ride along with the next wait for completions.
    @usableFromInline let submitThreshold: UInt32
    @usableFromInline var _counters = PortCounters()

    /// The socket's index in the ring's fixed file table.
    @usableFromInline static let fixedSocket: Int32 = 0
    /// The `user_data` of the multishot receive (send slots use their index).
    @usableFromInline static let receiveTag: UInt64 = 1 << 62
    /// The cancellation of the receive at a stop: a tag of its own, which the completions pass over
    /// (the ring's `cancelUserData` marks the cancel-all of the teardown).
    static let receiveCancelTag: UInt64 = 1 << 62 | 1
    /// Bytes the kernel writes in front of the payload: `io_uring_recvmsg_out`, name, control.
    @usableFromInline static let nameCapacity = 32
    /// Room for IPV6_PKTINFO and IP_PKTINFO together (72 bytes): an IPv4 datagram on a
    /// dual-stack socket gets both, the second truncated in 64 (its ipi_spec_dst, the address a
    /// reply to a broadcast leaves from, lost). 80: the prefix then starts at the header's
    /// scratch (offset 64 of 192), clear of the fields `DatagramHeader` keeps.
    @usableFromInline static let controlCapacity = 80
    @usableFromInline static let receivePrefix = MemoryLayout<io_uring_recvmsg_out>.size + nameCapacity + controlCapacity
    @usableFromInline static let maximumGSOPayload = 65507
    @usableFromInline static let bufferGroup: UInt16 = 0

    /// Opens and binds the socket, sets up the ring and provides the first frames.
    ///
    /// - Parameters:
    ///   - configuration: what to bind, the ring mode and buffer counts.
    ///   - pool: the frames to receive into; its headroom must be at least
    ///     `DatagramHeader/minimumHeadroom` and its frames at least
    ///     ``URingUDPConfiguration/frameSize(maximumDatagram:)`` long to take every datagram whole.
    ///   - batchCapacity: the largest batch the port fills or sends.
    /// - Throws: `SystemCallError` naming the socket or ring call that failed.
    public init(configuration: URingUDPConfiguration, pool: FramePool,
                batchCapacity: Int = PacketBatch.defaultCapacity) throws(SystemCallError) {
        precondition(pool.headroom >= DatagramHeader.minimumHeadroom,
                     "a datagram pool needs \(DatagramHeader.minimumHeadroom) bytes of headroom")
        let family = configuration.listen.address.family
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(.port, operation: "socket(UDP)", errno: errno) }
        let ring: URing
        let buffers: URingBufferRing
        do throws(SystemCallError) {
            // UDPSocketPort's options, less UDP_GRO: this port does not split coalesced receives.
            try configureDatagramSocket(fd, family: family, listen: configuration.listen,
                                        reusePort: configuration.reusePort, receiveOffload: false,
                                        socketBufferBytes: configuration.socketBufferBytes)
            _ = try systemCall(.socket, "bind(\(configuration.listen))") {
                SocketAddress.with(configuration.listen, family: family) { bind(fd, $0, $1) }
            }
            var entries: UInt32 = 64
            while entries < UInt32(2 * batchCapacity) { entries <<= 1 }
            ring = try URing(entries: entries, mode: configuration.mode)
            // What the kernel writes in front of the payload must not reach the header's fields.
            precondition(pool.headroom - Self.receivePrefix >= DatagramHeader.controlOffset,
                         "a frame's headroom holds the datagram header and the receive prefix")
            buffers = try URingBufferRing(ring: ring, group: Self.bufferGroup, entries: configuration.bufferRingEntries,
                                          pool: pool, bufferOffset: pool.headroom - Self.receivePrefix)
            guard ring.supports(UInt32(IORING_OP_RECVMSG.rawValue)), ring.features & IORING_FEAT_EXT_ARG != 0 else {
                throw SystemCallError(.uring, operation: "io_uring_get_probe", errno: EOPNOTSUPP,
                                      hint: "this kernel's io_uring lacks multishot recvmsg or timed waits (Linux 6.0+)")
            }
            // The socket is fixed file 0: no descriptor lookup per receive or send.
            try ring.registerFiles([fd])
        } catch {
            close(fd)
            throw error
        }
        descriptor = fd
        self.family = family
        self.configuration = configuration
        localEndpoint = SocketAddress.localEndpoint(of: fd) ?? configuration.listen
        self.pool = pool
        self.ring = ring
        self.buffers = buffers
        headroom = pool.headroom
        receiveMessage = .allocate(capacity: 1)
        receiveMessage.initialize(to: msghdr())
        receiveMessage.pointee.msg_namelen = socklen_t(Self.nameCapacity)
        receiveMessage.pointee.msg_controllen = Self.controlCapacity
        ready = ReadyQueue(capacity: Int(configuration.bufferRingEntries))
        sends = SendSlots(count: 2 * batchCapacity, maximumRun: min(Int(sluice_UDP_MAX_SEGMENTS), batchCapacity))
        gso = SegmentationOffload(configured: configuration.segmentationOffload, largestSegment: configuration.maximumSegmentSize)
        sendsWithAddress = KernelRelease.current.isAtLeast(6, 1)
        submitThreshold = configuration.defersSubmission ? UInt32(batchCapacity) : 1
        buffers.refill()
    }

    deinit {
        // Cancel the receive (and anything else in flight), taking back the frames completions name.
        _ = try? ring.cancelAll { completeClosing($0) }
        // Zero-copy sends end with a notification once the kernel lets go of the frame: wait for those.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(1)
        while sends.anyInFlight, clock.now < deadline {
            _ = try? ring.submitAndWait(minimumCompletions: 1, timeout: .milliseconds(10))
            ring.drainCompletions { completeClosing($0) }
        }
        for slot in 0..<sends.count { sends.releaseFrames(slot, to: pool) }
        ready.releaseAll(to: pool)
        // The socket leaves with this port: the next server can bind its address at once.
        ring.unregisterFiles()
        close(descriptor)
        receiveMessage.deallocate()
        ready.deallocate()
        sends.deallocate()
    }

    public var format: FrameFormat { .datagram }

    /// Frames provided to the kernel for receiving, received but not yet handed out, and in flight in sends.
    public var framesHeld: Int { buffers.providedCount + ready.count + sends.framesInFlight }

    public var counters: PortCounters { _counters }

    /// Reads what the kernel dropped at the socket (`SO_MEMINFO`): every 256 receives, and at
    /// the end, not per batch.
    @inlinable
    mutating func noteSocketDrops(every interval: Int = 256) {
        if let drops = dropSampler.sample(descriptor, every: interval) { _counters.droppedSocketBuffer = drops }
    }

    /// Whether sends still use GSO (it turns itself off, saying so once, if the kernel refuses it).
    public var usesSegmentationOffload: Bool { gso.isEnabled }

    /// Takes the completions ready now: finished sends give their frames back to the pool.
    ///
    /// - Returns: how many frames came back.
    public mutating func reclaim() -> Int {
        let before = pool.freeCount
        // A sender that never receives still gets its sends out, a batch per enter.
        if io_uring_sq_ready(ring.raw) >= submitThreshold { _ = try? ring.submit() }
        drain()
        return max(pool.freeCount - before, 0)
    }

    // MARK: Completions

    /// Handles every completion ready now.
    @inlinable
    @discardableResult
    mutating func drain() -> Int {
        let ring = self.ring
        return ring.drainCompletions { complete($0) }
    }

    @inlinable
    mutating func complete(_ completion: URingCompletion) {
        if completion.userData == Self.receiveTag {
            completeReceive(completion)
        } else if completion.userData < UInt64(sends.count) {
            completeSend(completion)
        }
    }

    /// At shutdown: gives back the frame of every receive and finished send the kernel reports.
    func completeClosing(_ completion: URingCompletion) {
        if completion.userData == Self.receiveTag {
            if completion.result >= 0, let bufferID = completion.bufferID {
                pool.releaseAddress(buffers.consumed(bufferID: bufferID))
            }
        } else if completion.userData < UInt64(sends.count), completion.isNotification || !completion.hasMore {
            sends.releaseFrames(Int(completion.userData), to: pool)
        }
    }

    @inlinable
    mutating func completeReceive(_ completion: URingCompletion) {
        if !completion.hasMore { receiveArmed = false }
        guard completion.result >= 0 else {
            switch -completion.result {
            case ENOBUFS: _counters.receiveBufferStalls &+= 1  // the buffer ring ran dry; re-armed on the next receive
            case ECANCELED: break
            default: receiveFailure = -completion.result
            }
            return
        }
        guard let bufferID = completion.bufferID else { return }
        let address = buffers.consumed(bufferID: bufferID)
        let frame = pool.base + Int(address)
        guard let out = io_uring_recvmsg_validate(frame + buffers.bufferOffset, completion.result, receiveMessage),
              out.pointee.flags & UInt32(MSG_TRUNC) == 0
        else {
            _counters.droppedTruncated &+= 1
            pool.releaseAddress(address)
            return
        }
        let payload = UnsafeMutableRawPointer(io_uring_recvmsg_payload(out, receiveMessage)!)
        let length = Int(io_uring_recvmsg_payload_length(out, completion.result, receiveMessage))
        let header = DatagramHeader(frameStart: frame)
        let name = UnsafeMutableRawPointer(io_uring_recvmsg_name(out)!)
        (frame + DatagramHeader.peerOffset).initializeMemory(as: UInt8.self, repeating: 0, count: DatagramHeader.peerCapacity)
        (frame + DatagramHeader.peerOffset).copyMemory(
            from: name, byteCount: min(Int(out.pointee.namelen), DatagramHeader.peerCapacity))
        Self.readControl(out, message: receiveMessage, into: header, local: localEndpoint)
        ready.append(ReadyQueue.Entry(address: address, offset: payload - frame, length: length))
    }

    /// Reads `IP_PKTINFO`/`IPV6_PKTINFO` into the header, the bound address where there is none.
    /// Static, with what it needs as arguments: as a method it copied the whole port (472 bytes)
    /// for every datagram.
    @inlinable
    static func readControl(_ out: UnsafeMutablePointer<io_uring_recvmsg_out>, message: UnsafeMutablePointer<msghdr>,
                            into header: DatagramHeader, local: IPEndpoint) {
        header.interfaceIndex = 0
        header.local = local
        // The control bytes follow the header and the name (liburing's io_uring_recvmsg_cmsg_firsthdr).
        let end = UnsafeRawPointer(out) + MemoryLayout<io_uring_recvmsg_out>.size + Int(message.pointee.msg_namelen)
            + Int(out.pointee.controllen)
        var cmsg = io_uring_recvmsg_cmsg_firsthdr(out, message)
        while let c = cmsg {
            _ = DatagramControl.read(c, available: UnsafeRawPointer(c).distance(to: end), into: header, port: local.port)
            cmsg = io_uring_recvmsg_cmsg_nexthdr(out, message, c)
        }
    }

    @inlinable
    mutating func completeSend(_ completion: URingCompletion) {
        let slot = Int(completion.userData)
        if completion.isNotification {
            sends.finish(slot, to: pool)
            return
        }
        let run = sends.run(slot)
        if completion.result >= 0 {
            _counters.transmittedPackets &+= UInt64(run)
            _counters.transmittedBytes &+= UInt64(completion.result)
            if run > 1 { _counters.segmentedPackets &+= UInt64(run) }
        } else {
            let error = -completion.result
            // A reply to port 0 is refused (EINVAL) whatever the way it is sent: no reason to
            // change the way.
            let toPortZero = DatagramHeader(frameStart: pool.base + Int(sends.frames(slot)[0])).peer.port == 0
            let refusedRun = run > 1 && (error == EMSGSIZE || (error == EIO || error == EINVAL) && !toPortZero)
            if refusedRun && error == EMSGSIZE {
                gso.segmentTooLarge(sends.vectors(slot)[0].iov_len, logger: configuration.logger, listen: localEndpoint)
            } else if refusedRun {
                gso.refused(error, logger: configuration.logger, listen: localEndpoint)
            }
            if run == 1, error == EINVAL, sendsWithAddress, !toPortZero { stopSendingWithAddress() }
            // Not while a zero-copy notification is still to come: the kernel may hold the frames.
            if refusedRun && !completion.hasMore {
                resendSingly(slot)
            } else {
                _counters.droppedTransmit &+= UInt64(run)
            }
        }
        // A zero-copy send that will be notified keeps its frames until then.
        if !completion.hasMore { sends.finish(slot, to: pool) }
    }

    /// Goes back to `SENDMSG` for every datagram: a kernel that takes no address with `SEND`
    /// (before 6.1, or a backport without it) refuses it with EINVAL.
    @usableFromInline
    mutating func stopSendingWithAddress() {
        sendsWithAddress = false
        configuration.logger.warning("io_uring SEND with an address refused by the kernel; sending with SENDMSG",
                                     metadata: ["listen": "\(localEndpoint)"])
    }

    // MARK: Receive

    /// Takes the datagrams that have arrived, refills the buffer ring from the pool and re-arms
    /// the multishot receive if it ended; waits at most the receive timeout (one `io_uring_enter`)
    /// only when nothing is ready.
    ///
    /// - Returns: how many packets were added (0 on timeout).
    /// - Throws: `SystemCallError` when the ring fails or the receive ends with an error other than `ENOBUFS`.
    public mutating func receive(into batch: inout PacketBatch) throws(SystemCallError) -> Int {
        let before = batch.count
        let enters = ring.enterCalls
        // A wait that ended with no completion at all (its timeout) is idle time: the socket's
        // drops are read at once then, not 256 calls later; a wait a send's completion ended is not.
        var idle = false
        defer {
            _counters.receiveCalls &+= ring.enterCalls &- enters
            noteSocketDrops(every: idle ? 1 : 256)
        }
        drain()
        do throws(SystemCallError) {
            let rearmed = try armReceive()
            if ready.isEmpty {
                // One enter submits the sends queued since the last one and waits for datagrams.
                try ring.submitAndWait(minimumCompletions: 1, timeout: configuration.receiveTimeout)
                idle = drain() == 0
            } else if rearmed || io_uring_sq_ready(ring.raw) >= submitThreshold {
                try ring.submit()
            }
        } catch {
            throw SystemCallError(.port, operation: "\(error.operation) receiving on \(localEndpoint)", errno: error.errno,
                            hint: error.hint)
        }
        if receiveFailure != 0 {
            let error = receiveFailure
            receiveFailure = 0
            throw SystemCallError(.port, operation: "multishot recvmsg on \(localEndpoint)", errno: error)
        }
        // Counted as they are handed out: what a stopping worker never took is not "received".
        while !batch.isFull, let entry = ready.popFirst() {
            batch.append(pool.packet(at: entry.address, offset: entry.offset, length: entry.length))
            _counters.receivedPackets &+= 1
            _counters.receivedBytes &+= UInt64(entry.length)
        }
        return batch.count - before
    }

    /// Submits the sends still queued and takes their completions (counting them) until none is
    /// in flight or `timeout` has passed. The multishot receive is cancelled first: what arrives
    /// meanwhile stays in the socket, not taken and thrown away uncounted.
    public mutating func finishTransmits(timeout: Duration) {
        defer { noteSocketDrops(every: 1) }
        let enters = ring.enterCalls
        defer { _counters.transmitCalls &+= ring.enterCalls &- enters }
        if receiveArmed, let sqe = try? ring.nextSubmission() {
            io_uring_prep_cancel64(sqe, Self.receiveTag, 0)
            sqe.pointee.user_data = Self.receiveCancelTag
            _ = try? ring.submit()
        }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while sends.anyInFlight, clock.now < deadline {
            _ = try? ring.submitAndWait(minimumCompletions: 1, timeout: .milliseconds(10))
            drain()
        }
    }

    /// Tops the buffer ring up from the pool (frames held by received datagrams count against
    /// it) and queues the multishot receive if it is not armed and there is a frame to receive into.
    ///
    /// - Returns: whether a receive was queued.
    @inlinable
    mutating func armReceive() throws(SystemCallError) -> Bool {
        while buffers.providedCount + ready.count < Int(buffers.entries), let address = pool.allocateAddress() {
            buffers.provide(frameAddress: address)
        }
        buffers.commit()
        // With no frame to provide (all in batches or in flight), datagrams wait in the socket
        // buffer until frames come back; arming now would only end in ENOBUFS.
        guard !receiveArmed, buffers.providedCount > 0 else { return false }
        let sqe = try ring.nextSubmission()
        io_uring_prep_recvmsg_multishot(sqe, Self.fixedSocket, receiveMessage, 0)
        sqe.pointee.flags |= URing.fixedFileFlag
        sqe.pointee.flags |= UInt8(1 << IOSQE_BUFFER_SELECT_BIT)
        sqe.pointee.buf_group = Self.bufferGroup
        sqe.pointee.user_data = Self.receiveTag
        receiveArmed = true
        return true
    }

    // MARK: Transmit

    /// Queues one `sendmsg` (or `SENDMSG_ZC`) per datagram or GSO run and submits them with one
    /// `io_uring_enter` (none when an SQPOLL thread is awake). With
    /// ``URingUDPConfiguration/defersSubmission`` they go with the next ``receive(into:)`` that
    /// waits instead, or on their own once a batch's worth is queued. The frames stay with the
    /// port until their completions; the batch is empty afterwards.
    ///
    /// - Throws: `SystemCallError` when the ring fails; packets not queued by then are counted and dropped.
    public mutating func transmit(_ batch: inout PacketBatch) throws(SystemCallError) {
        gso.noteSends(batch.count)
        let enters = ring.enterCalls
        defer { _counters.transmitCalls &+= ring.enterCalls &- enters }
        var index = 0
        var failure: SystemCallError?
        do throws(SystemCallError) {
            // A nil slot means nothing completed for a second: drop the rest rather than hang the worker.
            while index < batch.count, let slot = try freeSlot() {
                do throws(SystemCallError) {
                    index += try prepareSend(batch: batch, first: index, slot: slot)
                } catch {
                    sends.giveBack(slot)
                    throw error
                }
            }
        } catch {
            failure = error
        }
        // Packets before `index` belong to send slots now; the rest go back to the pool, counted.
        if index < batch.count {
            _counters.droppedTransmit &+= UInt64(batch.count - index)
            for i in index..<batch.count { pool.releaseAddress(pool.address(of: batch[i])) }
        }
        batch.relinquishAll()
        do throws(SystemCallError) {
            if io_uring_sq_ready(ring.raw) >= submitThreshold { try ring.submit() }
            if let failure { throw failure }
        } catch {
            throw SystemCallError(.port, operation: "\(error.operation) sending from \(localEndpoint)", errno: error.errno,
                            hint: error.hint)
        }
    }

    /// A send slot, waiting for completions when all are in flight; `nil` after a second without one.
    @inlinable
    mutating func freeSlot() throws(SystemCallError) -> Int? {
        if let slot = sends.acquire() { return slot }
        for _ in 0..<100 {
            try ring.submitAndWait(minimumCompletions: 1, timeout: .milliseconds(10))
            drain()
            if let slot = sends.acquire() { return slot }
        }
        return nil
    }

    /// Fills send slot `slot` with the run of packets from `first` that one `sendmsg` can carry
    /// and queues its submission; returns how many packets it took.
    @inlinable
    mutating func prepareSend(batch: borrowing PacketBatch, first: Int, slot: Int) throws(SystemCallError) -> Int {
        let sqe = try ring.nextSubmission()
        let head = batch[first].frameStart
        matchFamily(DatagramHeader(frameStart: head))
        let size = batch[first].length
        var run = 1
        var total = size
        if gso.isEnabled, size > 0, size <= gso.largestSegment {
            while first + run < batch.count, run < sends.maximumRun {
                let next = batch[first + run].length
                guard next > 0, next <= size, total + next <= Self.maximumGSOPayload,
                      DatagramHeader(frameStart: head).hasSameRoute(as: DatagramHeader(frameStart: batch[first + run].frameStart)) else { break }
                matchFamily(DatagramHeader(frameStart: batch[first + run].frameStart))
                total += next
                run += 1
                if next < size { break }  // only the last segment may be short
            }
        }
        let vectors = sends.vectors(slot)
        let frames = sends.frames(slot)
        for i in 0..<run {
            vectors[i] = iovec(iov_base: batch[first + i].dataStart, iov_len: batch[first + i].length)
            frames[i] = pool.address(of: batch[first + i])
        }
        queue(slot, sqe: sqe, head: head, run: run, segmentSize: size, total: total)
        return run
    }

    /// Queues the send of `slot`, whose `run` datagrams are in its vectors and frames already
    /// (`head`: the first one's frame): `SEND` for a lone datagram that needs no control data,
    /// `SENDMSG` (GSO with `segmentSize` when `run` > 1), `SENDMSG_ZC` past the zero-copy threshold.
    @inlinable
    mutating func queue(_ slot: Int, sqe: UnsafeMutablePointer<io_uring_sqe>, head: UnsafeMutableRawPointer, run: Int,
                        segmentSize: Int, total: Int) {
        let vectors = sends.vectors(slot)
        let header = DatagramHeader(frameStart: head)
        let control = sends.control(slot)
        let controlLength = DatagramControl.write(at: control, header: header, segmentSize: run > 1 ? segmentSize : 0,
                                                  boundAddress: localEndpoint.address)
        sends.occupy(slot, run: run)
        let zeroCopy = configuration.zeroCopyThreshold > 0 && total >= configuration.zeroCopyThreshold
        if run == 1 && controlLength == 0 && sendsWithAddress && !zeroCopy {
            // SEND with the peer in addr2: no msghdr or iovec for the kernel to copy in and check.
            io_uring_prep_send(sqe, Self.fixedSocket, vectors[0].iov_base, vectors[0].iov_len, 0)
            io_uring_prep_send_set_addr(sqe, (head + DatagramHeader.peerOffset).assumingMemoryBound(to: sockaddr.self),
                                        UInt16(header.peerLength))
        } else {
            let message = sends.message(slot)
            message.pointee = msghdr(
                msg_name: head + DatagramHeader.peerOffset, msg_namelen: socklen_t(header.peerLength),
                msg_iov: vectors, msg_iovlen: run,
                msg_control: controlLength > 0 ? control : nil, msg_controllen: controlLength, msg_flags: 0)
            if zeroCopy {
                io_uring_prep_sendmsg_zc(sqe, Self.fixedSocket, message, 0)
            } else {
                io_uring_prep_sendmsg(sqe, Self.fixedSocket, message, 0)
            }
        }
        sqe.pointee.flags |= URing.fixedFileFlag
        sqe.pointee.user_data = UInt64(slot)
    }

    /// Queues each datagram of the refused GSO run in `slot` as a send of its own, as the
    /// socket port resends such a run; those that find no free slot or submission entry are
    /// dropped, counted. The slot keeps only what was not requeued.
    @usableFromInline
    mutating func resendSingly(_ slot: Int) {
        let run = sends.run(slot)
        var moved = 0
        while moved < run, let single = sends.acquire() {
            guard let sqe = try? ring.nextSubmission() else {
                sends.giveBack(single)
                break
            }
            let frame = sends.frames(slot)[moved]
            sends.frames(single)[0] = frame
            sends.vectors(single)[0] = sends.vectors(slot)[moved]
            queue(single, sqe: sqe, head: pool.base + Int(frame), run: 1, segmentSize: 0,
                  total: sends.vectors(slot)[moved].iov_len)
            moved += 1
        }
        sends.removeFirst(moved, of: slot)
        _counters.droppedTransmit &+= UInt64(run - moved)
    }

    /// Peers written by services as plain IPv4 become IPv4-mapped on an IPv6 socket, and back.
    @inlinable
    func matchFamily(_ header: DatagramHeader) { DatagramControl.matchFamily(header, socketFamily: family) }
}

/// Received datagrams waiting for a batch: a ring of (frame address, payload offset and length), allocated once.
@usableFromInline
struct ReadyQueue: ~Copyable {
    @usableFromInline struct Entry {
        @usableFromInline var address: UInt64
        @usableFromInline var offset: Int
        @usableFromInline var length: Int
        @inlinable init(address: UInt64, offset: Int, length: Int) {
            self.address = address
            self.offset = offset
            self.length = length
        }
    }

    @usableFromInline let storage: UnsafeMutablePointer<Entry>
    @usableFromInline let capacity: Int
    @usableFromInline var head = 0
    @usableFromInline var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    func deallocate() { storage.deallocate() }

    @inlinable var isEmpty: Bool { count == 0 }

    @inlinable
    mutating func append(_ entry: Entry) {
        precondition(count < capacity, "more received datagrams than the buffer ring holds")
        storage[(head + count) % capacity] = entry
        count += 1
    }

    @inlinable
    mutating func popFirst() -> Entry? {
        guard count > 0 else { return nil }
        let entry = storage[head]
        head = head + 1 == capacity ? 0 : head + 1
        count -= 1
        return entry
    }

    /// Returns every queued frame to `pool` (at shutdown).
    func releaseAll(to pool: FramePool) {
        for i in 0..<count { pool.releaseAddress(storage[(head + i) % capacity].address) }
    }
}

/// Per-message send state that must outlive the submission: the `msghdr`, its vectors and
/// control messages, and the frames it carries, until the completion (or zero-copy notification).
@usableFromInline
struct SendSlots: ~Copyable {
    @usableFromInline static let controlStride = DatagramControl.capacity
    /// Slots.
    @usableFromInline let count: Int
    /// The most datagrams one message carries (a GSO run).
    @usableFromInline let maximumRun: Int
    @usableFromInline let messages: UnsafeMutablePointer<msghdr>
    @usableFromInline let vectorStorage: UnsafeMutablePointer<iovec>
    @usableFromInline let frameStorage: UnsafeMutablePointer<UInt64>
    @usableFromInline let controlStorage: UnsafeMutableRawPointer
    @usableFromInline let runs: UnsafeMutablePointer<Int>
    @usableFromInline let freeStack: UnsafeMutablePointer<Int>
    @usableFromInline var freeCount: Int
    /// Frames held by slots in flight.
    @usableFromInline var framesInFlight = 0

    init(count: Int, maximumRun: Int) {
        self.count = count
        self.maximumRun = maximumRun
        messages = .allocate(capacity: count)
        vectorStorage = .allocate(capacity: count * maximumRun)
        frameStorage = .allocate(capacity: count * maximumRun)
        controlStorage = .allocate(byteCount: count * Self.controlStride, alignment: 16)
        runs = .allocate(capacity: count)
        runs.initialize(repeating: 0, count: count)
        freeStack = .allocate(capacity: count)
        for i in 0..<count { freeStack[i] = count - 1 - i }
        freeCount = count
    }

    func deallocate() {
        messages.deallocate()
        vectorStorage.deallocate()
        frameStorage.deallocate()
        controlStorage.deallocate()
        runs.deallocate()
        freeStack.deallocate()
    }

    /// Whether any slot holds frames (read from the slots themselves, for shutdown).
    var anyInFlight: Bool { (0..<count).contains { runs[$0] > 0 } }

    @inlinable
    mutating func acquire() -> Int? {
        guard freeCount > 0 else { return nil }
        freeCount -= 1
        return freeStack[freeCount]
    }

    /// Returns a slot that was acquired but not used.
    @inlinable
    mutating func giveBack(_ slot: Int) {
        freeStack[freeCount] = slot
        freeCount += 1
    }

    @inlinable func message(_ slot: Int) -> UnsafeMutablePointer<msghdr> { messages + slot }
    @inlinable func vectors(_ slot: Int) -> UnsafeMutablePointer<iovec> { vectorStorage + slot * maximumRun }
    @inlinable func frames(_ slot: Int) -> UnsafeMutablePointer<UInt64> { frameStorage + slot * maximumRun }
    @inlinable func control(_ slot: Int) -> UnsafeMutableRawPointer { controlStorage + slot * Self.controlStride }
    @inlinable func run(_ slot: Int) -> Int { runs[slot] }

    /// Marks `slot` in flight with `run` frames (already recorded in ``frames(_:)``).
    @inlinable
    mutating func occupy(_ slot: Int, run: Int) {
        runs[slot] = run
        framesInFlight += run
    }

    /// Takes the first `count` frames out of `slot` (they went to other slots); a slot left with
    /// none is free again.
    @inlinable
    mutating func removeFirst(_ count: Int, of slot: Int) {
        guard count > 0 else { return }
        let frames = frames(slot), vectors = vectors(slot)
        for i in count..<runs[slot] {
            frames[i - count] = frames[i]
            vectors[i - count] = vectors[i]
        }
        runs[slot] -= count
        framesInFlight -= count
        if runs[slot] == 0 { giveBack(slot) }
    }

    /// Returns the slot's frames to `pool` and the slot to the free stack.
    @inlinable
    mutating func finish(_ slot: Int, to pool: FramePool) {
        let run = runs[slot]
        guard run > 0 else { return }
        releaseFrames(slot, to: pool)
        framesInFlight -= run
        giveBack(slot)
    }

    /// Returns the slot's frames to `pool` and marks it empty, leaving the free stack alone
    /// (at shutdown, when the slots are not used again).
    @inlinable
    func releaseFrames(_ slot: Int, to pool: FramePool) {
        let frames = frames(slot)
        for i in 0..<runs[slot] { pool.releaseAddress(frames[i]) }
        runs[slot] = 0
    }
}
