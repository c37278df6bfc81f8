/// What a frame starts with.
public enum LinkLayer: Sendable {
    /// An Ethernet II header, with at most one 802.1Q tag (AF_XDP, TAP, packet sockets).
    case ethernet
    /// A bare IPv4 or IPv6 packet, told apart by the version nibble (TUN without packet info).
    case ip
}

/// Where the parts of a UDP frame are, as byte offsets from the start of the frame.
public struct UDPFrameLayout: Sendable, Equatable {
    /// The 802.1Q tag control information, if the frame had a tag.
    public var vlanTag: UInt16?
    /// The start of the IP header.
    public var networkOffset: Int
    /// Whether the IP header is IPv6.
    public var isIPv6: Bool
    /// The start of the UDP header.
    public var transportOffset: Int
    /// The start of the UDP payload.
    public var payloadOffset: Int
    /// The UDP payload length: the UDP length field minus 8.
    public var payloadLength: Int

    /// Creates a layout.
    @inlinable
    public init(
        vlanTag: UInt16?, networkOffset: Int, isIPv6: Bool, transportOffset: Int, payloadOffset: Int,
        payloadLength: Int
    ) {
        self.vlanTag = vlanTag
        self.networkOffset = networkOffset
        self.isIPv6 = isIPv6
        self.transportOffset = transportOffset
        self.payloadOffset = payloadOffset
        self.payloadLength = payloadLength
    }
}

/// Parsing and building whole UDP frames in one pass.
public enum UDPFrame {
    /// The extension-header bound ``parse(_:linkLayer:)`` walks IPv6 with.
    @usableFromInline
    static let ipv6ExtensionHeaderLimit = 8

    /// Parses Ethernet (with at most one VLAN tag) or a bare IP packet, then IPv4 (options
    /// skipped) or IPv6 (extension headers walked, at most 8), then UDP, checking every
    /// length against the frame. Checksums are not verified; ``UDPHeader`` can do that when
    /// the device has not.
    ///
    /// Throws the ``PacketError`` of the first problem, ``PacketError/notUDP`` for anything
    /// other than unfragmented UDP over IP, and ``PacketError/fragment`` for fragments.
    // Transparent, not `@inline(__always)`: with typed throws Swift 6.3 left that a call in the
    // UDP stage's per-packet loop (2 ns of the 28 a verified echo took).
    @_transparent
    public static func parse(
        _ frame: UnsafeMutableRawBufferPointer, linkLayer: LinkLayer
    ) throws(PacketError) -> UDPFrameLayout {
        var vlanTag: UInt16? = nil
        let networkOffset: Int
        let isIPv6: Bool
        switch linkLayer {
        case .ethernet:
            let ethernet = try EthernetHeader(frame)
            switch ethernet.etherType {
            case EtherType.ipv4: isIPv6 = false
            case EtherType.ipv6: isIPv6 = true
            default: throw .notUDP
            }
            vlanTag = ethernet.vlanTag
            networkOffset = ethernet.headerLength
        case .ip:
            // An empty packet has no version to go by; report it as the more common family.
            guard let base = frame.baseAddress, frame.count > 0 else { throw .truncatedIPv4 }
            switch base.load(as: UInt8.self) >> 4 {
            case 4: isIPv6 = false
            case 6: isIPv6 = true
            default: throw .badIPVersion
            }
            networkOffset = 0
        }
        let network = UnsafeMutableRawBufferPointer(rebasing: frame[networkOffset...])
        let transportOffset: Int
        let transportEnd: Int
        if isIPv6 {
            let ip = try IPv6Header(network)
            let (proto, offset) = try ip.upperLayer(limit: ipv6ExtensionHeaderLimit)
            guard proto == IPProtocol.udp else { throw .notUDP }
            transportOffset = networkOffset + offset
            transportEnd = networkOffset + IPv6Header.Field.length + Int(ip.payloadLength)
        } else {
            let ip = try IPv4Header(network)
            guard ip.protocol == IPProtocol.udp else { throw .notUDP }
            guard !ip.isFragment else { throw .fragment }
            transportOffset = networkOffset + ip.headerLength
            transportEnd = networkOffset + Int(ip.totalLength)
        }
        let udp = try UDPHeader(UnsafeMutableRawBufferPointer(rebasing: frame[transportOffset..<transportEnd]))
        return UDPFrameLayout(
            vlanTag: vlanTag, networkOffset: networkOffset, isIPv6: isIPv6, transportOffset: transportOffset,
            payloadOffset: transportOffset + UDPHeader.Field.headerLength,
            payloadLength: Int(udp.length) - UDPHeader.Field.headerLength)
    }

