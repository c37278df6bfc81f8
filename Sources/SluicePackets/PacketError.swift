/// Why a frame was not accepted by a parser.
///
/// Callers count drops by case, so each malformation has its own case; ``notUDP`` and
/// ``fragment`` are the two well-formed inputs that a UDP stage simply does not handle.
/// Raw values run from 0 in declaration order, so they index counter arrays directly.
public enum PacketError: UInt8, Error, Equatable, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Fewer than 14 bytes for the Ethernet header.
    case truncatedEthernet
    /// An 802.1Q tag is announced but the frame ends before the inner EtherType.
    case truncatedVLAN
    /// Fewer bytes than the ARP packet needs.
    case truncatedARP
    /// Fewer than 20 bytes for the IPv4 header.
    case truncatedIPv4
    /// The version nibble is not the one the EtherType (or the TUN packet) calls for.
    case badIPVersion
    /// The IPv4 IHL field is below 5.
    case badIPv4HeaderLength
    /// The IPv4 header with its options runs past the end of the buffer.
    case ipv4HeaderPastBuffer
    /// The IPv4 total length runs past the end of the buffer.
    case ipv4TotalLengthPastBuffer
    /// The IPv4 total length is shorter than the header itself.
    case ipv4TotalLengthTooSmall
    /// Fewer than 40 bytes for the IPv6 header.
    case truncatedIPv6
    /// 40 plus the IPv6 payload length runs past the end of the buffer.
    case ipv6PayloadLengthPastBuffer
    /// More IPv6 extension headers than the walk allows.
    case ipv6ExtensionHeaderLimit
    /// An IPv6 extension header runs past the payload length.
    case truncatedIPv6ExtensionHeader
    /// Fewer than 8 bytes for the UDP header.
    case truncatedUDP
    /// The UDP length is below 8 or beyond the IP payload.
    case udpLengthMismatch
    /// Well formed, but not UDP: ARP, TCP, ICMP, or another EtherType.
    case notUDP
    /// Well formed, but an IPv4 fragment or an IPv6 packet with a fragment header; not reassembled.
    case fragment

    /// A short name for counters and logs, e.g. `"ipv4-total-length-past-buffer"`.
    public var name: String {
        switch self {
        case .truncatedEthernet: "truncated-ethernet"
        case .truncatedVLAN: "truncated-vlan"
        case .truncatedARP: "truncated-arp"
        case .truncatedIPv4: "truncated-ipv4"
        case .badIPVersion: "bad-ip-version"
        case .badIPv4HeaderLength: "bad-ipv4-header-length"
        case .ipv4HeaderPastBuffer: "ipv4-header-past-buffer"
        case .ipv4TotalLengthPastBuffer: "ipv4-total-length-past-buffer"
        case .ipv4TotalLengthTooSmall: "ipv4-total-length-too-small"
        case .truncatedIPv6: "truncated-ipv6"
        case .ipv6PayloadLengthPastBuffer: "ipv6-payload-length-past-buffer"
        case .ipv6ExtensionHeaderLimit: "ipv6-extension-header-limit"
        case .truncatedIPv6ExtensionHeader: "truncated-ipv6-extension-header"
        case .truncatedUDP: "truncated-udp"
        case .udpLengthMismatch: "udp-length-mismatch"
        case .notUDP: "not-udp"
        case .fragment: "fragment"
        }
    }

    /// True when the input was broken; false for ``notUDP`` and ``fragment``, which are
    /// valid packets that a UDP stage passes on or drops without blaming the sender.
    public var isMalformed: Bool {
        switch self {
        case .notUDP, .fragment: false
        default: true
        }
    }

    /// The same text as ``name``.
    public var description: String { name }
}

/// EtherType values this module knows (IEEE 802 numbers, host order).
public enum EtherType {
    /// IPv4.
    public static let ipv4: UInt16 = 0x0800
    /// ARP.
    public static let arp: UInt16 = 0x0806
    /// IPv6.
    public static let ipv6: UInt16 = 0x86DD
    /// An IEEE 802.1Q VLAN tag follows.
    public static let vlan: UInt16 = 0x8100
    /// An IEEE 802.1ad (service) VLAN tag follows.
    public static let serviceVLAN: UInt16 = 0x88A8
}

/// IP protocol / IPv6 next-header numbers (IANA "Assigned Internet Protocol Numbers").
public enum IPProtocol {
    /// IPv6 hop-by-hop options extension header.
    public static let hopByHop: UInt8 = 0
    /// ICMP for IPv4.
    public static let icmp: UInt8 = 1
    /// TCP.
    public static let tcp: UInt8 = 6
    /// UDP.
    public static let udp: UInt8 = 17
    /// IPv6 routing extension header.
    public static let routing: UInt8 = 43
    /// IPv6 fragment extension header.
    public static let fragment: UInt8 = 44
    /// Encapsulating Security Payload; opaque, so it ends an extension-header walk.
    public static let esp: UInt8 = 50
    /// Authentication Header.
    public static let authentication: UInt8 = 51
    /// ICMP for IPv6.
    public static let icmpv6: UInt8 = 58
    /// Nothing follows this IPv6 header.
    public static let noNextHeader: UInt8 = 59
    /// IPv6 destination options extension header.
    public static let destinationOptions: UInt8 = 60
}
