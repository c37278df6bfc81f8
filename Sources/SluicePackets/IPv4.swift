/// A view over an IPv4 header (RFC 791) and the packet it starts.
///
/// The initializer checks the version and every length field against the buffer once; the
/// accessors then work in place without further checks.
public struct IPv4Header {
    /// Byte offsets of the header fields.
    @usableFromInline
    enum Field {
        @usableFromInline static let versionAndIHL = 0
        @usableFromInline static let typeOfService = 1
        @usableFromInline static let totalLength = 2
        @usableFromInline static let identification = 4
        @usableFromInline static let flagsAndFragmentOffset = 6
        @usableFromInline static let timeToLive = 8
        @usableFromInline static let `protocol` = 9
        @usableFromInline static let headerChecksum = 10
        @usableFromInline static let source = 12
        @usableFromInline static let destination = 16
        /// The header without options.
        @usableFromInline static let minimumLength = 20
    }

    /// The length of a header without options.
    public static let minimumLength = Field.minimumLength

    /// Bits of the flags-and-fragment-offset word.
    @usableFromInline
    enum Flag {
        @usableFromInline static let dontFragment: UInt16 = 0x4000
        @usableFromInline static let moreFragments: UInt16 = 0x2000
        @usableFromInline static let offsetMask: UInt16 = 0x1FFF
    }

    /// The start of the header.
    public let base: UnsafeMutableRawPointer
    /// The number of bytes available from `base`; at least ``totalLength`` after init.
    public let count: Int

