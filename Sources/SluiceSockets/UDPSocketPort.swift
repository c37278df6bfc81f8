#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import Logging
import SluiceCore
import SluiceSystem
import SluicePackets

/// How a ``UDPSocketPort`` sets up its socket.
public struct UDPSocketConfiguration: Sendable {
    /// The address and port to bind. `0.0.0.0` takes IPv4 only; `[::]` takes both families
    /// (dual-stack, IPv4 peers seen as IPv4).
    public var listen: IPEndpoint
    /// `SO_REUSEPORT`, so each worker binds its own socket to the same port and the kernel
    /// spreads flows between them.
    public var reusePort: Bool = true
    /// Send runs of equal-size datagrams to one peer as one `UDP_SEGMENT` (GSO) send.
    public var segmentationOffload: Bool = false
    /// Receive coalesced datagrams (`UDP_GRO`) and split them here; needs frames of 64 KiB.
    public var receiveOffload: Bool = false
    /// The largest segment a GSO send may use: the path MTU less the IP and UDP headers
    /// (1452 fits IPv4 and IPv6 on a 1500-byte MTU).
    public var maximumSegmentSize: Int = 1452
    /// How long ``UDPSocketPort/receive(into:)`` waits for the first datagram.
    public var receiveTimeout: Duration = .milliseconds(100)
    /// `SO_RCVBUF`/`SO_SNDBUF` in bytes (forced past the sysctl limit when privileged); `nil` keeps the default.
    public var socketBufferBytes: Int? = 4 << 20
    /// Where the port reports what it changes on its own (a refused offload); silent by default.
    public var logger: Logger = .disabled

    /// A configuration for `listen`, other settings at their defaults.
    public init(listen: IPEndpoint) { self.listen = listen }

    /// The frame size a pool needs for datagrams of up to `maximumDatagram` payload bytes
    /// (and for coalesced receives when ``receiveOffload`` is on).
    public func frameSize(maximumDatagram: Int = 65507) -> Int {
        DatagramHeader.frameSize(forPayload: receiveOffload ? 65535 : maximumDatagram)
    }
}

/// A UDP port over a kernel socket: `recvmmsg` and `sendmmsg` straight into and out of pool
/// frames, one syscall per batch each way.
///
/// The peer's address lands in the frame's `DatagramHeader`; `IP_PKTINFO`/`IPV6_PKTINFO`
/// tell which local address a datagram came to, and replies leave from it. With
/// ``UDPSocketConfiguration/segmentationOffload`` equal-size datagrams to one peer go out as
/// one GSO send; with ``UDPSocketConfiguration/receiveOffload`` coalesced receives are split
/// back into datagrams (segments after the first are copied into their own frames, so the
/// service sees each on its own).
public struct UDPSocketPort: Port, ~Copyable {
    /// The socket.
    public let descriptor: Int32
    /// The address the socket is bound to (with the port the kernel chose for port 0).
    public let localEndpoint: IPEndpoint
    /// The configuration it was made with.
    public let configuration: UDPSocketConfiguration
    @usableFromInline let pool: FramePool
    @usableFromInline let family: Int32
    @usableFromInline let headroom: Int
    @usableFromInline let slots: Int
    @usableFromInline let messages: UnsafeMutablePointer<sluice_mmsghdr>
    @usableFromInline let vectors: UnsafeMutablePointer<iovec>
    @usableFromInline let addresses: UnsafeMutablePointer<UInt64>
    @usableFromInline let runs: UnsafeMutablePointer<Int>
    @usableFromInline let control: UnsafeMutableRawPointer
    @usableFromInline var gso: SegmentationOffload
    /// When the socket's drops are read.
    @usableFromInline var dropSampler = SocketDropSampler()
    @usableFromInline var pending: PendingSegments
    @usableFromInline var _counters = PortCounters()

    @usableFromInline static let controlStride = DatagramControl.capacity
    @usableFromInline static let maximumGSOPayload = 65507

