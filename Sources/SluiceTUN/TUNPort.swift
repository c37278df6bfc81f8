#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets
import SluiceSystem

/// One queue of a ``TUNDevice`` as a `Port`: each read fills one pool frame with one IP packet
/// (TUN, `FrameFormat/ip`) or Ethernet frame (TAP, `FrameFormat/ethernet`), each write sends
/// one. A batch is read until the queue is empty or the batch is full, after one `poll` for the
/// first packet.
///
/// On a device with a virtio-net header (``TUNDeviceConfiguration/offloads``) the port reads the
/// header with each packet: it completes a checksum left partial, splits a super-packet into
/// its segments (headers, lengths and checksums as the kernel's own segmentation writes them),
/// and drops a packet whose header disagrees with it (counted). On the way out it joins runs of
/// same-flow UDP datagrams into one super-packet when the device takes them (USO), so one write
/// carries up to 64 datagrams.
///
/// The port does not own the descriptor: the device does, and outlives the port.
public struct TUNPort: Port, ~Copyable {
    public let format: FrameFormat
    public private(set) var counters = PortCounters()
    public var framesHeld: Int { pendingLayout == nil ? 0 : 1 }

    private let descriptor: Int32
    private let pool: FramePool
    private let receiveTimeout: Duration
    private let deviceName: String
    private let headerLength: Int
    private let coalescesIPv4: Bool
    private let coalescesIPv6: Bool
    /// A super-packet being split (its frame's address, data and length), what it holds, and
    /// the next segment to take from it.
    private var pendingFrame: UInt64 = 0
    private var pendingData: UnsafeMutableRawPointer?
    private var pendingLength = 0
    private var pendingLayout: SuperPacketLayout?
    private var pendingSegment = 0

    /// A port over queue `queue` of `device`, with frames from `pool` (each frame holds one
    /// packet: make them at least the MTU plus the link header, or 64 KiB and more for a
    /// device with segmentation offloads). `receiveTimeout` bounds the wait for the first
    /// packet of a batch.
    public init(device: TUNDevice, queue: Int = 0, pool: FramePool, receiveTimeout: Duration = .milliseconds(100)) {
        precondition(device.queueDescriptors.indices.contains(queue), "no queue \(queue) on \(device.name)")
        self.init(descriptor: device.queueDescriptors[queue], kind: device.kind, virtioHeaderLength: device.virtioHeaderLength,
                  offloads: device.offloads, pool: pool, name: device.name, receiveTimeout: receiveTimeout)
    }

    /// A port over `descriptor`, a queue of a device made elsewhere (handed over by a privileged
    /// process, say) or anything else that reads and writes one packet per call, with a
    /// virtio-net header of `virtioHeaderLength` bytes when the device was made with one and
    /// the `offloads` it agreed to. `name` names it in errors.
    public init(descriptor: Int32, kind: TUNDeviceConfiguration.Kind, virtioHeaderLength: Int, offloads: TUNOffloads,
                pool: FramePool, name: String, receiveTimeout: Duration = .milliseconds(100)) {
        precondition(virtioHeaderLength == 0 || virtioHeaderLength == VirtioNetHeader.length, "a virtio-net header is 0 or 10 bytes")
        precondition(pool.headroom >= virtioHeaderLength, "frames need headroom for the virtio-net header")
        self.descriptor = descriptor
        self.format = kind == .tun ? .ip : .ethernet
        self.pool = pool
        self.receiveTimeout = receiveTimeout
        self.deviceName = name
        self.headerLength = virtioHeaderLength
        coalescesIPv4 = offloads.contains(.udpSegmentation4)
        coalescesIPv6 = offloads.contains(.udpSegmentation6)
    }

    public mutating func receive(into batch: inout PacketBatch) throws(SystemCallError) -> Int {
        var added = splitPending(into: &batch)
        var waited = false
        while !batch.isFull {
            // Without a free frame the packets wait in the device's queue.
            guard let index = batch.appendNewFrame() else { break }
            // The virtio-net header lands in the headroom, in front of the packet.
            let start = batch[index].dataStart - headerLength
            let room = batch[index].capacity - batch[index].offset + headerLength
            let count = read(descriptor, start, room)
            counters.receiveCalls &+= 1
            if count > 0 {
                if headerLength == 0 {
                    batch[index].length = count
                    counters.receivedPackets &+= 1
                    counters.receivedBytes &+= UInt64(count)
                    added += 1
                } else {
                    added += accept(&batch, index: index, header: VirtioNetHeader(at: start), length: count - headerLength)
                }
                continue
            }
            pool.release(batch.removeLast())
            let code = Glibc.errno
            if count == 0 || code == EAGAIN {
                // Nothing queued: wait once for the first packet of the batch.
                guard added == 0, !waited else { break }
                waited = true
                try wait()
                continue
            }
            if code == EINTR { continue }
            throw SystemCallError(.tun, operation: "read from \(deviceName)", errno: code,
                                  hint: code == EBADFD ? "the device went away (deleted, or its queue detached)" : nil)
        }
        return added
    }

