import SluicePackets
@_exported import SluiceTestSupport

/// The seeded generator the random cases use.
typealias SeededGenerator = TestBytes

/// The textbook RFC 1071 sum: big-endian 16-bit words, a lone last byte as the high half,
/// carries folded at the end. Written independently of the module on purpose.
func referenceFold(_ bytes: some Collection<UInt8>, initial: UInt32 = 0) -> UInt16 {
    var sum = initial
    var iterator = bytes.makeIterator()
    while let high = iterator.next() {
        let low = iterator.next() ?? 0
        sum += UInt32(high) << 8 | UInt32(low)
    }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return UInt16(sum)
}

/// The inverted reference sum.
func referenceChecksum(_ bytes: some Collection<UInt8>, initial: UInt32 = 0) -> UInt16 {
    ~referenceFold(bytes, initial: initial)
}

/// Reads a big-endian 16-bit value out of a byte array.
func be16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
}

/// Writes a big-endian 16-bit value into a byte array.
func put16(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt16) {
    bytes[offset] = UInt8(value >> 8)
    bytes[offset + 1] = UInt8(value & 0xFF)
}

/// The reference UDP checksum over IPv4, from a pseudo-header laid out byte by byte.
func referenceUDPChecksum(source: [UInt8], destination: [UInt8], datagram: [UInt8]) -> UInt16 {
    var pseudo = source + destination
    if source.count == 4 {
        pseudo += [0, 17, UInt8(datagram.count >> 8), UInt8(datagram.count & 0xFF)]
    } else {
        let n = datagram.count
        pseudo += [UInt8(n >> 24 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), 0, 0, 0, 17]
    }
    var zeroed = datagram
    zeroed[6] = 0
    zeroed[7] = 0
    let c = referenceChecksum(pseudo + zeroed)
    return c == 0 ? 0xFFFF : c
}

/// Runs `body` over a mutable copy of `bytes`.
@discardableResult
func withBuffer<R>(_ bytes: [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
    var copy = bytes
    return try copy.withUnsafeMutableBytes(body)
}

/// `UDPFrame.parse` over a copy of `bytes`, as a comparable result.
func parse(_ bytes: [UInt8], _ linkLayer: LinkLayer = .ethernet) -> Result<UDPFrameLayout, PacketError> {
    withBuffer(bytes) { buffer in
        Result { () throws(PacketError) in try UDPFrame.parse(buffer, linkLayer: linkLayer) }
    }
}

/// Real frames, hand-checked; their checksums are recomputed by the reference in the tests.
enum Frames {
    /// A DNS A query for example.com from 192.168.1.10:53124 to 8.8.8.8:53, Ethernet II,
    /// IPv4 id 0x1c46, DF, TTL 64. IP checksum 0x4cac, UDP checksum 0xe2ec. 29-byte payload.
    static let dnsOverIPv4: [UInt8] = [
        0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
        0x00, 0x39, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x4c, 0xac, 0xc0, 0xa8, 0x01, 0x0a, 0x08, 0x08,
        0x08, 0x08, 0xcf, 0x84, 0x00, 0x35, 0x00, 0x25, 0xe2, 0xec, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63,
        0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ]

    /// A DNS AAAA query for example.com from [2001:db8::1234]:40000 to [2001:4860:4860::8888]:53,
    /// flow label 0x5a1f3, hop limit 64. UDP checksum 0xed55.
    static let dnsOverIPv6: [UInt8] = [
        0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60, 0x05,
        0xa1, 0xf3, 0x00, 0x25, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x20, 0x01, 0x48, 0x60, 0x48, 0x60, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x88, 0x88, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x25, 0xed, 0x55, 0x12, 0x34,
        0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70,
        0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x1c, 0x00, 0x01,
    ]

    /// An NTPv4 client request 10.0.100.5:123 -> 10.0.100.1:123 on VLAN 100 with priority 1
    /// (TCI 0x2064). IP checksum 0x5e9b, UDP checksum 0x72a7. 48-byte payload.
    static let ntpOverVLAN: [UInt8] = [
        0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x81, 0x00, 0x20, 0x64,
        0x08, 0x00, 0x45, 0x00, 0x00, 0x4c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x5e, 0x9b, 0x0a, 0x00,
        0x64, 0x05, 0x0a, 0x00, 0x64, 0x01, 0x00, 0x7b, 0x00, 0x7b, 0x00, 0x38, 0x72, 0xa7, 0x23, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe8, 0xf0, 0xc2, 0xa1, 0x3d, 0x70, 0xa3, 0xd7,
    ]

    /// ARP "who has 192.168.1.1? tell 192.168.1.10", broadcast from 52:54:00:12:34:56.
    static let arpRequest: [UInt8] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00, 0x01,
        0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x01, 0x0a,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01,
    ]

    /// The payloads, for building the frames again.
    static var dnsOverIPv4Payload: [UInt8] { Array(dnsOverIPv4[42...]) }
    static var dnsOverIPv6Payload: [UInt8] { Array(dnsOverIPv6[62...]) }
    static var ntpPayload: [UInt8] { Array(ntpOverVLAN[46...]) }

    /// An Ethernet + IPv6 frame whose payload is `extensions` (each a next-header value and its
    /// raw bytes, the next-header byte filled in here) followed by a UDP datagram with
    /// `udpPayload`. The UDP checksum is left 0: the walk does not look at it.
    static func ipv6(extensions: [(type: UInt8, bytes: [UInt8])], udpPayload: [UInt8] = [1, 2, 3, 4]) -> [UInt8] {
        var chain: [UInt8] = []
        for (i, ext) in extensions.enumerated() {
            var bytes = ext.bytes
            bytes[0] = i + 1 < extensions.count ? extensions[i + 1].type : 17
            chain += bytes
        }
        let udpLength = 8 + udpPayload.count
        let udp: [UInt8] = [0x9c, 0x40, 0x00, 0x35, UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0] + udpPayload
        let payloadLength = chain.count + udp.count
        var frame = Array(dnsOverIPv6[0..<54])
        put16(&frame, 18, UInt16(payloadLength))
        frame[20] = extensions.first?.type ?? 17
        return frame + chain + udp
    }

    /// An 8-byte options header (hop-by-hop or destination options) holding one PadN option.
    static let paddingOptions: [UInt8] = [0, 0, 1, 4, 0, 0, 0, 0]
}