    /// Wraps an IPv4 packet, checking in order: at least 20 bytes (``PacketError/truncatedIPv4``),
    /// version 4 (``PacketError/badIPVersion``), IHL at least 5 (``PacketError/badIPv4HeaderLength``),
    /// header within the buffer (``PacketError/ipv4HeaderPastBuffer``), total length covering the
    /// header (``PacketError/ipv4TotalLengthTooSmall``) and within the buffer
    /// (``PacketError/ipv4TotalLengthPastBuffer``). Bytes past the total length (Ethernet padding)
    /// are allowed and ignored.
    @inlinable @inline(__always)
    public init(_ buffer: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard let base = buffer.baseAddress, buffer.count >= Field.minimumLength else { throw .truncatedIPv4 }
        let versionAndIHL = base.load(fromByteOffset: Field.versionAndIHL, as: UInt8.self)
        guard versionAndIHL >> 4 == 4 else { throw .badIPVersion }
        let headerLength = Int(versionAndIHL & 0x0F) &* 4
        guard headerLength >= Field.minimumLength else { throw .badIPv4HeaderLength }
        guard headerLength <= buffer.count else { throw .ipv4HeaderPastBuffer }
        let totalLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: Field.totalLength, as: UInt16.self)))
        guard totalLength >= headerLength else { throw .ipv4TotalLengthTooSmall }
        guard totalLength <= buffer.count else { throw .ipv4TotalLengthPastBuffer }
        self.base = base
        self.count = buffer.count
    }

    /// The header length in bytes, options included (IHL × 4).
    @inlinable
    public var headerLength: Int {
        Int(base.load(fromByteOffset: Field.versionAndIHL, as: UInt8.self) & 0x0F) &* 4
    }

    /// The length of the whole packet, header included.
    @inlinable
    public var totalLength: UInt16 {
        get { load(Field.totalLength) }
        nonmutating set { store(newValue, Field.totalLength) }
    }

    /// The identification field, shared by the fragments of one datagram.
    @inlinable
    public var identification: UInt16 { load(Field.identification) }

    /// The DF flag.
    @inlinable
    public var dontFragment: Bool { load(Field.flagsAndFragmentOffset) & Flag.dontFragment != 0 }

    /// The MF flag: more fragments follow.
    @inlinable
    public var moreFragments: Bool { load(Field.flagsAndFragmentOffset) & Flag.moreFragments != 0 }

    /// The fragment offset in bytes (the 13-bit field times 8).
    @inlinable
    public var fragmentOffset: Int { Int(load(Field.flagsAndFragmentOffset) & Flag.offsetMask) &* 8 }

    /// True for any fragment: MF set or a nonzero offset.
    @inlinable
    public var isFragment: Bool {
        load(Field.flagsAndFragmentOffset) & (Flag.moreFragments | Flag.offsetMask) != 0
    }

    /// The time to live.
    @inlinable
    public var timeToLive: UInt8 {
        get { base.load(fromByteOffset: Field.timeToLive, as: UInt8.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: Field.timeToLive, as: UInt8.self) }
    }

    /// The payload protocol (``IPProtocol``).
    @inlinable
    public var `protocol`: UInt8 { base.load(fromByteOffset: Field.protocol, as: UInt8.self) }

    /// The header checksum as stored.
    @inlinable
    public var headerChecksum: UInt16 {
        get { load(Field.headerChecksum) }
        nonmutating set { store(newValue, Field.headerChecksum) }
    }

    /// The source address.
    @inlinable
    public var source: IPv4Address {
        get { IPv4Address(networkBytesAt: base + Field.source) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.source) }
    }

    /// The destination address.
    @inlinable
    public var destination: IPv4Address {
        get { IPv4Address(networkBytesAt: base + Field.destination) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.destination) }
    }

    /// The bytes from the end of the header (options skipped) to ``totalLength``.
    ///
    /// Clamped to the buffer, so that rewriting `totalLength` larger than what was checked
    /// cannot expose memory past it.
    @inlinable
    public var payload: UnsafeMutableRawBufferPointer {
        let end = min(Int(totalLength), count)
        let start = min(headerLength, end)
        return UnsafeMutableRawBufferPointer(start: base + start, count: end - start)
    }

    /// True when the header, options included, sums to 0xFFFF.
    @inlinable
    public func isChecksumValid() -> Bool {
        InternetChecksum.checksum(UnsafeRawBufferPointer(start: base, count: headerLength)) == 0
    }

    /// Recomputes ``headerChecksum`` over the whole header, options included.
    @inlinable
    public func updateChecksum() {
        headerChecksum = 0
        headerChecksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: base, count: headerLength))
    }

    /// Exchanges source and destination, as a reply needs; the checksum stays valid because
    /// the sum does not depend on word order.
    @inlinable
    public func swapAddresses() {
        let s = source
        source = destination
        destination = s
    }

    /// Writes a 20-byte header with no options and a valid checksum at `pointer`;
    /// returns 20. `payloadLength` is the number of bytes that will follow the header.
    @inlinable
    @discardableResult
    public static func emit(
        into pointer: UnsafeMutableRawPointer, source: IPv4Address, destination: IPv4Address,
        protocol proto: UInt8, payloadLength: Int, timeToLive: UInt8 = 64,
        identification: UInt16 = 0, dontFragment: Bool = true
    ) -> Int {
        let length = Field.minimumLength
        pointer.storeBytes(of: UInt8(0x40 | length / 4), toByteOffset: Field.versionAndIHL, as: UInt8.self)
        pointer.storeBytes(of: UInt8(0), toByteOffset: Field.typeOfService, as: UInt8.self)
        let totalLength = UInt16(truncatingIfNeeded: length + payloadLength)
        pointer.storeBytes(of: totalLength.bigEndian, toByteOffset: Field.totalLength, as: UInt16.self)
        pointer.storeBytes(of: identification.bigEndian, toByteOffset: Field.identification, as: UInt16.self)
        let flags = dontFragment ? Flag.dontFragment : 0
        pointer.storeBytes(of: flags.bigEndian, toByteOffset: Field.flagsAndFragmentOffset, as: UInt16.self)
        pointer.storeBytes(of: timeToLive, toByteOffset: Field.timeToLive, as: UInt8.self)
        pointer.storeBytes(of: proto, toByteOffset: Field.protocol, as: UInt8.self)
        pointer.storeBytes(of: UInt16(0), toByteOffset: Field.headerChecksum, as: UInt16.self)
        source.store(networkBytesAt: pointer + Field.source)
        destination.store(networkBytesAt: pointer + Field.destination)
        let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: pointer, count: length))
        pointer.storeBytes(of: checksum.bigEndian, toByteOffset: Field.headerChecksum, as: UInt16.self)
        return length
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