    /// Takes the packet just read into `batch[index]` with its virtio-net header: completes its
    /// checksum, or sets it aside to be split, or drops it. Returns the packets it added.
    private mutating func accept(_ batch: inout PacketBatch, index: Int, header: VirtioNetHeader, length: Int) -> Int {
        // Nothing after the header, or not even a whole header.
        guard length > 0 else {
            counters.droppedMalformed &+= 1
            pool.release(batch.removeLast())
            return 0
        }
        batch[index].length = length
        counters.receivedBytes &+= UInt64(length)
        let data = batch[index].dataStart
        if header.segmentation == VirtioNetHeader.Segmentation.none.rawValue {
            if header.flags & VirtioNetHeader.needsChecksum != 0,
               !SuperPacketLayout.completeChecksum(data, length: length, start: Int(header.checksumStart),
                                                   offset: Int(header.checksumOffset)) {
                counters.droppedMalformed &+= 1
                pool.release(batch.removeLast())
                return 0
            }
            counters.receivedPackets &+= 1
            return 1
        }
        guard let layout = SuperPacketLayout(header, data: data, length: length, networkOffset: networkOffset(data, length: length)) else {
            counters.droppedMalformed &+= 1
            pool.release(batch.removeLast())
            return 0
        }
        let whole = batch.removeLast()
        pendingFrame = pool.address(of: whole)
        pendingData = whole.dataStart
        pendingLength = whole.length
        pendingLayout = layout
        pendingSegment = 0
        return splitPending(into: &batch)
    }

    /// Where the IP header starts: after the Ethernet header (and its tag) on a TAP device.
    private func networkOffset(_ data: UnsafeMutableRawPointer, length: Int) -> Int {
        guard format == .ethernet else { return 0 }
        return length >= 14 && UInt16(bigEndian: data.loadUnaligned(fromByteOffset: 12, as: UInt16.self)) == 0x8100 ? 18 : 14
    }

    /// Moves segments of the pending super-packet into `batch` while there is room and frames.
    private mutating func splitPending(into batch: inout PacketBatch) -> Int {
        guard let layout = pendingLayout, let source = pendingData else { return 0 }
        let length = pendingLength
        let segments = layout.segmentCount(length: length)
        var added = 0
        while pendingSegment < segments, let index = batch.appendNewFrame() {
            batch[index].length = layout.writeSegment(pendingSegment, of: source, length: length, to: batch[index].dataStart)
            pendingSegment += 1
            added += 1
        }
        counters.coalescedSegments &+= UInt64(added)
        counters.receivedPackets &+= UInt64(added)
        if pendingSegment == segments {
            pool.releaseAddress(pendingFrame)
            pendingLayout = nil
            pendingData = nil
        }
        return added
    }

