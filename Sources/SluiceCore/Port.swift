/// What a port's packets hold, so a stage knows how to read them.
public enum FrameFormat: Sendable, Equatable, CustomStringConvertible {
    /// Whole Ethernet frames (AF_XDP, TAP).
    case ethernet
    /// Bare IPv4 or IPv6 packets (TUN).
    case ip
    /// UDP payloads from a kernel socket, with the addresses in a `DatagramHeader` at the frame's start.
    case datagram

    public var description: String {
        switch self {
        case .ethernet: "ethernet"
        case .ip: "ip"
        case .datagram: "datagram"
        }
    }
}

/// A source and sink of packet batches: an AF_XDP socket, a TUN/TAP queue, an io_uring or a
/// kernel socket. One port serves one worker thread.
///
/// Workers are generic over their port, so the calls below are direct, not dynamic.
public protocol Port: ~Copyable {
    /// What the packets this port delivers hold.
    var format: FrameFormat { get }

    /// Fills `batch` with up to its remaining capacity of received packets, waiting at most
    /// the port's configured receive timeout for the first one.
    ///
    /// - Returns: how many packets were added (0 on timeout).
    mutating func receive(into batch: inout PacketBatch) throws(SystemCallError) -> Int

    /// Sends every packet in `batch`; the batch is empty afterwards. Each frame moves to the
    /// kernel or a transmit ring, or back to the pool once sent or dropped (then counted).
    mutating func transmit(_ batch: inout PacketBatch) throws(SystemCallError)

    /// Returns frames the kernel has finished with (a completion ring) to the pool.
    ///
    /// - Returns: how many frames came back.
    mutating func reclaim() -> Int

    /// Frames the port holds now: in fill, receive, transmit or completion rings, or in flight.
    var framesHeld: Int { get }

    /// What the port has done so far.
    var counters: PortCounters { get }

    /// Sends what is queued and waits at most `timeout` for the transmits in flight to complete,
    /// so that ``counters`` hold every packet handed to ``transmit(_:)``. A stopping worker calls it last.
    mutating func finishTransmits(timeout: Duration)
}

extension Port where Self: ~Copyable {
    /// Nothing to wait for: a port whose transmits count when the kernel or a ring takes them.
    public mutating func finishTransmits(timeout: Duration) {}
}

#if canImport(Glibc)
import Glibc
#endif

/// A port's running totals. Updated per batch by the worker that owns the port.
public struct PortCounters: Equatable, Sendable {
    /// Packets received.
    public var receivedPackets: UInt64 = 0
    /// Payload bytes received.
    public var receivedBytes: UInt64 = 0
    /// Packets sent.
    public var transmittedPackets: UInt64 = 0
    /// Payload bytes sent.
    public var transmittedBytes: UInt64 = 0
    /// Receive calls into the kernel (syscalls or ring wakeups).
    public var receiveCalls: UInt64 = 0
    /// Transmit calls into the kernel.
    public var transmitCalls: UInt64 = 0
    /// Packets not received for want of a free frame.
    public var droppedNoFrame: UInt64 = 0
    /// Packets cut short because the frame was too small (counted and dropped).
    public var droppedTruncated: UInt64 = 0
    /// Packets the kernel refused to send.
    public var droppedTransmit: UInt64 = 0
    /// Packets the port refused for a bad length or offload header (a TUN device's virtio-net header).
    public var droppedMalformed: UInt64 = 0
    /// Datagrams the kernel dropped at the port's socket before it could take them: its
    /// receive buffer was full (`SK_MEMINFO_DROPS`). 0 for ports without a kernel socket.
    public var droppedSocketBuffer: UInt64 = 0
    /// Times receiving stalled because the kernel found no buffer to fill (an io_uring buffer
    /// ring ran dry): datagrams wait in the socket buffer meanwhile, they are not lost.
    public var receiveBufferStalls: UInt64 = 0
    /// Packets received in coalesced buffers (GRO, a device's super-packets) and split by the port.
    public var coalescedSegments: UInt64 = 0
    /// Packets sent in segmented sends (GSO, a device's super-packets).
    public var segmentedPackets: UInt64 = 0

    /// Zero counts.
    public init() {}

    /// Adds another port's counts to these.
    public mutating func add(_ other: PortCounters) {
        receivedPackets += other.receivedPackets
        receivedBytes += other.receivedBytes
        transmittedPackets += other.transmittedPackets
        transmittedBytes += other.transmittedBytes
        receiveCalls += other.receiveCalls
        transmitCalls += other.transmitCalls
        droppedNoFrame += other.droppedNoFrame
        droppedTruncated += other.droppedTruncated
        droppedTransmit += other.droppedTransmit
        droppedMalformed += other.droppedMalformed
        droppedSocketBuffer += other.droppedSocketBuffer
        receiveBufferStalls += other.receiveBufferStalls
        coalescedSegments += other.coalescedSegments
        segmentedPackets += other.segmentedPackets
    }

    /// Every packet the port dropped, whatever the cause (the socket's full buffer included).
    public var dropped: UInt64 {
        droppedNoFrame &+ droppedTruncated &+ droppedTransmit &+ droppedMalformed &+ droppedSocketBuffer
    }

    /// The counts as name–value pairs, for summaries and JSON.
    public var fields: [(String, UInt64)] {
        [("rx_packets", receivedPackets), ("rx_bytes", receivedBytes), ("tx_packets", transmittedPackets),
         ("tx_bytes", transmittedBytes), ("rx_calls", receiveCalls), ("tx_calls", transmitCalls),
         ("drop_no_frame", droppedNoFrame), ("drop_truncated", droppedTruncated), ("drop_tx", droppedTransmit), ("drop_malformed", droppedMalformed),
         ("drop_socket_buffer", droppedSocketBuffer),
         ("rx_buffer_stalls", receiveBufferStalls),
         ("gro_segments", coalescedSegments), ("gso_segments", segmentedPackets)]
    }
}
