import SluiceCore
import SluicePackets

/// What a host with only the service's UDP port open answers for the rest, as the kernel does
/// when no socket is there: a reset for TCP (RFC 9293 section 3.10.7.1) and ICMP protocol
/// unreachable (RFC 1122 3.2.2.1) or, over IPv6, parameter problem at the next header (RFC 8200
/// section 4) for a protocol it does not carry.
extension HostResponder {
    /// The addresses and the checksum pseudo-header sum of the packet at `network`, for `protocolNumber`
    /// and `length` bytes of transport data.
    static func endpoints(_ network: UnsafeMutableRawPointer, protocolNumber: UInt8, length: Int)
        -> (source: IPAddress, destination: IPAddress, pseudo: UInt64) {
        if network.hostByte(0) >> 4 == 6 {
            let (s, d) = (IPv6Address(networkBytesAt: network + 8), IPv6Address(networkBytesAt: network + 24))
            return (.v6(s), .v6(d), InternetChecksum.pseudoHeaderSum(source: s, destination: d, nextHeader: protocolNumber, length: length))
        }
        let (s, d) = (IPv4Address(networkBytesAt: network + 12), IPv4Address(networkBytesAt: network + 16))
        return (.v4(s), .v4(d), InternetChecksum.pseudoHeaderSum(source: s, destination: d, protocol: protocolNumber, length: length))
    }

    /// Whether an answer may go back for a packet from `source` to `destination`: to one of the
    /// host's addresses, in a frame to its own MAC, from another host's unicast address.
    func answersClosed(_ packet: borrowing Packet, source: IPAddress, destination: IPAddress) -> Bool {
        (linkLayer != .ethernet || packet.dataStart.hostByte(0) & 1 == 0) && isOwn(destination) && mayReceiveErrors(source)
    }

