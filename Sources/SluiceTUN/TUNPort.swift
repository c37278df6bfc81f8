#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluiceSystem

/// One queue of a ``TUNDevice`` as a ``Port``: each read fills one pool frame with one IP packet
/// (TUN, ``FrameFormat/ip``) or Ethernet frame (TAP, ``FrameFormat/ethernet``), each write sends
/// one. A batch is read until the queue is empty or the batch is full, after one `poll` for the
/// first packet.
///
/// The port does not own the descriptor: the device does, and outlives the port.
public struct TUNPort: Port, ~Copyable {
    public let format: FrameFormat
    public private(set) var counters = PortCounters()
    public var framesHeld: Int { 0 }

    private let descriptor: Int32
    private let pool: FramePool
    private let receiveTimeout: Duration
    private let deviceName: String

    /// A port over queue `queue` of `device`, with frames from `pool` (each frame holds one
    /// packet: make them at least the MTU plus the link header). `receiveTimeout` bounds the
    /// wait for the first packet of a batch.
    public init(device: TUNDevice, queue: Int = 0, pool: FramePool, receiveTimeout: Duration = .milliseconds(100)) {
        precondition(device.queueDescriptors.indices.contains(queue), "no queue \(queue) on \(device.name)")
        self.descriptor = device.queueDescriptors[queue]
        self.format = device.kind == .tun ? .ip : .ethernet
        self.pool = pool
        self.receiveTimeout = receiveTimeout
        self.deviceName = device.name
    }

    public mutating func receive(into batch: inout PacketBatch) throws(SystemCallError) -> Int {
        var added = 0
        var waited = false
        while !batch.isFull {
            // Without a free frame the packets wait in the device's queue.
            guard let index = batch.appendNewFrame() else { break }
            let room = batch[index].capacity - batch[index].offset
            let count = read(descriptor, batch[index].dataStart, room)
            counters.receiveCalls &+= 1
            if count > 0 {
                batch[index].length = count
                counters.receivedPackets &+= 1
                counters.receivedBytes &+= UInt64(count)
                added += 1
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
                                  hint: code == EBADFD || code == EIO ? "the device went away (deleted, or its queue detached)" : nil)
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
        for index in 0..<batch.count {
            let start = batch[index].dataStart
            let length = batch[index].length
            var written = -1
            repeat {
                written = write(descriptor, start, length)
            } while written < 0 && Glibc.errno == EINTR
            counters.transmitCalls &+= 1
            if written == length {
                counters.transmittedPackets &+= 1
                counters.transmittedBytes &+= UInt64(written)
            } else {
                // A full queue (EAGAIN) or a packet the kernel refuses (EINVAL): dropped, counted.
                counters.droppedTransmit &+= 1
                let code = Glibc.errno
                if written < 0, code == EBADFD || code == EIO, failure == nil {
                    failure = SystemCallError(.tun, operation: "write to \(deviceName)", errno: code,
                                              hint: "the device went away (deleted, or its queue detached)")
                }
            }
        }
        batch.releaseAll()
        if let failure { throw failure }
    }

    public mutating func reclaim() -> Int { 0 }
}
