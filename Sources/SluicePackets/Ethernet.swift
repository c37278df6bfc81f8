/// A view over an Ethernet II frame, with at most one IEEE 802.1Q tag.
///
/// The initializer checks the length once; the accessors then read and write the frame in
/// place without further checks.
public struct EthernetHeader {
    /// Byte offsets of the header fields.
    @usableFromInline
    enum Field {
        @usableFromInline static let destination = 0
        @usableFromInline static let source = 6
        @usableFromInline static let etherType = 12
        /// With a tag: the tag control information, then the inner EtherType.
        @usableFromInline static let tagControl = 14
        @usableFromInline static let innerEtherType = 16
        @usableFromInline static let untaggedLength = 14
        @usableFromInline static let taggedLength = 18
    }

    /// The length of a header without a VLAN tag.
    public static let untaggedLength = Field.untaggedLength

    /// The start of the frame.
    public let base: UnsafeMutableRawPointer
    /// The number of bytes in the frame.
    public let count: Int
    /// Whether an 802.1Q tag was present at initialization; fixed so that a later write to
    /// the EtherType cannot move the header end past what was checked.
    @usableFromInline
    let isTagged: Bool

    /// Wraps a frame. Throws ``PacketError/truncatedEthernet`` below 14 bytes and
    /// ``PacketError/truncatedVLAN`` when a tag is announced but the frame is below 18 bytes.
    @inlinable @inline(__always)
    public init(_ buffer: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard let base = buffer.baseAddress, buffer.count >= Field.untaggedLength else {
            throw .truncatedEthernet
        }
        let outer = UInt16(bigEndian: base.loadUnaligned(fromByteOffset: Field.etherType, as: UInt16.self))
        let isTagged = outer == EtherType.vlan || outer == EtherType.serviceVLAN
        if isTagged, buffer.count < Field.taggedLength { throw .truncatedVLAN }
        self.base = base
        self.count = buffer.count
        self.isTagged = isTagged
    }

    /// The destination MAC address.
    @inlinable
    public var destination: MACAddress {
        get { MACAddress(networkBytesAt: base + Field.destination) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.destination) }
    }

    /// The source MAC address.
    @inlinable
    public var source: MACAddress {
        get { MACAddress(networkBytesAt: base + Field.source) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.source) }
    }

    /// The tag control information (priority, DEI, VLAN ID) when an 802.1Q or 802.1ad tag is present.
    @inlinable
    public var vlanTag: UInt16? {
        guard isTagged else { return nil }
        return UInt16(bigEndian: base.loadUnaligned(fromByteOffset: Field.tagControl, as: UInt16.self))
    }

    /// The EtherType of the payload: the one after the tag when a tag is present.
    @inlinable
    public var etherType: UInt16 {
        get { UInt16(bigEndian: base.loadUnaligned(fromByteOffset: etherTypeOffset, as: UInt16.self)) }
        nonmutating set { base.storeBytes(of: newValue.bigEndian, toByteOffset: etherTypeOffset, as: UInt16.self) }
    }

    /// 14, or 18 with a tag.
    @inlinable
    public var headerLength: Int { isTagged ? Field.taggedLength : Field.untaggedLength }

    /// The bytes after the header, up to the end of the frame (including any padding).
    @inlinable
    public var payload: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + headerLength, count: count - headerLength)
    }

    /// Exchanges source and destination, as a reply needs.
    @inlinable
    public func swapAddresses() {
        let d = destination
        destination = source
        source = d
    }

    @inlinable
    var etherTypeOffset: Int { isTagged ? Field.innerEtherType : Field.etherType }

    /// Writes a header at `pointer` and returns its length (14, or 18 with `vlanTag`).
    @inlinable
    @discardableResult
    public static func emit(
        into pointer: UnsafeMutableRawPointer, destination: MACAddress, source: MACAddress,
        etherType: UInt16, vlanTag: UInt16? = nil
    ) -> Int {
        destination.store(networkBytesAt: pointer + Field.destination)
        source.store(networkBytesAt: pointer + Field.source)
        guard let tag = vlanTag else {
            pointer.storeBytes(of: etherType.bigEndian, toByteOffset: Field.etherType, as: UInt16.self)
            return Field.untaggedLength
        }
        pointer.storeBytes(of: EtherType.vlan.bigEndian, toByteOffset: Field.etherType, as: UInt16.self)
        pointer.storeBytes(of: tag.bigEndian, toByteOffset: Field.tagControl, as: UInt16.self)
        pointer.storeBytes(of: etherType.bigEndian, toByteOffset: Field.innerEtherType, as: UInt16.self)
        return Field.taggedLength
    }
}

