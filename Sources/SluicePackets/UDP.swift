/// A view over a UDP datagram (RFC 768): the payload of an IPv4 or IPv6 packet.
///
/// The initializer checks the length field against the IP payload once; the accessors then
/// work in place without further checks.
public struct UDPHeader {
    /// Byte offsets of the header fields.
    @usableFromInline
    enum Field {
        @usableFromInline static let sourcePort = 0
        @usableFromInline static let destinationPort = 2
        @usableFromInline static let length = 4
        @usableFromInline static let checksum = 6
        @usableFromInline static let headerLength = 8
    }

    /// The length of the header.
    public static let headerLength = Field.headerLength

    /// The start of the header.
    public let base: UnsafeMutableRawPointer
    /// The number of bytes available from `base` (the IP payload); at least ``length``.
    public let count: Int

    /// Wraps the IP payload. Throws ``PacketError/truncatedUDP`` below 8 bytes and
    /// ``PacketError/udpLengthMismatch`` when the length field is below 8 or beyond the buffer.
    /// A length shorter than the buffer is accepted and the rest ignored, as Linux trims it.
    @inlinable @inline(__always)
    public init(_ buffer: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard let base = buffer.baseAddress, buffer.count >= Field.headerLength else { throw .truncatedUDP }
        let length = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: Field.length, as: UInt16.self)))
        guard length >= Field.headerLength, length <= buffer.count else { throw .udpLengthMismatch }
        self.base = base
        self.count = buffer.count
    }

    /// Wraps a datagram whose bounds the caller has just written itself.
    @inlinable
    init(unchecked base: UnsafeMutableRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    /// The source port.
    @inlinable
    public var sourcePort: UInt16 {
        get { load(Field.sourcePort) }
        nonmutating set { store(newValue, Field.sourcePort) }
    }

    /// The destination port.
    @inlinable
    public var destinationPort: UInt16 {
        get { load(Field.destinationPort) }
        nonmutating set { store(newValue, Field.destinationPort) }
    }

    /// The datagram length, header included.
    @inlinable
    public var length: UInt16 {
        get { load(Field.length) }
        nonmutating set { store(newValue, Field.length) }
    }

    /// The checksum as stored; 0 means none was computed (allowed over IPv4 only).
    @inlinable
    public var checksum: UInt16 {
        get { load(Field.checksum) }
        nonmutating set { store(newValue, Field.checksum) }
    }

    /// The ``length`` − 8 bytes after the header; clamped to the buffer in case `length`
    /// was rewritten larger.
    @inlinable
    public var payload: UnsafeMutableRawBufferPointer {
        let end = max(min(Int(length), count), Field.headerLength)
        return UnsafeMutableRawBufferPointer(start: base + Field.headerLength, count: end - Field.headerLength)
    }

    /// Exchanges the ports, as a reply needs.
    @inlinable
    public func swapPorts() {
        let s = sourcePort
        sourcePort = destinationPort
        destinationPort = s
    }

    /// The checksum the datagram should carry over IPv4, ignoring the one stored.
    /// A computed 0 is returned as 0xFFFF, since 0 on the wire means "no checksum".
    @inlinable
    public func computeChecksum(source: IPv4Address, destination: IPv4Address) -> UInt16 {
        finish(InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, protocol: IPProtocol.udp, length: datagramLength))
    }

    /// The checksum the datagram should carry over IPv6, ignoring the one stored.
    /// A computed 0 is returned as 0xFFFF.
    @inlinable
    public func computeChecksum(source: IPv6Address, destination: IPv6Address) -> UInt16 {
        finish(InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, nextHeader: IPProtocol.udp, length: datagramLength))
    }

    /// True when the stored checksum is right, or is 0 (no checksum, allowed over IPv4).
    @inlinable @inline(__always)
    public func isChecksumValid(source: IPv4Address, destination: IPv4Address) -> Bool {
        checksum == 0 || verify(InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, protocol: IPProtocol.udp, length: datagramLength))
    }

    /// True when the stored checksum is right; 0 is invalid over IPv6 (RFC 8200 section 8.1).
    @inlinable @inline(__always)
    public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        checksum != 0 && verify(InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, nextHeader: IPProtocol.udp, length: datagramLength))
    }

    /// Stores the folded, not inverted, IPv4 pseudo-header sum in the checksum field, which is
    /// what checksum offload (Linux CHECKSUM_PARTIAL, virtio-net NEEDS_CSUM) expects: the
    /// device or kernel adds the datagram and inverts.
    @inlinable
    public func setPartialChecksum(source: IPv4Address, destination: IPv4Address) {
        checksum = InternetChecksum.fold(InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, protocol: IPProtocol.udp, length: datagramLength))
    }

    /// The IPv6 form of `setPartialChecksum`: the folded, not inverted, pseudo-header sum.
    @inlinable
    public func setPartialChecksum(source: IPv6Address, destination: IPv6Address) {
        checksum = InternetChecksum.fold(InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, nextHeader: IPProtocol.udp, length: datagramLength))
    }

    /// Writes an 8-byte header with checksum 0 at `pointer` and returns 8. `payloadLength` is
    /// the number of bytes that will follow the header.
    @inlinable
    @discardableResult
    public static func emit(
        into pointer: UnsafeMutableRawPointer, sourcePort: UInt16, destinationPort: UInt16, payloadLength: Int
    ) -> Int {
        pointer.storeBytes(of: sourcePort.bigEndian, toByteOffset: Field.sourcePort, as: UInt16.self)
        pointer.storeBytes(of: destinationPort.bigEndian, toByteOffset: Field.destinationPort, as: UInt16.self)
        let length = UInt16(truncatingIfNeeded: Field.headerLength + payloadLength)
        pointer.storeBytes(of: length.bigEndian, toByteOffset: Field.length, as: UInt16.self)
        pointer.storeBytes(of: UInt16(0), toByteOffset: Field.checksum, as: UInt16.self)
        return Field.headerLength
    }

    /// The datagram length as checked: ``length`` clamped to the buffer.
    @inlinable
    var datagramLength: Int { max(min(Int(length), count), Field.headerLength) }

    /// The checksum over the pseudo-header sum and the datagram with its checksum field skipped.
    @inlinable
    func finish(_ pseudoHeader: UInt64) -> UInt16 {
        var sum = InternetChecksum.sum(
            UnsafeRawBufferPointer(start: base, count: Field.checksum), initial: pseudoHeader)
        // The checksum is the last header field, so the rest starts at the payload.
        sum = InternetChecksum.sum(
            UnsafeRawBufferPointer(start: base + Field.headerLength, count: datagramLength - Field.headerLength),
            initial: sum)
        let result = ~InternetChecksum.fold(sum)
        return result == 0 ? 0xFFFF : result
    }

    /// True when the pseudo-header and the whole datagram, stored checksum included, sum to 0xFFFF.
    @inlinable @inline(__always)
    func verify(_ pseudoHeader: UInt64) -> Bool {
        let sum = InternetChecksum.sum(UnsafeRawBufferPointer(start: base, count: datagramLength), initial: pseudoHeader)
        return InternetChecksum.fold(sum) == 0xFFFF
    }

    @inlinable
    func load(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable
    func store(_ value: UInt16, _ offset: Int) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }
}
