/// A view over an IPv6 header (RFC 8200) and the packet it starts.
///
/// The initializer checks the version and the payload length against the buffer once; the
/// accessors then work in place without further checks.
public struct IPv6Header {
    /// Byte offsets of the header fields.
    @usableFromInline
    enum Field {
        /// Version (4 bits), traffic class (8), flow label (20), as one 32-bit word.
        @usableFromInline static let versionClassFlow = 0
        @usableFromInline static let payloadLength = 4
        @usableFromInline static let nextHeader = 6
        @usableFromInline static let hopLimit = 7
        @usableFromInline static let source = 8
        @usableFromInline static let destination = 24
        @usableFromInline static let length = 40
    }

    /// Byte offsets shared by the extension headers this module walks.
    @usableFromInline
    enum ExtensionField {
        @usableFromInline static let nextHeader = 0
        @usableFromInline static let length = 1
    }

    /// The length of the fixed header.
    public static let length = Field.length

    /// The start of the header.
    public let base: UnsafeMutableRawPointer
    /// The number of bytes available from `base`; at least 40 + ``payloadLength`` after init.
    public let count: Int

    /// Wraps an IPv6 packet. Throws ``PacketError/truncatedIPv6`` below 40 bytes,
    /// ``PacketError/badIPVersion`` unless the version is 6, and
    /// ``PacketError/ipv6PayloadLengthPastBuffer`` when the payload length runs past the buffer.
    /// Bytes past the payload (Ethernet padding) are allowed and ignored.
    @inlinable
    public init(_ buffer: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard let base = buffer.baseAddress, buffer.count >= Field.length else { throw .truncatedIPv6 }
        guard base.load(fromByteOffset: Field.versionClassFlow, as: UInt8.self) >> 4 == 6 else {
            throw .badIPVersion
        }
        let payloadLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: Field.payloadLength, as: UInt16.self)))
        guard Field.length + payloadLength <= buffer.count else { throw .ipv6PayloadLengthPastBuffer }
        self.base = base
        self.count = buffer.count
    }

    /// The traffic class (DSCP and ECN).
    @inlinable
    public var trafficClass: UInt8 { UInt8(truncatingIfNeeded: versionClassFlow >> 20) }

    /// The 20-bit flow label.
    @inlinable
    public var flowLabel: UInt32 { versionClassFlow & 0xF_FFFF }

    /// The length of everything after this 40-byte header, extension headers included.
    @inlinable
    public var payloadLength: UInt16 {
        get { UInt16(bigEndian: base.loadUnaligned(fromByteOffset: Field.payloadLength, as: UInt16.self)) }
        nonmutating set { base.storeBytes(of: newValue.bigEndian, toByteOffset: Field.payloadLength, as: UInt16.self) }
    }

    /// The type of the header after this one (``IPProtocol``).
    @inlinable
    public var nextHeader: UInt8 { base.load(fromByteOffset: Field.nextHeader, as: UInt8.self) }

    /// The hop limit.
    @inlinable
    public var hopLimit: UInt8 {
        get { base.load(fromByteOffset: Field.hopLimit, as: UInt8.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: Field.hopLimit, as: UInt8.self) }
    }

    /// The source address.
    @inlinable
    public var source: IPv6Address {
        get { IPv6Address(networkBytesAt: base + Field.source) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.source) }
    }

    /// The destination address.
    @inlinable
    public var destination: IPv6Address {
        get { IPv6Address(networkBytesAt: base + Field.destination) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.destination) }
    }

    /// The ``payloadLength`` bytes after the fixed header, extension headers included;
    /// clamped to the buffer in case `payloadLength` was rewritten larger.
    @inlinable
    public var payload: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(
            start: base + Field.length, count: min(Int(payloadLength), count - Field.length))
    }

    /// Exchanges source and destination, as a reply needs.
    @inlinable
    public func swapAddresses() {
        let s = source
        source = destination
        destination = s
    }

    /// Walks the extension headers (hop-by-hop, routing and destination options:
    /// (length + 1) × 8 bytes; AH: (length + 2) × 4 bytes), at most `limit` of them.
    ///
    /// Returns the upper-layer protocol and its byte offset from the start of the IPv6
    /// header. ESP and no-next-header end the walk and are returned as the protocol.
    /// Throws ``PacketError/fragment`` at a fragment header (nothing is reassembled),
    /// ``PacketError/ipv6ExtensionHeaderLimit`` at extension header number `limit + 1`, and
    /// ``PacketError/truncatedIPv6ExtensionHeader`` when one runs past ``payloadLength``.
    @inlinable
    public func upperLayer(limit: Int = 8) throws(PacketError) -> (protocol: UInt8, offset: Int) {
        // Clamped like `payload`, so a rewritten payload length cannot lead past the buffer.
        let end = Field.length + min(Int(payloadLength), count - Field.length)
        var next = nextHeader
        var offset = Field.length
        var seen = 0
        while true {
            let unit: Int, extra: Int
            switch next {
            case IPProtocol.hopByHop, IPProtocol.routing, IPProtocol.destinationOptions:
                (unit, extra) = (8, 1)
            case IPProtocol.authentication:
                (unit, extra) = (4, 2)
            case IPProtocol.fragment:
                throw .fragment
            default:
                return (next, offset)
            }
            guard seen < limit else { throw .ipv6ExtensionHeaderLimit }
            seen += 1
            // Every extension header starts with next-header and length bytes.
            guard offset + ExtensionField.length < end else { throw .truncatedIPv6ExtensionHeader }
            let lengthField = base.load(fromByteOffset: offset + ExtensionField.length, as: UInt8.self)
            let length = (Int(lengthField) + extra) * unit
            guard offset + length <= end else { throw .truncatedIPv6ExtensionHeader }
            next = base.load(fromByteOffset: offset + ExtensionField.nextHeader, as: UInt8.self)
            offset += length
        }
    }

    /// Writes a 40-byte header at `pointer` and returns 40. `payloadLength` is the number of
    /// bytes that will follow the header.
    @inlinable
    @discardableResult
    public static func emit(
        into pointer: UnsafeMutableRawPointer, source: IPv6Address, destination: IPv6Address,
        nextHeader: UInt8, payloadLength: Int, hopLimit: UInt8 = 64, trafficClass: UInt8 = 0,
        flowLabel: UInt32 = 0
    ) -> Int {
        let word = 6 << 28 | UInt32(trafficClass) << 20 | flowLabel & 0xF_FFFF
        pointer.storeBytes(of: word.bigEndian, toByteOffset: Field.versionClassFlow, as: UInt32.self)
        let length = UInt16(truncatingIfNeeded: payloadLength)
        pointer.storeBytes(of: length.bigEndian, toByteOffset: Field.payloadLength, as: UInt16.self)
        pointer.storeBytes(of: nextHeader, toByteOffset: Field.nextHeader, as: UInt8.self)
        pointer.storeBytes(of: hopLimit, toByteOffset: Field.hopLimit, as: UInt8.self)
        source.store(networkBytesAt: pointer + Field.source)
        destination.store(networkBytesAt: pointer + Field.destination)
        return Field.length
    }

    @inlinable
    var versionClassFlow: UInt32 {
        UInt32(bigEndian: base.loadUnaligned(fromByteOffset: Field.versionClassFlow, as: UInt32.self))
    }
}
