import SluiceCore
import SluicePackets

/// One received UDP datagram as a service sees it: who sent it, where to, and its payload,
/// in place in the frame.
///
/// To answer, rewrite ``payload`` (up to ``payloadCapacity`` bytes, set with
/// ``payloadLength``) and return ``UDPAction/reply``: the stage turns the same frame around.
/// A service that only reads uses ``readablePayload``: a payload the service never took for
/// writing lets the stage keep the datagram's verified checksum instead of summing it again.
public struct UDPDatagram {
    /// The sender.
    public var source: IPEndpoint {
        didSet { endpointsSet = true }
    }
    /// The local endpoint it was sent to; a reply leaves from here.
    public var destination: IPEndpoint {
        didSet { endpointsSet = true }
    }
    @usableFromInline let start: UnsafeMutableRawPointer
    @usableFromInline var payloadTakenForWriting = false
    /// Whether the service assigned either endpoint: if not, a reply swaps the received ones.
    @usableFromInline var endpointsSet = false
    /// The payload's length; set it to the reply's length before returning ``UDPAction/reply``.
    /// A length past ``payloadCapacity`` is a programming error: it traps.
    public var payloadLength: Int {
        didSet { precondition(payloadLength >= 0 && payloadLength <= payloadCapacity, "UDP payload past its frame") }
    }
    /// The most payload bytes a reply in this frame can have.
    public let payloadCapacity: Int

    /// Creates a view (stages do this; services receive it).
    @inlinable
    public init(source: IPEndpoint, destination: IPEndpoint, payloadStart: UnsafeMutableRawPointer,
                payloadLength: Int, payloadCapacity: Int) {
        self.source = source
        self.destination = destination
        self.start = payloadStart
        self.payloadLength = payloadLength
        self.payloadCapacity = payloadCapacity
    }

    /// The first payload byte, for writing: taking it marks the payload as possibly changed.
    @inlinable
    public var payloadStart: UnsafeMutableRawPointer {
        mutating get {
            payloadTakenForWriting = true
            return start
        }
    }

    /// The payload bytes, in place, for writing: taking them marks the payload as possibly changed.
    @inlinable
    public var payload: UnsafeMutableRawBufferPointer {
        mutating get {
            payloadTakenForWriting = true
            return UnsafeMutableRawBufferPointer(start: start, count: payloadLength)
        }
    }

    /// Whether the service took the payload for writing (``payload`` or ``payloadStart``), so
    /// its bytes may differ from those received.
    @inlinable
    public var payloadMayHaveChanged: Bool { payloadTakenForWriting }

    /// The payload bytes, in place, for reading only.
    @inlinable
    public var readablePayload: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: start, count: payloadLength)
    }
}

/// What a service does with a datagram.
public enum UDPAction: Equatable, Sendable {
    /// Send the (possibly rewritten) payload back to its source, from the address it came to.
    case reply
    /// Send the (possibly rewritten) payload to another endpoint, from the address it came to.
    /// On an Ethernet port the frame goes to the same next hop it came from.
    case send(to: IPEndpoint)
    /// Refuse it (malformed, or not the service's): counted as a drop; its frame returns to the pool.
    case drop
    /// Take it without a reply, as it asks (a measurement message, a sink's datagram): counted
    /// as consumed, not as a drop; its frame returns to the pool.
    case consume
}

/// A UDP service: written once, run over every backend (AF_XDP, TUN/TAP, io_uring, sockets).
///
/// The stage calls ``handle(_:now:)`` for each datagram of a batch in turn, then
/// ``flush(into:now:)`` once, where the service can send datagrams of its own. Both run on
/// the worker's thread in its hot loop: no allocation, no locks, no blocking. Each worker makes
/// its own instance on its own thread, so a service's type (not its values) crosses threads.
public protocol UDPService: SendableMetatype {
    /// Handles one datagram and says what to do with it.
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction

    /// Sends datagrams that answer no particular packet (after each batch and on timeouts).
    mutating func flush(into emitter: inout UDPEmitter, now: Instant)

    /// The service's own counts (queries by response code, say), for the server's summary.
    var counterFields: [(String, UInt64)] { get }

    /// When the service next wants ``flush(into:now:)`` without traffic; `nil` for never.
    func pollTimeout() -> Instant?
}

extension UDPService {
    /// Services that only answer have nothing to flush.
    @inlinable
    public mutating func flush(into emitter: inout UDPEmitter, now: Instant) {}

    /// Services count nothing of their own unless they say so.
    public var counterFields: [(String, UInt64)] { [] }

    /// Services that only answer never need waking.
    @inlinable
    public func pollTimeout() -> Instant? { nil }
}

/// The echo service: every datagram goes back unchanged to whoever sent it.
public struct UDPEchoService: UDPService {
    /// Creates the service.
    public init() {}

    @inlinable
    public mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction { .reply }
}

/// A responder that speaks sockperf's UDP protocol, so `sockperf ping-pong`, `throughput` and
/// `under-load` can measure a Sluice backend exactly as they measure `sockperf server`.
///
/// sockperf messages start with a 14-byte header: a sequence number (8 bytes), flags (2),
/// length (4, the whole message), in network order. Like sockperf's server, this answers only
/// messages that carry the client flag and ask for a reply (pong request), clears the client flag
/// in the reply, takes warm-up messages and those that ask for no reply (throughput) without
/// one, and drops the rest: short, not a client's, or not the length they say.
public struct SockperfService: UDPService {
    @usableFromInline static let flagsOffset = 8
    @usableFromInline static let lengthOffset = 10
    @usableFromInline static let headerLength = 14
    @usableFromInline static let client: UInt16 = 1
    @usableFromInline static let pongRequest: UInt16 = 2
    @usableFromInline static let warmup: UInt16 = 4

    /// Creates the responder.
    public init() {}

    @inlinable
    public mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        guard datagram.payloadLength >= Self.headerLength else { return .drop }
        let header = datagram.readablePayload
        let flags = UInt16(bigEndian: header.loadUnaligned(fromByteOffset: Self.flagsOffset, as: UInt16.self))
        let length = UInt32(bigEndian: header.loadUnaligned(fromByteOffset: Self.lengthOffset, as: UInt32.self))
        guard flags & Self.client != 0, length == datagram.payloadLength else { return .drop }
        guard flags & Self.warmup == 0, flags & Self.pongRequest != 0 else { return .consume }
        datagram.payloadStart.storeBytes(of: (flags & ~Self.client).bigEndian, toByteOffset: Self.flagsOffset, as: UInt16.self)
        return .reply
    }
}

/// A sink: every datagram is counted and consumed. For receive-only measurements (rxdrop).
public struct UDPDiscardService: UDPService {
    /// Creates the sink.
    public init() {}

    @inlinable
    public mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction { .consume }
}
