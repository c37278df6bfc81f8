#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets

/// Where the headers of a packet behind a virtio-net header are, checked against the packet:
/// what splitting a super-packet into segments, or completing a partial checksum, needs.
struct SuperPacketLayout {
    var networkOffset: Int
    var isIPv6: Bool
    var transportOffset: Int
    /// The end of the transport header: where the segments' payload starts.
    var payloadOffset: Int
    var isTCP: Bool
    var segmentSize: Int

    /// The layout of the `length`-byte packet at `data` that `header` describes, the IP header
    /// `networkOffset` bytes in; `nil` when the header and the packet disagree (a transport
    /// header outside the packet, a segment type that is not the packet's protocol, no segment size).
    init?(_ header: VirtioNetHeader, data: UnsafeMutableRawPointer, length: Int, networkOffset: Int) {
        guard header.flags & VirtioNetHeader.needsChecksum != 0, length >= networkOffset + 20 else { return nil }
        let version = data.load(fromByteOffset: networkOffset, as: UInt8.self) >> 4
        isIPv6 = version == 6
        let proto: UInt8
        switch VirtioNetHeader.Segmentation(rawValue: header.segmentation) {
        case .tcpIPv4?: (isTCP, proto) = (true, 6); guard version == 4 else { return nil }
        case .tcpIPv6?: (isTCP, proto) = (true, 6); guard version == 6 else { return nil }
        case .udp?: (isTCP, proto) = (false, 17); guard version == 4 || version == 6 else { return nil }
        default: return nil
        }
        self.networkOffset = networkOffset
        transportOffset = Int(header.checksumStart)
        let minimumIP = isIPv6 ? 40 : Int(data.load(fromByteOffset: networkOffset, as: UInt8.self) & 0x0F) * 4
        guard minimumIP >= 20, transportOffset >= networkOffset + minimumIP, transportOffset + (isTCP ? 20 : 8) <= length,
              Int(header.checksumOffset) == (isTCP ? 16 : 6)
        else { return nil }
        if !isIPv6 {
            guard transportOffset == networkOffset + minimumIP,
                  data.load(fromByteOffset: networkOffset + 9, as: UInt8.self) == proto else { return nil }
        }
        let transportHeader = isTCP ? Int(data.load(fromByteOffset: transportOffset + 12, as: UInt8.self) >> 4) * 4 : 8
        payloadOffset = transportOffset + transportHeader
        segmentSize = Int(header.segmentSize)
        // Each segment, headers included, must fit one IP length field.
        guard transportHeader >= (isTCP ? 20 : 8), payloadOffset <= length, segmentSize > 0,
              payloadOffset - networkOffset + segmentSize <= 65535 else { return nil }
    }

    /// How many segments the `length`-byte super-packet makes.
    func segmentCount(length: Int) -> Int {
        max(1, (length - payloadOffset + segmentSize - 1) / segmentSize)
    }

    /// Writes segment `index` of the `length`-byte super-packet at `source` to `destination`:
    /// its headers with lengths, IPv4 identification, TCP sequence and flags, and checksums
    /// set as the kernel's segmentation sets them. Returns its length.
    func writeSegment(_ index: Int, of source: UnsafeMutableRawPointer, length: Int, to destination: UnsafeMutableRawPointer) -> Int {
        let start = payloadOffset + index * segmentSize
        let count = min(segmentSize, length - start)
        let last = start + count >= length
        destination.copyMemory(from: source, byteCount: payloadOffset)
        (destination + payloadOffset).copyMemory(from: source + start, byteCount: count)
        let network = destination + networkOffset
        let transportLength = payloadOffset - transportOffset + count
        if isIPv6 {
            network.storeBytes(of: UInt16(transportOffset - networkOffset - 40 + transportLength).bigEndian, toByteOffset: 4, as: UInt16.self)
        } else {
            let headerLength = transportOffset - networkOffset
            network.storeBytes(of: UInt16(headerLength + transportLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            let identification = UInt16(bigEndian: network.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
            network.storeBytes(of: (identification &+ UInt16(truncatingIfNeeded: index)).bigEndian, toByteOffset: 4, as: UInt16.self)
            network.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
            let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: headerLength))
            network.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
        }
        let transport = destination + transportOffset
        if isTCP {
            let sequence = UInt32(bigEndian: transport.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            transport.storeBytes(of: (sequence &+ UInt32(truncatingIfNeeded: index * segmentSize)).bigEndian, toByteOffset: 4, as: UInt32.self)
            var flags = transport.load(fromByteOffset: 13, as: UInt8.self)
            if !last { flags &= ~0x09 }  // FIN and PSH ride on the last segment only
            if index > 0 { flags &= ~0x80 }  // CWR on the first only
            transport.storeBytes(of: flags, toByteOffset: 13, as: UInt8.self)
        } else {
            transport.storeBytes(of: UInt16(transportLength).bigEndian, toByteOffset: 4, as: UInt16.self)
        }
        let checksumField = isTCP ? 16 : 6
        transport.storeBytes(of: UInt16(0), toByteOffset: checksumField, as: UInt16.self)
        var checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: transport, count: transportLength),
                                                 initial: pseudoHeaderSum(network, transportLength: transportLength))
        if !isTCP && checksum == 0 { checksum = 0xFFFF }
        transport.storeBytes(of: checksum.bigEndian, toByteOffset: checksumField, as: UInt16.self)
        return payloadOffset + count
    }