    /// Waits up to the receive timeout for the queue to become readable.
    private func wait() throws(SystemCallError) {
        var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: max(1, receiveTimeout.nanosecondsClamped / 1_000_000))
        let result = poll(&ready, 1, milliseconds)
        if result < 0 && Glibc.errno != EINTR {
            throw SystemCallError(.tun, operation: "poll on \(deviceName)", errno: Glibc.errno)
        }
        if ready.revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
            throw SystemCallError(.tun, operation: "poll on \(deviceName)", errno: EIO,
                                  hint: "the device went away (deleted, or its queue detached)")
        }
    }

    public mutating func transmit(_ batch: inout PacketBatch) throws(SystemCallError) {
        var failure: SystemCallError?
        var index = 0
        while index < batch.count {
            var packets = 1
            if headerLength > 0 {
                // No room for the virtio-net header in front: dropped before any work on it.
                if batch[index].offset < headerLength {
                    counters.droppedMalformed &+= 1
                    index += 1
                    continue
                }
                var header = VirtioNetHeader()
                packets = coalesce(&batch, from: index, header: &header)
                batch[index].pushFront(headerLength)
                header.store(at: batch[index].dataStart)
            }
            let start = batch[index].dataStart
            let length = batch[index].length
            var written = -1
            repeat {
                written = write(descriptor, start, length)
            } while written < 0 && Glibc.errno == EINTR
            counters.transmitCalls &+= 1
            if written == length {
                counters.transmittedPackets &+= UInt64(packets)
                counters.transmittedBytes &+= UInt64(written - headerLength)
                if packets > 1 { counters.segmentedPackets &+= UInt64(packets) }
            } else {
                // A full queue (EAGAIN), a packet the kernel refuses (EINVAL) or a device set down
                // (EIO, as the kernel drops what a down interface would send): dropped, counted.
                counters.droppedTransmit &+= UInt64(packets)
                let code = Glibc.errno
                if written < 0, code == EBADFD, failure == nil {
                    failure = SystemCallError(.tun, operation: "write to \(deviceName)", errno: code,
                                              hint: "the device went away (deleted, or its queue detached)")
                }
            }
            index += packets
        }
        batch.releaseAll()
        if let failure { throw failure }
    }

    /// Joins the UDP datagrams from `batch[first]` on that share its flow and payload size
    /// (the last may be shorter) into `batch[first]`, as one super-packet described by
    /// `header`. Returns how many packets it took (1: none joined).
    private func coalesce(_ batch: inout PacketBatch, from first: Int, header: inout VirtioNetHeader) -> Int {
        let data = batch[first].dataStart
        let length = batch[first].length
        let linkLength = networkOffset(data, length: length)
        guard batch.count - first > 1,
              let (transport, size, isIPv6) = UDPCoalescing.udp(data, length: length, networkOffset: linkLength),
              size > 0, isIPv6 ? coalescesIPv6 : coalescesIPv4
        else { return 1 }
        var count = 1
        var total = size
        var lastSize = size
        while first + count < batch.count, count < UDPCoalescing.maximumSegments, lastSize == size {
            let next = batch[first + count].dataStart
            let nextLength = batch[first + count].length
            guard let (nextTransport, nextSize, nextIPv6) = UDPCoalescing.udp(next, length: nextLength, networkOffset: linkLength),
                  nextTransport == transport, nextIPv6 == isIPv6, nextSize > 0, nextSize <= size,
                  transport + 8 + total + nextSize - linkLength <= 65535, batch[first].tailroom >= total - size + nextSize,
                  UDPCoalescing.sameFlow(data, next, transport: transport, isIPv6: isIPv6, networkOffset: linkLength)
            else { break }
            total += nextSize
            lastSize = nextSize
            count += 1
        }
        guard count > 1 else { return 1 }
        // The payloads follow the first datagram's, in order.
        var end = length
        for other in (first + 1)..<(first + count) {
            let payload = batch[other].length - transport - 8
            (data + end).copyMemory(from: batch[other].dataStart + transport + 8, byteCount: payload)
            end += payload
        }
        batch[first].length = end
        let network = data + linkLength
        let udpLength = end - transport
        let pseudo: UInt64
        if isIPv6 {
            network.storeBytes(of: UInt16(udpLength).bigEndian, toByteOffset: 4, as: UInt16.self)
            pseudo = InternetChecksum.pseudoHeaderSum(source: IPv6Address(networkBytesAt: network + 8),
                                                      destination: IPv6Address(networkBytesAt: network + 24), nextHeader: 17, length: udpLength)
        } else {
            network.storeBytes(of: UInt16(end - linkLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            network.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
            let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: 20))
            network.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
            pseudo = InternetChecksum.pseudoHeaderSum(source: IPv4Address(networkBytesAt: network + 12),
                                                      destination: IPv4Address(networkBytesAt: network + 16), protocol: 17, length: udpLength)
        }
        // The kernel completes each segment's checksum from the pseudo-header sum (CHECKSUM_PARTIAL).
        (data + transport).storeBytes(of: UInt16(udpLength).bigEndian, toByteOffset: 4, as: UInt16.self)
        (data + transport).storeBytes(of: InternetChecksum.fold(pseudo).bigEndian, toByteOffset: 6, as: UInt16.self)
        header.flags = VirtioNetHeader.needsChecksum
        header.segmentation = VirtioNetHeader.Segmentation.udp.rawValue
        header.headerLength = UInt16(transport + 8)
        header.segmentSize = UInt16(size)
        header.checksumStart = UInt16(transport)
        header.checksumOffset = 6
        return count
    }

    public mutating func reclaim() -> Int { 0 }
}
