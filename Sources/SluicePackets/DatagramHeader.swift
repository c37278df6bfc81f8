#if canImport(Glibc)
import Glibc
#endif

/// The addresses of a datagram that came through a kernel socket, kept at the start of its frame:
/// the defined layout of a `FrameFormat.datagram` frame.
///
/// Socket ports receive straight into frames: `recvmmsg` writes the peer's `sockaddr` at the
/// frame's start and the payload at the packet's offset; the port then records where the
/// datagram was sent to (from `IP_PKTINFO`/`IPV6_PKTINFO`). To send, the port reads the same
/// place, so a reply that leaves the header alone goes back to the peer from the address it
/// came to, with no copy.
///
/// Layout (bytes from the frame start):
/// - 0..<28: the peer, a `sockaddr_in` or `sockaddr_in6`;
/// - 32..<48: the local address, IPv6 or IPv4-mapped; 48..<52: its interface index; 52..<54: the local port;
/// - 64..<192: scratch for the kernel's control messages.
///
/// Packet data therefore starts at ``minimumHeadroom`` or later.
public struct DatagramHeader {
    /// The frame start.
    public let base: UnsafeMutableRawPointer

    @usableFromInline enum Field {
        @usableFromInline static let peer = 0
        @usableFromInline static let peerLength = 28
        @usableFromInline static let local = 32
        @usableFromInline static let interfaceIndex = 48
        @usableFromInline static let localPort = 52
        @usableFromInline static let routeEnd = 54
        @usableFromInline static let control = 64
        @usableFromInline static let controlLength = 128
    }

    /// Headroom a datagram frame needs in front of its payload.
    public static let minimumHeadroom = 192

    /// The frame size a datagram pool needs for payloads of up to `payload` bytes behind
    /// ``minimumHeadroom``: whole pages and one cache line more.
    ///
    /// The extra line staggers the frames: at a whole number of pages apart, every frame's header
    /// and first payload bytes would sit at the same page offset, in the same few L1 cache sets,
    /// and a batch of them would evict one another between the kernel's copy and the reply.
    public static func frameSize(forPayload payload: Int) -> Int {
        (minimumHeadroom + max(payload, 1) + 4095) / 4096 * 4096 + 64
    }
    /// Where the peer's `sockaddr` goes; hand this to `msg_name`.
    public static let peerOffset = Field.peer
    /// Room for the peer's `sockaddr` (a `sockaddr_in6`).
    public static let peerCapacity = Field.peerLength
    /// Where control messages go; hand this to `msg_control`.
    public static let controlOffset = Field.control
    /// Room for control messages.
    public static let controlCapacity = Field.controlLength

    /// Views the header at the start of a frame.
    @inlinable
    public init(frameStart: UnsafeMutableRawPointer) { base = frameStart }

    /// The peer: who sent the datagram, or whom it goes to.
    @inlinable
    public var peer: IPEndpoint {
        get {
            let family = base.loadUnaligned(as: sa_family_t.self)
            let port = UInt16(bigEndian: base.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            if family == sa_family_t(AF_INET) {
                return IPEndpoint(address: .v4(IPv4Address(networkBytesAt: base + 4)), port: port)
            }
            return IPEndpoint(address: IPAddress.v6(IPv6Address(networkBytesAt: base + 8)).unmapped, port: port)
        }
        nonmutating set { Self.store(newValue, sockaddrAt: base, mapIPv4: peerIsIPv6) }
    }

    /// Whether the peer `sockaddr` is `AF_INET6` (the socket is IPv6 or dual-stack).
    @inlinable
    public var peerIsIPv6: Bool { base.loadUnaligned(as: sa_family_t.self) == sa_family_t(AF_INET6) }

    /// The length of the peer `sockaddr`, for `msg_namelen`.
    @inlinable
    public var peerLength: Int { peerIsIPv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size }

    /// The local endpoint the datagram was sent to, or that a reply leaves from.
    @inlinable
    public var local: IPEndpoint {
        get {
            IPEndpoint(
                address: IPAddress.v6(IPv6Address(networkBytesAt: base + Field.local)).unmapped,
                port: base.loadUnaligned(fromByteOffset: Field.localPort, as: UInt16.self))
        }
        nonmutating set {
            switch newValue.address {
            case .v4(let a): IPv6Address(mapping: a).store(networkBytesAt: base + Field.local)
            case .v6(let a): a.store(networkBytesAt: base + Field.local)
            }
            base.storeBytes(of: newValue.port, toByteOffset: Field.localPort, as: UInt16.self)
        }
    }

    /// The interface the datagram arrived on (0 when unknown): replies leave through it.
    @inlinable
    public var interfaceIndex: UInt32 {
        get { base.loadUnaligned(fromByteOffset: Field.interfaceIndex, as: UInt32.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: Field.interfaceIndex, as: UInt32.self) }
    }

    /// Whether this datagram and `other`'s share a route (same peer, same local address,
    /// interface and port), so they can go out in one GSO send.
    @inlinable
    public func hasSameRoute(as other: DatagramHeader) -> Bool {
        memcmp(base + Field.peer, other.base + Field.peer, Field.peerLength) == 0
            && memcmp(base + Field.local, other.base + Field.local, Field.routeEnd - Field.local) == 0
    }

    /// Writes `endpoint` as a `sockaddr_in6` (IPv4 as a mapped address when `mapIPv4`) or `sockaddr_in`.
    @inlinable
    public static func store(_ endpoint: IPEndpoint, sockaddrAt p: UnsafeMutableRawPointer, mapIPv4: Bool) {
        p.initializeMemory(as: UInt8.self, repeating: 0, count: Field.peerLength)
        switch endpoint.address {
        case .v4(let a) where !mapIPv4:
            p.storeBytes(of: sa_family_t(AF_INET), as: sa_family_t.self)
            a.store(networkBytesAt: p + 4)
        case .v4(let a):
            p.storeBytes(of: sa_family_t(AF_INET6), as: sa_family_t.self)
            IPv6Address(mapping: a).store(networkBytesAt: p + 8)
        case .v6(let a):
            p.storeBytes(of: sa_family_t(AF_INET6), as: sa_family_t.self)
            a.store(networkBytesAt: p + 8)
        }
        p.storeBytes(of: endpoint.port.bigEndian, toByteOffset: 2, as: UInt16.self)
    }
}