    /// Opens and binds the socket.
    ///
    /// - Parameters:
    ///   - configuration: what to bind and which offloads to use.
    ///   - pool: the frames to receive into; its frames must be at least
    ///     ``UDPSocketConfiguration/frameSize(maximumDatagram:)`` long to take every datagram whole.
    ///   - batchCapacity: the largest batch the port fills or sends.
    public init(configuration: UDPSocketConfiguration, pool: FramePool,
                batchCapacity: Int = PacketBatch.defaultCapacity) throws(SystemCallError) {
        precondition(pool.headroom >= DatagramHeader.minimumHeadroom,
                     "a datagram pool needs \(DatagramHeader.minimumHeadroom) bytes of headroom")
        let family = configuration.listen.address.family
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(.socket, operation: "socket(UDP)", errno: errno) }
        do throws(SystemCallError) {
            try Self.configure(fd, family: family, configuration: configuration)
            let bound = SocketAddress.with(configuration.listen, family: family) { bind(fd, $0, $1) }
            guard bound == 0 else { throw SystemCallError(.socket, operation: "bind(\(configuration.listen))", errno: errno) }
        } catch {
            close(fd)
            throw error
        }
        descriptor = fd
        self.family = family
        self.configuration = configuration
        localEndpoint = SocketAddress.localEndpoint(of: fd) ?? configuration.listen
        self.pool = pool
        headroom = pool.headroom
        slots = batchCapacity
        messages = .allocate(capacity: batchCapacity)
        vectors = .allocate(capacity: batchCapacity)
        addresses = .allocate(capacity: batchCapacity)
        runs = .allocate(capacity: batchCapacity)
        control = .allocate(byteCount: batchCapacity * Self.controlStride, alignment: 16)
        gso = SegmentationOffload(configured: configuration.segmentationOffload, largestSegment: configuration.maximumSegmentSize)
        pending = PendingSegments(capacity: batchCapacity)
    }

    deinit {
        close(descriptor)
        pending.release(to: pool)
        messages.deallocate()
        vectors.deallocate()
        addresses.deallocate()
        runs.deallocate()
        control.deallocate()
    }

    static func configure(_ fd: Int32, family: Int32, configuration: UDPSocketConfiguration) throws(SystemCallError) {
        try configureDatagramSocket(fd, family: family, listen: configuration.listen, reusePort: configuration.reusePort,
                                    receiveOffload: configuration.receiveOffload,
                                    socketBufferBytes: configuration.socketBufferBytes)
        var timeout = configuration.receiveTimeout.timeval
        _ = try systemCall(.socket, "setsockopt(SO_RCVTIMEO)") {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    public var format: FrameFormat { .datagram }

    public var framesHeld: Int { pending.count }

    /// Nothing waits to be sent (sends are synchronous); the socket's drops are read a last time.
    public mutating func finishTransmits(timeout: Duration) { noteSocketDrops(every: 1) }

    public var counters: PortCounters { _counters }

    /// Reads what the kernel dropped at the socket (`SO_MEMINFO`): every 256 receives, and at
    /// the end, not per batch.
    @inlinable
    mutating func noteSocketDrops(every interval: Int = 256) {
        if let drops = dropSampler.sample(descriptor, every: interval) { _counters.droppedSocketBuffer = drops }
    }

    /// Whether sends still use GSO (it turns itself off, saying so once, if the kernel refuses it).
    public var usesSegmentationOffload: Bool { gso.isEnabled }

    public mutating func reclaim() -> Int { 0 }

    // MARK: Receive

    public mutating func receive(into batch: inout PacketBatch) throws(SystemCallError) -> Int {
        let before = batch.count
        if !pending.isEmpty {
            drainPending(into: &batch)
            return batch.count - before
        }
        var count = 0
        let limit = min(batch.remainingCapacity, slots)
        while count < limit, let address = pool.allocateAddress() {
            prepareReceive(slot: count, frameAddress: address)
            count += 1
        }
        guard count > 0 else {
            _counters.droppedNoFrame &+= 1
            return 0
        }
        _counters.receiveCalls &+= 1
        noteSocketDrops()
        // The receive timeout (SO_RCVTIMEO) ends a wait with EAGAIN: no datagram, not a failure.
        let received: Int32
        do throws(SystemCallError) {
            received = try nonBlockingSystemCall(.port, "recvmmsg on \(localEndpoint)") {
                sluice_recvmmsg(descriptor, messages, UInt32(count), sluice_MSG_WAITFORONE)
            } ?? 0
        } catch {
            for i in 0..<count { pool.releaseAddress(addresses[i]) }
            throw error
        }
        let got = Int(received)
        // A wait that took nothing is idle time: read the socket's drops now, so what a burst
        // left behind shows up at once, not 256 calls (minutes of idling) later.
        if got == 0 { noteSocketDrops(every: 1) }
        for i in got..<count { pool.releaseAddress(addresses[i]) }
        for i in 0..<got { completeReceive(slot: i, into: &batch) }
        drainPending(into: &batch)
        return batch.count - before
    }

    @inlinable
    func prepareReceive(slot: Int, frameAddress: UInt64) {
        let frame = pool.base + Int(frameAddress)
        addresses[slot] = frameAddress
        vectors[slot] = iovec(iov_base: frame + headroom, iov_len: pool.frameSize - headroom)
        messages[slot] = sluice_mmsghdr(
            msg_hdr: msghdr(
                msg_name: frame + DatagramHeader.peerOffset, msg_namelen: socklen_t(DatagramHeader.peerCapacity),
                msg_iov: vectors + slot, msg_iovlen: 1,
                msg_control: frame + DatagramHeader.controlOffset, msg_controllen: DatagramHeader.controlCapacity,
                msg_flags: 0),
            msg_len: 0)
    }

    @inlinable
    mutating func completeReceive(slot: Int, into batch: inout PacketBatch) {
        let address = addresses[slot]
        let length = Int(messages[slot].msg_len)
        let flags = messages[slot].msg_hdr.msg_flags
        if flags & Int32(MSG_TRUNC) != 0 {
            _counters.droppedTruncated &+= 1
            pool.releaseAddress(address)
            return
        }
        let frame = pool.base + Int(address)
        let header = DatagramHeader(frameStart: frame)
        let segmentSize = DatagramControl.readAll((messages + slot).pointer(to: \.msg_hdr)!, into: header, local: localEndpoint)
        _counters.receivedPackets &+= 1
        _counters.receivedBytes &+= UInt64(length)
        if segmentSize > 0 && length > segmentSize {
            let segments = (length + segmentSize - 1) / segmentSize
            _counters.receivedPackets &+= UInt64(segments - 1)
            _counters.coalescedSegments &+= UInt64(segments)
            pending.append(PendingSegments.Entry(address: address, length: length, segmentSize: segmentSize, next: 0))
        } else {
            batch.append(pool.packet(at: address, offset: headroom, length: length))
        }
    }

    /// Splits coalesced receives into the batch: every segment but the last is copied into a
    /// frame of its own; the last keeps the original frame, so order is kept and nothing extra is held.
    @inlinable
    mutating func drainPending(into batch: inout PacketBatch) {
        while var entry = pending.first, !batch.isFull {
            let source = pool.base + Int(entry.address)
            let segments = (entry.length + entry.segmentSize - 1) / entry.segmentSize
            while entry.next < segments - 1, !batch.isFull {
                guard let copy = pool.allocateAddress() else {
                    _counters.droppedNoFrame &+= 1
                    pending.updateFirst(entry)
                    return
                }
                let target = pool.base + Int(copy)
                target.copyMemory(from: source, byteCount: DatagramHeader.controlOffset)
                (target + headroom).copyMemory(from: source + headroom + entry.next * entry.segmentSize,
                                               byteCount: entry.segmentSize)
                batch.append(pool.packet(at: copy, offset: headroom, length: entry.segmentSize))
                entry.next += 1
            }
            guard entry.next == segments - 1, !batch.isFull else {
                pending.updateFirst(entry)
                return
            }
            let lastOffset = entry.next * entry.segmentSize
            batch.append(pool.packet(at: entry.address, offset: headroom + lastOffset, length: entry.length - lastOffset))
            _ = pending.popFirst()
        }
    }

    // MARK: Transmit

    public mutating func transmit(_ batch: inout PacketBatch) throws(SystemCallError) {
        gso.noteSends(batch.count)
        var index = 0
        while index < batch.count {
            var messageCount = 0
            var vectorCount = 0
            var packets = 0
            // Fill as many messages as the batch needs, grouping GSO runs.
            while index + packets < batch.count, messageCount < slots {
                let run = prepareSend(batch: batch, first: index + packets, message: messageCount, vector: vectorCount)
                vectorCount += run
                packets += run
                messageCount += 1
            }
            sendPrepared(messageCount)
            index += packets
        }
        batch.releaseAll()
    }

    /// Fills message `message` with the run of packets from `first` that one send can carry;
    /// returns how many packets it took.
    @inlinable
    mutating func prepareSend(batch: borrowing PacketBatch, first: Int, message: Int, vector: Int) -> Int {
        let head = batch[first].frameStart
        matchFamily(DatagramHeader(frameStart: head))
        let size = batch[first].length
        var run = 1
        if gso.isEnabled, size > 0, size <= gso.largestSegment {
            var total = size
            while first + run < batch.count, run < Int(sluice_UDP_MAX_SEGMENTS) {
                let next = batch[first + run].length
                guard next > 0, next <= size, total + next <= Self.maximumGSOPayload,
                      DatagramHeader(frameStart: head).hasSameRoute(as: DatagramHeader(frameStart: batch[first + run].frameStart)) else { break }
                matchFamily(DatagramHeader(frameStart: batch[first + run].frameStart))
                total += next
                run += 1
                if next < size { break }  // only the last segment may be short
            }
        }
        for i in 0..<run {
            vectors[vector + i] = iovec(iov_base: batch[first + i].dataStart, iov_len: batch[first + i].length)
        }
        let header = DatagramHeader(frameStart: head)
        let controlLength = DatagramControl.write(at: control + message * Self.controlStride, header: header,
                                                  segmentSize: run > 1 ? size : 0, boundAddress: localEndpoint.address)
        messages[message] = sluice_mmsghdr(
            msg_hdr: msghdr(
                msg_name: head + DatagramHeader.peerOffset, msg_namelen: socklen_t(header.peerLength),
                msg_iov: vectors + vector, msg_iovlen: run,
                msg_control: controlLength > 0 ? control + message * Self.controlStride : nil,
                msg_controllen: controlLength, msg_flags: 0),
            msg_len: 0)
        runs[message] = run
        return run
    }

    /// Peers written by services as plain IPv4 become IPv4-mapped on an IPv6 socket, and back.
    @inlinable
    func matchFamily(_ header: DatagramHeader) { DatagramControl.matchFamily(header, socketFamily: family) }

    /// Sends the prepared messages, retrying after partial sends; a message the kernel refuses
    /// is counted and skipped (a GSO one is first retried as single datagrams).
    @inlinable
    mutating func sendPrepared(_ count: Int) {
        var start = 0
        while start < count {
            _counters.transmitCalls &+= 1
            let sent = sluice_sendmmsg(descriptor, messages + start, UInt32(count - start), 0)
            if sent > 0 {
                for i in start..<(start + Int(sent)) { countSent(i) }
                start += Int(sent)
                continue
            }
            let error = errno
            if error == EINTR { continue }
            if runs[start] > 1 && (error == EINVAL || error == EIO || error == EMSGSIZE) {
                let segment = messages[start].msg_hdr.msg_iov[0].iov_len
                // Refused for GSO's sake only if the datagrams go out on their own (a reply to
                // port 0 fails either way).
                let anySent = resendSingly(start)
                if error == EMSGSIZE {
                    gso.segmentTooLarge(segment, logger: configuration.logger, listen: localEndpoint)
                } else if anySent {
                    gso.refused(error, logger: configuration.logger, listen: localEndpoint)
                }
            } else {
                _counters.droppedTransmit &+= UInt64(runs[start])
            }
            start += 1
        }
    }

    @inlinable
    mutating func countSent(_ message: Int) {
        let run = runs[message]
        _counters.transmittedPackets &+= UInt64(run)
        if run > 1 { _counters.segmentedPackets &+= UInt64(run) }
        let header = messages[message].msg_hdr
        for v in 0..<run { _counters.transmittedBytes &+= UInt64(header.msg_iov[v].iov_len) }
    }

    /// Sends each datagram of a refused GSO message on its own; returns whether any went out.
    @usableFromInline
    mutating func resendSingly(_ message: Int) -> Bool {
        var header = messages[message].msg_hdr
        let run = runs[message]
        let vectorBase = header.msg_iov!
        var anySent = false
        // Keep only the source-address control message: it comes first, the segment size last.
        header.msg_controllen = header.msg_controllen > 0 ? max(0, header.msg_controllen - sluice_cmsg_space(2)) : 0
        if header.msg_controllen == 0 { header.msg_control = nil }
        for v in 0..<run {
            header.msg_iov = vectorBase + v
            header.msg_iovlen = 1
            _counters.transmitCalls &+= 1
            if sendmsg(descriptor, &header, 0) >= 0 {
                _counters.transmittedPackets &+= 1
                _counters.transmittedBytes &+= UInt64(vectorBase[v].iov_len)
                anySent = true
            } else {
                _counters.droppedTransmit &+= 1
            }
        }
        return anySent
    }
}

/// Coalesced receives waiting to be split into batches: a small ring, allocated once.
@usableFromInline
struct PendingSegments: ~Copyable {
    @usableFromInline struct Entry {
        @usableFromInline var address: UInt64
        @usableFromInline var length: Int
        @usableFromInline var segmentSize: Int
        @usableFromInline var next: Int
        @inlinable init(address: UInt64, length: Int, segmentSize: Int, next: Int) {
            self.address = address
            self.length = length
            self.segmentSize = segmentSize
            self.next = next
        }
    }

    @usableFromInline let storage: UnsafeMutablePointer<Entry>
    @usableFromInline let capacity: Int
    @usableFromInline var head = 0
    @usableFromInline var count = 0

    @inlinable
    init(capacity: Int) {
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    /// Returns every pending frame to `pool` and frees the ring.
    func release(to pool: FramePool) {
        for i in 0..<count { pool.releaseAddress(storage[(head + i) % capacity].address) }
        storage.deallocate()
    }

    @inlinable var isEmpty: Bool { count == 0 }
    @inlinable var first: Entry? { count > 0 ? storage[head] : nil }
    @inlinable mutating func updateFirst(_ entry: Entry) { storage[head] = entry }

    @inlinable
    mutating func append(_ entry: Entry) {
        precondition(count < capacity, "more coalesced receives pending than a batch holds")
        storage[(head + count) % capacity] = entry
        count += 1
    }

    @inlinable
    mutating func popFirst() -> Entry? {
        guard count > 0 else { return nil }
        let entry = storage[head]
        head = (head + 1) % capacity
        count -= 1
        return entry
    }
}