/// A view over an ARP packet (RFC 826), read as the Ethernet/IPv4 form.
///
/// Other hardware or protocol shapes are accepted when long enough, with
/// ``isEthernetIPv4`` false; the address accessors are meaningful only when it is true.
public struct ARPPacket {
    /// Byte offsets of the fields in the Ethernet/IPv4 form.
    @usableFromInline
    enum Field {
        @usableFromInline static let hardwareType = 0
        @usableFromInline static let protocolType = 2
        @usableFromInline static let hardwareLength = 4
        @usableFromInline static let protocolLength = 5
        @usableFromInline static let operation = 6
        @usableFromInline static let senderHardwareAddress = 8
        @usableFromInline static let senderProtocolAddress = 14
        @usableFromInline static let targetHardwareAddress = 18
        @usableFromInline static let targetProtocolAddress = 24
        /// The fixed part before the addresses.
        @usableFromInline static let fixedLength = 8
        @usableFromInline static let ethernetIPv4Length = 28
    }

    /// The start of the ARP packet.
    public let base: UnsafeMutableRawPointer
    /// The number of bytes available.
    public let count: Int

    /// `operation` for a request.
    public static let request: UInt16 = 1
    /// `operation` for a reply.
    public static let reply: UInt16 = 2

    /// Wraps an ARP packet (an Ethernet payload). Throws ``PacketError/truncatedARP`` when
    /// the buffer is shorter than the 28 bytes of the Ethernet/IPv4 form or than its own
    /// hardware and protocol lengths call for.
    @inlinable
    public init(_ buffer: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard let base = buffer.baseAddress, buffer.count >= Field.ethernetIPv4Length else {
            throw .truncatedARP
        }
        let hlen = Int(base.load(fromByteOffset: Field.hardwareLength, as: UInt8.self))
        let plen = Int(base.load(fromByteOffset: Field.protocolLength, as: UInt8.self))
        guard Field.fixedLength + 2 * (hlen + plen) <= buffer.count else { throw .truncatedARP }
        self.base = base
        self.count = buffer.count
    }

    /// True for hardware type 1 (Ethernet), protocol type IPv4, and lengths 6 and 4.
    @inlinable
    public var isEthernetIPv4: Bool {
        // The four fields in one big-endian load: 0001 0800 06 04.
        UInt64(bigEndian: base.loadUnaligned(as: UInt64.self)) >> 16 == 0x0001_0800_0604
    }

    /// The operation: ``request`` (1) or ``reply`` (2).
    @inlinable
    public var operation: UInt16 {
        get { UInt16(bigEndian: base.loadUnaligned(fromByteOffset: Field.operation, as: UInt16.self)) }
        nonmutating set { base.storeBytes(of: newValue.bigEndian, toByteOffset: Field.operation, as: UInt16.self) }
    }

    /// The sender's MAC address.
    @inlinable
    public var senderHardwareAddress: MACAddress {
        get { MACAddress(networkBytesAt: base + Field.senderHardwareAddress) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.senderHardwareAddress) }
    }

    /// The sender's IPv4 address.
    @inlinable
    public var senderProtocolAddress: IPv4Address {
        get { IPv4Address(networkBytesAt: base + Field.senderProtocolAddress) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.senderProtocolAddress) }
    }

    /// The target's MAC address (zero in a request).
    @inlinable
    public var targetHardwareAddress: MACAddress {
        get { MACAddress(networkBytesAt: base + Field.targetHardwareAddress) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.targetHardwareAddress) }
    }

    /// The target's IPv4 address.
    @inlinable
    public var targetProtocolAddress: IPv4Address {
        get { IPv4Address(networkBytesAt: base + Field.targetProtocolAddress) }
        nonmutating set { newValue.store(networkBytesAt: base + Field.targetProtocolAddress) }
    }

    /// Writes an Ethernet/IPv4 ARP packet at `pointer` and returns its length, 28.
    @inlinable
    @discardableResult
    public static func emit(
        into pointer: UnsafeMutableRawPointer, operation: UInt16, senderMAC: MACAddress,
        senderIP: IPv4Address, targetMAC: MACAddress, targetIP: IPv4Address
    ) -> Int {
        pointer.storeBytes(of: UInt16(1).bigEndian, toByteOffset: Field.hardwareType, as: UInt16.self)
        pointer.storeBytes(of: EtherType.ipv4.bigEndian, toByteOffset: Field.protocolType, as: UInt16.self)
        pointer.storeBytes(of: UInt8(6), toByteOffset: Field.hardwareLength, as: UInt8.self)
        pointer.storeBytes(of: UInt8(4), toByteOffset: Field.protocolLength, as: UInt8.self)
        pointer.storeBytes(of: operation.bigEndian, toByteOffset: Field.operation, as: UInt16.self)
        senderMAC.store(networkBytesAt: pointer + Field.senderHardwareAddress)
        senderIP.store(networkBytesAt: pointer + Field.senderProtocolAddress)
        targetMAC.store(networkBytesAt: pointer + Field.targetHardwareAddress)
        targetIP.store(networkBytesAt: pointer + Field.targetProtocolAddress)
        return Field.ethernetIPv4Length
    }
}