    /// Writes the IP header of a reply the host sends from `source` to `destination` carrying
    /// `protocolNumber`: TTL or hop limit 64; over IPv4 the host's own identification, or, with
    /// `dontFragment` (the kernel's TCP resets: its control socket does path MTU discovery), DF
    /// and identification 0, as the kernel gives a DF packet of a socket with no peer. Returns its length.
    mutating func writeReplyHeader(_ network: UnsafeMutableRawPointer, protocolNumber: UInt8, tos: UInt8, payloadLength: Int,
                                   from source: IPAddress, to destination: IPAddress, dontFragment: Bool = false) -> Int {
        switch (source, destination) {
        case let (.v4(s), .v4(d)):
            network.hostSetBig32(0, 0x4500_0000 | UInt32(tos) << 16 | UInt32(20 + payloadLength))
            network.hostSetBig32(8, 0x4000_0000 | UInt32(protocolNumber) << 16)
            s.store(networkBytesAt: network + 12)
            d.store(networkBytesAt: network + 16)
            // The identification hashes the addresses: written after them.
            network.hostSetBig32(4, dontFragment ? 0x0000_4000
                                     : identifiers.next(forHeaderAt: network, isIPv6: false, protocolNumber: protocolNumber) << 16)
            network.hostSetBig16(10, InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: 20)))
            return 20
        case let (.v6(s), .v6(d)):
            network.hostSetBig32(0, 0x6000_0000)
            network.hostSetBig16(4, UInt16(payloadLength))
            network.hostSetByte(6, protocolNumber)
            network.hostSetByte(7, 64)
            s.store(networkBytesAt: network + 8)
            d.store(networkBytesAt: network + 24)
            return 40
        default:
            preconditionFailure("a reply between two address families")
        }
    }

    /// A TCP segment to the host: no listener is there, so it gets a reset, as from the kernel:
    /// to a segment with ACK, a reset with that sequence number; to one without, RST and ACK of
    /// all it occupied (its data, SYN and FIN). A reset, a segment whose checksum fails, and
    /// one from or to an address no answer goes to get nothing.
    mutating func resetTCP(_ packet: inout Packet, networkOffset: Int, transportOffset: Int) -> HostDisposition {
        let network = packet.dataStart + networkOffset
        let available = packet.length - networkOffset
        let isIPv6 = network.hostByte(0) >> 4 == 6
        let total = isIPv6 ? 40 + Int(network.hostBig16(4)) : Int(network.hostBig16(2))
        guard total <= available, transportOffset + 20 <= total else { return drop(\.malformed) }
        let tcp = network + transportOffset
        let segmentLength = total - transportOffset
        let headerLength = Int(tcp.hostByte(12) >> 4) * 4
        guard headerLength >= 20, headerLength <= segmentLength else { return drop(\.malformed) }
        let (source, destination, pseudo) = Self.endpoints(network, protocolNumber: 6, length: segmentLength)
        if verifiesChecksums {
            let headerBad = !isIPv6 && InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: transportOffset)) != 0
            if headerBad || InternetChecksum.checksum(UnsafeRawBufferPointer(start: tcp, count: segmentLength), initial: pseudo) != 0 {
                return drop(\.badChecksum)
            }
        }
        let flags = tcp.hostByte(13)
        let (fin, syn, reset, acknowledges): (UInt8, UInt8, UInt8, UInt8) = (0x01, 0x02, 0x04, 0x10)
        guard flags & reset == 0, answersClosed(packet, source: source, destination: destination) else { return drop(\.closedPort) }
        let (sourcePort, destinationPort) = (tcp.hostBig16(0), tcp.hostBig16(2))
        let sequence = tcp.hostBig32(4)
        let acknowledgment = tcp.hostBig32(8)
        let occupied = UInt32(segmentLength - headerLength) + (flags & syn != 0 ? 1 : 0) + (flags & fin != 0 ? 1 : 0)
        let tos = isIPv6 ? 0 : network.hostByte(1)
        let replyHeaderLength = writeReplyHeader(network, protocolNumber: 6, tos: tos, payloadLength: 20, from: destination, to: source,
                                                 dontFragment: true)
        let reply = network + replyHeaderLength
        reply.hostSetBig16(0, destinationPort)
        reply.hostSetBig16(2, sourcePort)
        if flags & acknowledges != 0 {
            reply.hostSetBig32(4, acknowledgment)
            reply.hostSetBig32(8, 0)
            reply.hostSetBig16(12, 0x5000 | UInt16(reset))
        } else {
            reply.hostSetBig32(4, 0)
            reply.hostSetBig32(8, sequence &+ occupied)
            reply.hostSetBig16(12, 0x5000 | UInt16(reset | acknowledges))
        }
        reply.hostSetBig32(14, 0)
        reply.hostSetBig16(18, 0)
        let replyPseudo = Self.endpoints(network, protocolNumber: 6, length: 20).pseudo
        reply.hostSetBig16(16, InternetChecksum.checksum(UnsafeRawBufferPointer(start: reply, count: 20), initial: replyPseudo))
        packet.length = networkOffset + replyHeaderLength + 20
        turnLink(packet.dataStart)
        counters.tcpResets &+= 1
        return .answer
    }

    /// A packet of a protocol the host does not carry: ICMP protocol unreachable (IPv4), or
    /// ICMPv6 parameter problem "unrecognized next header" pointing at the field that named it
    /// (`pointer`), within the ICMP rate limits.
    mutating func refuseProtocol(_ packet: inout Packet, networkOffset: Int, pointer: Int, now: Instant) -> HostDisposition {
        let network = packet.dataStart + networkOffset
        let available = packet.length - networkOffset
        let isIPv6 = network.hostByte(0) >> 4 == 6
        let total = isIPv6 ? 40 + Int(network.hostBig16(4)) : Int(network.hostBig16(2))
        guard total <= available else { return drop(\.malformed) }
        if verifiesChecksums, !isIPv6, InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: Int(network.hostByte(0) & 0x0F) * 4)) != 0 {
            return drop(\.badChecksum)
        }
        let (source, destination, _) = Self.endpoints(network, protocolNumber: 0, length: 0)
        guard answersClosed(packet, source: source, destination: destination), allowError(to: source, now: now)
        else { return drop(\.closedPort) }
        guard turnIntoError(&packet, networkOffset: networkOffset, total: total, from: destination, to: source,
                            word: isIPv6 ? 0x0401_0000 : 0x0302_0000, parameter: isIPv6 ? UInt32(pointer) : 0)
        else { return drop(\.closedPort) }
        counters.protocolUnreachable &+= 1
        return .answer
    }

    /// Ends reassembly of the datagrams not whole by `now`: the first fragment of each, when it
    /// came, goes into `output` as ICMP time exceeded, fragment reassembly (RFC 792; RFC 8200
    /// section 4.5), within the ICMP rate limits, as the kernel answers it.
    public mutating func expireReassembly(now: Instant, into output: inout PacketBatch) {
        let already = output.count
        reassembler.expire(now: now, firstFragments: &output)
        var position = 0
        output.filterInPlace { packet in
            position += 1
            guard position > already else { return true }
            let networkOffset = networkOffset(of: packet)
            let network = packet.dataStart + networkOffset
            let isIPv6 = network.hostByte(0) >> 4 == 6
            let total = min(packet.length - networkOffset, isIPv6 ? 40 + Int(network.hostBig16(4)) : Int(network.hostBig16(2)))
            let (source, destination, _) = Self.endpoints(network, protocolNumber: 0, length: 0)
            guard answersClosed(packet, source: source, destination: destination), allowError(to: source, now: now),
                  turnIntoError(&packet, networkOffset: networkOffset, total: total, from: destination, to: source,
                                word: isIPv6 ? 0x0301_0000 : 0x0B01_0000, parameter: 0)
            else {
                counters.closedPort &+= 1
                return false
            }
            counters.timeExceeded &+= 1
            return true
        }
    }

    /// Turns the `total`-byte packet at `networkOffset` into the ICMP or ICMPv6 error whose first
    /// word (type, code) is `word` and second `parameter`, from `source` back to `destination`,
    /// quoting as much of the packet as keeps the error within 576 bytes (IPv4, RFC 1812
    /// 4.3.2.3) or 1280 (IPv6, RFC 4443 2.4). `false` when the frame cannot hold it.
    mutating func turnIntoError(_ packet: inout Packet, networkOffset: Int, total: Int, from source: IPAddress, to destination: IPAddress,
                                word: UInt32, parameter: UInt32) -> Bool {
        let network = packet.dataStart + networkOffset
        let isIPv6 = network.hostByte(0) >> 4 == 6
        let headerLength = isIPv6 ? 40 : 20
        let quoted = min(total, (isIPv6 ? 1280 : 576) - headerLength - 8)
        let icmpLength = 8 + quoted
        guard packet.capacity - packet.offset >= networkOffset + headerLength + icmpLength else { return false }
        (network + headerLength + 8).copyMemory(from: network, byteCount: quoted)
        let icmp = network + headerLength
        icmp.hostSetBig32(0, word)
        icmp.hostSetBig32(4, parameter)
        // Precedence "internetwork control" over IPv4, the offending packet's TOS bits kept, as
        // the kernel marks its errors (RT_TOS | IPTOS_PREC_INTERNETCONTROL).
        let tos: UInt8 = isIPv6 ? 0 : (icmp + 8).hostByte(1) & 0x1E | 0xC0
        _ = writeReplyHeader(network, protocolNumber: isIPv6 ? 58 : 1, tos: tos, payloadLength: icmpLength,
                             from: source, to: destination)
        let pseudo = isIPv6 ? Self.endpoints(network, protocolNumber: 58, length: icmpLength).pseudo : 0
        icmp.hostSetBig16(2, InternetChecksum.checksum(UnsafeRawBufferPointer(start: icmp, count: icmpLength), initial: pseudo))
        packet.length = networkOffset + headerLength + icmpLength
        turnLink(packet.dataStart)
        return true
    }
}