    func pseudoHeaderSum(_ network: UnsafeMutableRawPointer, transportLength: Int) -> UInt64 {
        let proto: UInt8 = isTCP ? 6 : 17
        if isIPv6 {
            return InternetChecksum.pseudoHeaderSum(source: IPv6Address(networkBytesAt: network + 8),
                                                    destination: IPv6Address(networkBytesAt: network + 24),
                                                    nextHeader: proto, length: transportLength)
        }
        return InternetChecksum.pseudoHeaderSum(source: IPv4Address(networkBytesAt: network + 12),
                                                destination: IPv4Address(networkBytesAt: network + 16),
                                                protocol: proto, length: transportLength)
    }

    /// Completes the checksum a virtio-net header leaves partial: the sum from `start` to the
    /// end, over the pseudo-header sum the field holds. `false` when the offsets are outside the packet.
    static func completeChecksum(_ data: UnsafeMutableRawPointer, length: Int, start: Int, offset: Int) -> Bool {
        guard start + offset + 2 <= length else { return false }
        var checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: data + start, count: length - start))
        // A UDP checksum of 0 means "none"; the kernel sends its complement (RFC 768).
        if offset == 6 && checksum == 0 { checksum = 0xFFFF }
        data.storeBytes(of: checksum.bigEndian, toByteOffset: start + offset, as: UInt16.self)
        return true
    }
}

/// Joining a run of UDP datagrams of one flow into one super-packet, for a device that takes
/// `VIRTIO_NET_HDR_GSO_UDP_L4` back: the kernel segments it again on its way.
enum UDPCoalescing {
    /// The kernel's cap on segments in one UDP super-packet.
    static let maximumSegments = 64

    /// Where the UDP header of the packet at `data` is and how long its payload is, for a plain
    /// IPv4 (no options, not a fragment) or IPv6 (UDP right after the header) datagram.
    static func udp(_ data: UnsafeMutableRawPointer, length: Int, networkOffset: Int) -> (transport: Int, payload: Int, isIPv6: Bool)? {
        guard length >= networkOffset + 28 else { return nil }
        let network = data + networkOffset
        let first = network.load(as: UInt8.self)
        if first == 0x45 {
            let flags = UInt16(bigEndian: network.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            guard network.load(fromByteOffset: 9, as: UInt8.self) == 17, flags & 0x3FFF == 0 else { return nil }
            let total = Int(UInt16(bigEndian: network.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            guard networkOffset + total == length else { return nil }
            return (networkOffset + 20, total - 28, false)
        }
        guard first >> 4 == 6, length >= networkOffset + 48, network.load(fromByteOffset: 6, as: UInt8.self) == 17 else { return nil }
        let payloadLength = Int(UInt16(bigEndian: network.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
        guard networkOffset + 40 + payloadLength == length else { return nil }
        return (networkOffset + 40, payloadLength - 8, true)
    }

    /// Whether `next` belongs in the same super-packet as `first`: the same link header,
    /// addresses, ports and IPv4 TOS and TTL (or IPv6 class, flow and hop limit).
    static func sameFlow(_ first: UnsafeMutableRawPointer, _ next: UnsafeMutableRawPointer, transport: Int, isIPv6: Bool,
                         networkOffset: Int) -> Bool {
        let network = networkOffset
        if networkOffset > 0, memcmp(first, next, networkOffset) != 0 { return false }
        if isIPv6 {
            return memcmp(first + network, next + network, 4) == 0
                && memcmp(first + network + 7, next + network + 7, 33) == 0
                && memcmp(first + transport, next + transport, 4) == 0
        }
        return first.load(fromByteOffset: network + 1, as: UInt8.self) == next.load(fromByteOffset: network + 1, as: UInt8.self)
            && first.load(fromByteOffset: network + 8, as: UInt8.self) == next.load(fromByteOffset: network + 8, as: UInt8.self)
            && memcmp(first + network + 12, next + network + 12, 8) == 0
            && memcmp(first + transport, next + transport, 4) == 0
    }
}