    /// The layout of the most common frame, found with a handful of loads: untagged Ethernet (or
    /// a bare packet for ``LinkLayer/ip``), IPv4 without options, not a fragment, UDP, every length
    /// consistent. `nil` for anything else, which ``parse(_:linkLayer:)`` then takes; for every
    /// frame this accepts, `parse` gives the same layout. Its fixed offsets let an inlined caller
    /// drop the branches for tags, options and IPv6.
    @inlinable @inline(__always)
    public static func plainIPv4Layout(_ frame: UnsafeMutableRawBufferPointer, linkLayer: LinkLayer = .ethernet) -> UDPFrameLayout? {
        let ipv4 = linkLayer == .ethernet ? 14 : 0, udp = ipv4 + 20
        guard let base = frame.baseAddress, frame.count >= udp + 8 else { return nil }
        if linkLayer == .ethernet {
            // EtherType 0x0800 (IPv4), then version 4 with IHL 5, in one load.
            guard UInt32(bigEndian: base.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) & 0xFFFF_FF00 == 0x0800_4500
            else { return nil }
        } else {
            guard base.load(as: UInt8.self) == 0x45 else { return nil }
        }
        guard base.load(fromByteOffset: ipv4 + 9, as: UInt8.self) == IPProtocol.udp,
              UInt16(bigEndian: base.loadUnaligned(fromByteOffset: ipv4 + 6, as: UInt16.self)) & 0x3FFF == 0
        else { return nil }
        let totalLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: ipv4 + 2, as: UInt16.self)))
        let udpLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: udp + 4, as: UInt16.self)))
        guard ipv4 + totalLength <= frame.count, udpLength >= 8, udpLength <= totalLength - 20 else { return nil }
        return UDPFrameLayout(vlanTag: nil, networkOffset: ipv4, isIPv6: false, transportOffset: udp,
                              payloadOffset: udp + 8, payloadLength: udpLength - 8)
    }

    /// As ``plainIPv4Layout(_:linkLayer:)`` for IPv6 with UDP as its next header (no extension
    /// headers), every length consistent.
    @inlinable @inline(__always)
    public static func plainIPv6Layout(_ frame: UnsafeMutableRawBufferPointer, linkLayer: LinkLayer = .ethernet) -> UDPFrameLayout? {
        let ipv6 = linkLayer == .ethernet ? 14 : 0, udp = ipv6 + 40
        guard let base = frame.baseAddress, frame.count >= udp + 8 else { return nil }
        if linkLayer == .ethernet {
            guard UInt16(bigEndian: base.loadUnaligned(fromByteOffset: 12, as: UInt16.self)) == EtherType.ipv6 else { return nil }
        }
        guard base.load(fromByteOffset: ipv6, as: UInt8.self) >> 4 == 6,
              base.load(fromByteOffset: ipv6 + 6, as: UInt8.self) == IPProtocol.udp
        else { return nil }
        let payloadLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: ipv6 + 4, as: UInt16.self)))
        let udpLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: udp + 4, as: UInt16.self)))
        guard udp + payloadLength <= frame.count, udpLength >= 8, udpLength <= payloadLength else { return nil }
        return UDPFrameLayout(vlanTag: nil, networkOffset: ipv6, isIPv6: true, transportOffset: udp,
                              payloadOffset: udp + 8, payloadLength: udpLength - 8)
    }

    /// Builds Ethernet (with `vlanTag` if given; nothing for ``LinkLayer/ip``), IPv4 or IPv6,
    /// and UDP headers around `payload`, with valid IP and UDP checksums, and returns the frame
    /// length. `payload` may lie anywhere, including inside `buffer` at its final place.
    /// IPv4 goes out with DF set and identification 0, as RFC 6864 allows for atomic datagrams.
    ///
    /// `source` and `destination` must be of one family once IPv4-mapped IPv6 addresses are
    /// read as IPv4, which is how those are sent; `buffer` must hold the whole frame.
    @inlinable
    public static func build(
        into buffer: UnsafeMutableRawBufferPointer, linkLayer: LinkLayer, sourceMAC: MACAddress,
        destinationMAC: MACAddress, vlanTag: UInt16? = nil, source: IPEndpoint, destination: IPEndpoint,
        payload: UnsafeRawBufferPointer, hopLimit: UInt8 = 64
    ) -> Int {
        let addresses = AddressPair(source: source.address, destination: destination.address)
        let linkLength: Int
        switch linkLayer {
        case .ethernet:
            linkLength = vlanTag == nil ? EthernetHeader.Field.untaggedLength : EthernetHeader.Field.taggedLength
        case .ip:
            linkLength = 0
        }
        let datagramLength = UDPHeader.Field.headerLength + payload.count
        let networkLength: Int
        let etherType: UInt16
        // What the 16-bit IP length field will hold: IPv4 counts its header, IPv6 does not.
        let ipLengthField: Int
        switch addresses {
        case .v4:
            (networkLength, etherType) = (IPv4Header.Field.minimumLength, EtherType.ipv4)
            ipLengthField = networkLength + datagramLength
        case .v6:
            (networkLength, etherType) = (IPv6Header.Field.length, EtherType.ipv6)
            ipLengthField = datagramLength
        }
        precondition(ipLengthField <= Int(UInt16.max), "UDPFrame.build: the payload is too large for one datagram")
        let transportOffset = linkLength + networkLength
        let frameLength = transportOffset + datagramLength
        precondition(frameLength <= buffer.count, "UDPFrame.build: the buffer is too small for the frame")
        let base = buffer.baseAddress!

        // The payload goes first (copyMemory is a memmove), so it may sit anywhere in `buffer`,
        // including where the headers are about to be written.
        let payloadStart = base + transportOffset + UDPHeader.Field.headerLength
        if let from = payload.baseAddress, from != UnsafeRawPointer(payloadStart) {
            payloadStart.copyMemory(from: from, byteCount: payload.count)
        }
        UDPHeader.emit(
            into: base + transportOffset, sourcePort: source.port, destinationPort: destination.port,
            payloadLength: payload.count)
        let udp = UDPHeader(unchecked: base + transportOffset, count: datagramLength)
        switch addresses {
        case .v4(let s, let d):
            IPv4Header.emit(
                into: base + linkLength, source: s, destination: d, protocol: IPProtocol.udp,
                payloadLength: datagramLength, timeToLive: hopLimit)
            udp.checksum = udp.computeChecksum(source: s, destination: d)
        case .v6(let s, let d):
            IPv6Header.emit(
                into: base + linkLength, source: s, destination: d, nextHeader: IPProtocol.udp,
                payloadLength: datagramLength, hopLimit: hopLimit)
            udp.checksum = udp.computeChecksum(source: s, destination: d)
        }
        if case .ethernet = linkLayer {
            EthernetHeader.emit(
                into: base, destination: destinationMAC, source: sourceMAC, etherType: etherType, vlanTag: vlanTag)
        }
        return frameLength
    }

    /// A source and destination of one family, IPv4-mapped IPv6 read as IPv4.
    @usableFromInline
    enum AddressPair {
        case v4(IPv4Address, IPv4Address)
        case v6(IPv6Address, IPv6Address)

        @inlinable
        init(source: IPAddress, destination: IPAddress) {
            switch (source.unmapped, destination.unmapped) {
            case (.v4(let s), .v4(let d)): self = .v4(s, d)
            case (.v6(let s), .v6(let d)): self = .v6(s, d)
            default: preconditionFailure("UDPFrame.build: source and destination are of different families")
            }
        }
    }
}
