import SluiceCore
import SluicePackets
import Synchronization

/// What the host does with one packet.
public enum HostDisposition: Sendable {
    /// For the service stage behind the host.
    case service
    /// Rewritten in place into the host's answer (ARP reply, neighbour advertisement, echo reply).
    case answer
    /// Taken in as a fragment, or dropped (counted): its frame goes back to the pool.
    case consumed
}

/// The host's own part of a packet path: it answers ARP and IPv6 neighbour solicitations for
/// its addresses (so kernel peers reach it over a TAP device), answers pings, reassembles
/// fragments, refuses what no service takes (UDP to other ports, TCP, other protocols), and
/// passes the rest on to the service. Checks follow the kernel's: a frame for
/// another MAC, an ICMP message whose checksum fails, a neighbour solicitation whose hop limit
/// is not 255 (RFC 4861 section 7.1.1), an echo request to a broadcast address
/// (`icmp_echo_ignore_broadcasts`) get no answer.
public struct HostResponder: ~Copyable {
    /// What the host has counted.
    public var counters = HostCounters()
    /// Reassembly of the fragments that arrive.
    public var reassembler: Reassembler
    /// Path MTUs learned from ICMP, for the replies that follow.
    public var pathMTUs = PathMTUCache()

    @usableFromInline let linkLayer: LinkLayer
    let ipv4Addresses: [IPv4Address]
    let ipv6Addresses: [IPv6Address]
    let mac: MACAddress?
    let answersEcho: Bool
    let verifiesChecksums: Bool
    let udpPort: UInt16?
    var mtu: Int
    var errorLimiter: ICMPErrorLimiter
    /// The limits and path MTUs of the host's other workers, when it has more than one.
    @usableFromInline let shared: HostShared?
    /// ``shared``'s path MTU change count when this worker last took them.
    @usableFromInline var sharedPathMTUChanges: UInt64 = 0
    /// The IPv4 identifications of the host's own packets (echo replies, errors).
    var identifiers = IPIdentifiers()

    /// A responder for `configuration`, over packets of `linkLayer`, reassembling into frames of `pool`.
    public init(configuration: HostConfiguration, linkLayer: LinkLayer, pool: FramePool) {
        self.linkLayer = linkLayer
        ipv4Addresses = configuration.addresses.compactMap { if case .v4(let a) = $0 { a } else { nil } }
        ipv6Addresses = configuration.addresses.compactMap { if case .v6(let a) = $0 { a } else { nil } }
        mac = configuration.mac
        answersEcho = configuration.answersEcho
        verifiesChecksums = configuration.verifiesChecksums
        udpPort = configuration.udpPort
        mtu = configuration.mtu
        reassembler = Reassembler(pool: pool, limits: configuration.reassembly)
        errorLimiter = ICMPErrorLimiter(configuration.icmpErrors)
        shared = configuration.shared
    }

    /// Where the IP header of `packet` starts: after the Ethernet header on a TAP device.
    @inlinable
    public func networkOffset(of packet: borrowing Packet) -> Int {
        guard linkLayer == .ethernet else { return 0 }
        return packet.length >= 14 && packet.dataStart.hostBig16(12) == 0x8100 ? 18 : 14
    }

    /// Decides what becomes of `packet`, answering it in place or taking it in as a fragment
    /// (after which `packet` may hold the whole datagram, to be decided on as any other).
    public mutating func admit(_ packet: inout Packet, now: Instant) -> HostDisposition {
        var networkOffset = 0
        // The IP version the EtherType announces (0 over TUN: the packet says).
        var version: UInt8 = 0
        if linkLayer == .ethernet {
            let data = packet.dataStart
            guard packet.length >= 14 else { return drop(\.malformed) }
            // The group bit: broadcast and multicast frames are for every host on the link.
            if let mac, MACAddress(networkBytesAt: data) != mac, data.hostByte(0) & 1 == 0 {
                return drop(\.notForThisHost)
            }
            // A source with the group bit is no station (IEEE 802), as a bridge drops it: an
            // answer to it would go to the whole link.
            guard data.hostByte(6) & 1 == 0 else { return drop(\.malformed) }
            switch data.hostBig16(12) {
            case 0x0806: return answerARP(&packet)
            case 0x0800: (networkOffset, version) = (14, 4)
            case 0x86DD: (networkOffset, version) = (14, 6)
            case 0x8100 where packet.length >= 18 && data.hostBig16(14) & 0x0FFF == 0:
                // A priority tag (VLAN ID 0) is the untagged network's (802.1Q): the kernel takes
                // it off and answers ARP and ping as for any frame.
                (data + 4).copyMemory(from: data, byteCount: 12)
                packet.pullFront(4)
                return admit(&packet, now: now)
            case 0x8100: return .service  // the service stage applies the VLAN rules
            default: return drop(\.otherEtherType)
            }
        }
        guard packet.length >= networkOffset + 20 else { return drop(\.malformed) }
        var network = packet.dataStart + networkOffset
        // A frame whose EtherType and IP version disagree is dropped, as the kernel drops it.
        guard version == 0 || network.hostByte(0) >> 4 == version else { return drop(\.malformed) }
        switch network.hostByte(0) >> 4 {
        case 4:
            // A header shorter than 20 bytes, or longer than the packet: dropped, as ip_rcv_core does.
            let headerLength = Int(network.hostByte(0) & 0x0F) * 4
            guard headerLength >= 20, packet.length >= networkOffset + headerLength else { return drop(\.malformed) }
            // Options are checked on every packet as it comes, fragments included, as the kernel
            // checks them before it reassembles.
            if let refused = checkIPv4Options(&packet, networkOffset: networkOffset, now: now) { return refused }
            if Reassembler.isIPv4Fragment(network) {
                if verifiesChecksums, InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: headerLength)) != 0 {
                    return drop(\.badChecksum)
                }
                guard reassembler.insert(&packet, networkOffset: networkOffset, now: now) else { return .consumed }
                network = packet.dataStart + networkOffset
            }
            let transportOffset = Int(network.hostByte(0) & 0x0F) * 4
            switch network.hostByte(9) {
            case 1: return answerICMPv4(&packet, networkOffset: networkOffset, now: now)
            case 17: return checkPort(&packet, networkOffset: networkOffset, transportOffset: transportOffset, now: now)
            // With its UDP port known, the service is all the host runs: the rest is closed.
            case 6 where udpPort != nil: return resetTCP(&packet, networkOffset: networkOffset, transportOffset: transportOffset)
            default: return udpPort == nil ? .service : refuseProtocol(&packet, networkOffset: networkOffset, pointer: 9, now: now)
            }
        case 6:
            guard packet.length >= networkOffset + 40 else { return drop(\.malformed) }
            var next = network.hostByte(6)
            if next == 17 { return checkPort(&packet, networkOffset: networkOffset, transportOffset: 40, now: now) }
            // The headers in front of a fragment header are each fragment's, checked as it comes;
            // those behind it, once the datagram is whole.
            if let refused = checkExtensionHeaders(&packet, networkOffset: networkOffset, now: now) { return refused }
            if next == 44 || ((next == 0 || next == 43 || next == 60)
                              && Reassembler.ipv6FragmentHeader(network, length: packet.length - networkOffset) != nil) {
                if let (code, pointer) = Reassembler.ipv6FragmentProblem(network, length: packet.length - networkOffset) {
                    return reportParameterProblem(&packet, networkOffset: networkOffset, total: 40 + Int(network.hostBig16(4)),
                                                  code: code, pointer: pointer, now: now)
                }
                guard reassembler.insert(&packet, networkOffset: networkOffset, now: now) else { return .consumed }
                network = packet.dataStart + networkOffset
                next = network.hostByte(6)
                if next == 17 { return checkPort(&packet, networkOffset: networkOffset, transportOffset: 40, now: now) }
                if let refused = checkExtensionHeaders(&packet, networkOffset: networkOffset, now: now) { return refused }
            }
            guard let header = try? IPv6Header(UnsafeMutableRawBufferPointer(start: network, count: packet.length - networkOffset)),
                  let (upper, offset) = try? header.upperLayer()
            else { return .service }
            switch upper {
            case 58: return answerICMPv6(&packet, networkOffset: networkOffset, icmpOffset: offset, now: now)
            case 17: return checkPort(&packet, networkOffset: networkOffset, transportOffset: offset, now: now)
            case 6 where udpPort != nil: return resetTCP(&packet, networkOffset: networkOffset, transportOffset: offset)
            // No next header (59) is nothing to answer; an unknown one gets a parameter problem
            // pointing at the field that named it (RFC 8200 section 4).
            case 59 where udpPort != nil: return drop(\.closedPort)
            default:
                guard udpPort != nil else { return .service }
                return refuseProtocol(&packet, networkOffset: networkOffset, pointer: Self.nextHeaderField(network, before: offset), now: now)
            }
        default:
            return drop(\.malformed)
        }
    }

    /// Where the Next Header field naming the upper layer at `upperOffset` is: the fixed header's
    /// (6), or the first byte of the last extension header before it.
    static func nextHeaderField(_ network: UnsafeMutableRawPointer, before upperOffset: Int) -> Int {
        var (field, position, next) = (6, 40, network.hostByte(6))
        while position < upperOffset {
            field = position
            let length = switch next {
            case 44: 8
            case 51: (Int(network.hostByte(position + 1)) + 2) * 4
            default: (Int(network.hostByte(position + 1)) + 1) * 8
            }
            next = network.hostByte(position)
            position += length
        }
        return field
    }

    /// Whether an ICMP error to `peer` may go now: within the host's limits, all workers together.
    mutating func allowError(to peer: IPAddress, now: Instant) -> Bool {
        if let shared { return shared.allowError(to: peer, now: now) }
        return errorLimiter.allow(to: peer, now: now)
    }

    /// Takes the path MTUs the host's other workers learned, when there are new ones.
    @inlinable
    public mutating func takeSharedPathMTUs() {
        guard let shared, shared.pathMTUChanges.load(ordering: .acquiring) != sharedPathMTUChanges else { return }
        takePathMTUs(from: shared)
    }

    @usableFromInline
    mutating func takePathMTUs(from shared: HostShared) {
        sharedPathMTUChanges = shared.pathMTUChanges.load(ordering: .acquiring)
        pathMTUs = shared.pathMTUs.withLock { $0 }
    }

    mutating func drop(_ cause: WritableKeyPath<HostCounters, UInt64>) -> HostDisposition {
        counters[keyPath: cause] &+= 1
        return .consumed
    }

    /// An Ethernet reply goes back to the frame's sender, from the host's MAC.
    func turnLink(_ data: UnsafeMutableRawPointer) {
        guard linkLayer == .ethernet, let mac else { return }
        data.copyMemory(from: data + 6, byteCount: 6)
        mac.store(networkBytesAt: data + 6)
    }

    mutating func answerARP(_ packet: inout Packet) -> HostDisposition {
        let data = packet.dataStart
        guard let mac else { return drop(\.ignoredControl) }
        guard let arp = try? ARPPacket(UnsafeMutableRawBufferPointer(start: data + 14, count: packet.length - 14)) else {
            return drop(\.malformed)
        }
        let target = arp.targetProtocolAddress
        let sender = arp.senderProtocolAddress.rawValue
        // A request from our own address is another host claiming it, and one from a martian
        // (loopback, multicast, broadcast, 0/8 other than a probe's 0.0.0.0) fails the route
        // check on its sender: the kernel answers neither.
        let martian = sender >> 24 == 127 || sender >> 28 == 0xE || sender == .max || (sender != 0 && sender >> 24 == 0)
        guard arp.isEthernetIPv4, arp.operation == ARPPacket.request, ipv4Addresses.contains(target),
              !ipv4Addresses.contains(arp.senderProtocolAddress), !martian else {
            return drop(\.ignoredControl)
        }
        let asker = arp.senderHardwareAddress
        ARPPacket.emit(into: data + 14, operation: ARPPacket.reply, senderMAC: mac, senderIP: target,
                       targetMAC: asker, targetIP: arp.senderProtocolAddress)
        turnLink(data)
        // To the MAC the request names as its sender, as arp_send addresses it (not the frame's source).
        asker.store(networkBytesAt: data)
        packet.length = 14 + 28
        counters.arpReplies &+= 1
        return .answer
    }

    mutating func answerICMPv4(_ packet: inout Packet, networkOffset: Int, now: Instant) -> HostDisposition {
        var network = packet.dataStart + networkOffset
        let headerLength = Int(network.hostByte(0) & 0x0F) * 4
        let total = Int(network.hostBig16(2))
        guard headerLength >= 20, total >= headerLength + 8, networkOffset + total <= packet.length else {
            return drop(\.malformed)
        }
        let icmpLength = total - headerLength
        if verifiesChecksums {
            guard InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: headerLength)) == 0,
                  InternetChecksum.checksum(UnsafeRawBufferPointer(start: network + headerLength, count: icmpLength)) == 0
            else { return drop(\.badChecksum) }
        }
        let source = IPv4Address(networkBytesAt: network + 12)
        let destination = IPv4Address(networkBytesAt: network + 16)
        let icmp = network + headerLength
        // Fragmentation needed, about a packet this host sent (its header quoted): RFC 1191, and
        // the kernel's floor of 552 bytes (`min_pmtu`).
        if icmp.hostByte(0) == 3, icmp.hostByte(1) == 4, icmpLength >= 28, ipv4Addresses.contains(destination),
           icmp.hostByte(8) >> 4 == 4, ipv4Addresses.contains(IPv4Address(networkBytesAt: icmp + 20)) {
            let reported = Int(icmp.hostBig16(6))
            guard reported > 0 else { return drop(\.ignoredControl) }
            return learnPathMTU(.v4(IPv4Address(networkBytesAt: icmp + 24)), max(552, reported), now: now)
        }
        // Echo requests to this host only (whatever their code, as Linux answers them): not to a
        // broadcast, not from an address no reply can reach.
        guard answersEcho, icmp.hostByte(0) == 8, ipv4Addresses.contains(destination), !isMartian(.v4(source)),
              source.rawValue >> 28 < 14
        else { return drop(\.ignoredControl) }
        // Record route and timestamp go back with this host's entries; the rest of the options not.
        guard let options = headerLength > 20 ? Self.echoedOptions(network, headerLength: headerLength, own: destination) : []
        else { return drop(\.ignoredControl) }
        if !options.isEmpty { options.withUnsafeBytes { (network + 20).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        let replyHeaderLength = 20 + options.count
        network = Self.turnEcho(&packet, networkOffset: networkOffset, headersLength: headerLength, fixedLength: replyHeaderLength,
                                from: 0x0800, to: 0x0000)
        _ = writeReplyHeader(network, protocolNumber: 1, tos: network.hostByte(1), payloadLength: options.count + icmpLength,
                             from: .v4(destination), to: .v4(source))
        if !options.isEmpty {
            network.hostSetByte(0, 0x40 | UInt8(replyHeaderLength / 4))
            network.hostSetBig16(10, 0)
            network.hostSetBig16(10, InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: replyHeaderLength)))
        }
        packet.length = networkOffset + replyHeaderLength + icmpLength
        turnLink(packet.dataStart)
        counters.echoReplies &+= 1
        return .answer
    }

    mutating func answerICMPv6(_ packet: inout Packet, networkOffset: Int, icmpOffset: Int, now: Instant) -> HostDisposition {
        var network = packet.dataStart + networkOffset
        let total = 40 + Int(network.hostBig16(4))
        guard networkOffset + total <= packet.length, total >= icmpOffset + 8 else { return drop(\.malformed) }
        let icmpLength = total - icmpOffset
        let source = IPv6Address(networkBytesAt: network + 8)
        let destination = IPv6Address(networkBytesAt: network + 24)
        let icmp = network + icmpOffset
        if verifiesChecksums {
            let pseudo = InternetChecksum.pseudoHeaderSum(source: source, destination: destination, nextHeader: 58, length: icmpLength)
            guard InternetChecksum.checksum(UnsafeRawBufferPointer(start: icmp, count: icmpLength), initial: pseudo) == 0 else {
                return drop(\.badChecksum)
            }
        }
        switch (icmp.hostByte(0), icmp.hostByte(1)) {
        case (2, 0) where icmpLength >= 48 && ipv6Addresses.contains(destination) && icmp.hostByte(8) >> 4 == 6
            && ipv6Addresses.contains(IPv6Address(networkBytesAt: icmp + 16)):
            // Packet too big, about a packet this host sent. One below IPv6's minimum MTU is
            // discarded (RFC 8201 section 4, as Linux does): a forged one would fragment replies.
            let reported = Int(icmp.hostBig32(4))
            guard reported >= 1280 else { return drop(\.ignoredControl) }
            return learnPathMTU(.v6(IPv6Address(networkBytesAt: icmp + 32)), reported, now: now)
        case (128, _) where answersEcho && isEchoDestination(destination) && !isMartian(.v6(source)):
            // To a group (all nodes, the solicited-node group of an address, as the kernel
            // answers them): from the host's address of the asker's scope.
            let from = destination.high >> 56 != 0xFF ? destination
                : ipv6Addresses.first { $0.isLinkLocal == source.isLinkLocal } ?? ipv6Addresses[0]
            network = Self.turnEcho(&packet, networkOffset: networkOffset, headersLength: icmpOffset, fixedLength: 40,
                                    from: 0x8000, to: 0x8100)
            network.hostSetBig16(4, UInt16(icmpLength))
            network.hostSetByte(6, 58)
            network.hostSetByte(7, 64)
            from.store(networkBytesAt: network + 8)
            source.store(networkBytesAt: network + 24)
            if from != destination {
                // A new address in the pseudo-header: the checksum is summed again.
                let reply = network + 40
                reply.hostSetBig16(2, 0)
                let pseudo = InternetChecksum.pseudoHeaderSum(source: from, destination: source, nextHeader: 58, length: icmpLength)
                reply.hostSetBig16(2, InternetChecksum.checksum(UnsafeRawBufferPointer(start: reply, count: icmpLength), initial: pseudo))
            }
            packet.length = networkOffset + 40 + icmpLength
            turnLink(packet.dataStart)
            counters.echoReplies &+= 1
            return .answer
        case (135, 0) where icmpLength >= 24:
            let target = IPv6Address(networkBytesAt: icmp + 8)
            // Only a solicitation that never crossed a router, for this host. One from :: is another
            // host's duplicate address detection: the address is defended with an unsolicited
            // advertisement to all nodes (RFC 4862 section 5.4.3).
            guard let mac, network.hostByte(7) == 255, ipv6Addresses.contains(target),
                  Self.isValidSolicitation(icmp, length: icmpLength, source: source, destination: destination, target: target,
                                           own: ipv6Addresses)
            else {
                return drop(\.ignoredControl)
            }
            return advertise(&packet, networkOffset: networkOffset, target: target, to: source == .any ? nil : source, mac: mac)
        default:
            return drop(\.ignoredControl)
        }
    }

    /// Whether an echo request to `destination` is the host's to answer: one of its addresses,
    /// all nodes, or the solicited-node group of one of them.
    func isEchoDestination(_ destination: IPv6Address) -> Bool {
        if ipv6Addresses.contains(destination) { return true }
        guard !ipv6Addresses.isEmpty else { return false }
        return destination == IPv6Address(high: 0xFF02 << 48, low: 1)
            || ipv6Addresses.contains { destination == Self.solicitedNode($0) }
    }

    /// The solicited-node group of `address` (RFC 4291 section 2.7.1).
    static func solicitedNode(_ address: IPv6Address) -> IPv6Address {
        IPv6Address(high: 0xFF02 << 48, low: 0x1_FF00_0000 | address.low & 0xFF_FFFF)
    }

    /// The checks of RFC 4861 section 7.1.1 the kernel makes of a neighbour solicitation (the
    /// hop limit, code and target aside): options of non-zero length within the message; a
    /// unicast source, or `::` (duplicate address detection) sent to the target's solicited-node
    /// group without a source link-layer address; and a destination this host receives: one of
    /// its addresses, all nodes, or the solicited-node group of one of them.
    static func isValidSolicitation(_ icmp: UnsafeMutableRawPointer, length: Int, source: IPv6Address,
                                    destination: IPv6Address, target: IPv6Address, own: [IPv6Address]) -> Bool {
        guard source.high >> 56 != 0xFF else { return false }
        var offset = 24
        var sourceLinkLayer = false
        while offset + 2 <= length {
            let units = Int(icmp.hostByte(offset + 1))
            guard units > 0, offset + units * 8 <= length else { return false }
            if icmp.hostByte(offset) == 1 { sourceLinkLayer = true }
            offset += units * 8
        }
        guard offset == length else { return false }
        if source == .any {
            return destination == solicitedNode(target) && !sourceLinkLayer
        }
        return own.contains(destination) || destination == IPv6Address(high: 0xFF02 << 48, low: 1)
            || own.contains { destination == solicitedNode($0) }
    }

    /// Remembers a path MTU below the device's for `destination`; the message is used up.
    mutating func learnPathMTU(_ destination: IPAddress, _ pathMTU: Int, now: Instant) -> HostDisposition {
        if pathMTU < mtu {
            pathMTUs.learn(destination, mtu: pathMTU, now: now)
            shared?.learn(destination, mtu: pathMTU, now: now)
        }
        counters.pathMTUUpdates &+= 1
        return .consumed
    }

    /// Where an IP packet the host sends goes: its destination address.
    @inlinable
    static func destination(of network: UnsafeMutableRawPointer) -> IPAddress {
        network.load(as: UInt8.self) >> 4 == 6 ? .v6(IPv6Address(networkBytesAt: network + 24))
            : .v4(IPv4Address(networkBytesAt: network + 16))
    }

    /// A UDP datagram to a port the service is not on is answered as by a host with no socket
    /// there: ICMP port unreachable (RFC 1122 3.2.2.1, RFC 4443 3.1), within the kernel's rate
    /// limits; never for a datagram to or from a group or unspecified address, or whose
    /// checksum fails. Datagrams to the service's port go on to it.
    mutating func checkPort(_ packet: inout Packet, networkOffset: Int, transportOffset: Int, now: Instant) -> HostDisposition {
        let network = packet.dataStart + networkOffset
        let available = packet.length - networkOffset
        guard let udpPort, transportOffset + 8 <= available, network.hostBig16(transportOffset + 2) != udpPort else {
            return .service
        }
        let isIPv6 = network.hostByte(0) >> 4 == 6
        let total = isIPv6 ? 40 + Int(network.hostBig16(4)) : Int(network.hostBig16(2))
        let udp = network + transportOffset
        let udpLength = Int(udp.hostBig16(4))
        guard total <= available, udpLength >= 8, transportOffset + udpLength <= total else { return drop(\.malformed) }
        let (source, destination, pseudo) = Self.endpoints(network, protocolNumber: 17, length: udpLength)
        if verifiesChecksums {
            let stored = udp.hostBig16(6)
            let headerBad = !isIPv6 && InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: transportOffset)) != 0
            let udpBad = stored == 0 ? isIPv6
                : InternetChecksum.checksum(UnsafeRawBufferPointer(start: udp, count: udpLength), initial: pseudo) != 0
            if headerBad || udpBad { return drop(\.badChecksum) }
        }
        // Not for a frame to a group MAC. Options and extension headers the kernel refuses never
        // get here; the error quotes the rest as they came.
        guard answersClosed(packet, source: source, destination: destination), allowError(to: source, now: now)
        else { return drop(\.closedPort) }
        guard turnIntoError(&packet, networkOffset: networkOffset, total: total, from: destination, to: source,
                            word: isIPv6 ? 0x0104_0000 : 0x0303_0000, parameter: 0)
        else { return drop(\.closedPort) }
        counters.portUnreachable &+= 1
        return .answer
    }

    func isOwn(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let a): ipv4Addresses.contains(a)
        case .v6(let a): ipv6Addresses.contains(a)
        }
    }

    /// Whether the kernel sends nothing back to `source`: 0/8 (no route back), 127/8, a multicast
    /// address, 255.255.255.255 or one of the host's own addresses over IPv4 (`fib_validate_source`);
    /// `::`, `::1`, a multicast, an IPv4-mapped or one of its own addresses over IPv6.
    func isMartian(_ source: IPAddress) -> Bool {
        guard !isOwn(source) else { return true }
        switch source {
        case .v4(let a): return a.rawValue >> 24 == 0 || a.rawValue >> 24 == 127 || a.rawValue >> 28 == 0xE || a.rawValue == .max
        case .v6(let a): return a == .any || a == .loopback || a.high >> 56 == 0xFF || a.mappedIPv4 != nil
        }
    }

    /// Whether an ICMP error may go to `source`: a unicast address of another host (RFC 1122
    /// 3.2.2, RFC 4443 2.4 (e)), not one of class E.
    func mayReceiveErrors(_ source: IPAddress) -> Bool {
        guard !isMartian(source) else { return false }
        if case .v4(let a) = source { return a.rawValue >> 28 < 14 }
        return true
    }

    /// Turns the echo request whose message starts `headersLength` bytes after the IP header into
    /// a reply: its first word (type and code) goes `from` → `to` with the checksum updated, and
    /// IP options or extension headers are dropped, the fixed header of `fixedLength` bytes (and
    /// the link header) moving up against the message. Returns where the IP header now starts.
    static func turnEcho(_ packet: inout Packet, networkOffset: Int, headersLength: Int, fixedLength: Int,
                         from: UInt16, to: UInt16) -> UnsafeMutableRawPointer {
        let icmp = packet.dataStart + networkOffset + headersLength
        icmp.hostSetByte(0, UInt8(to >> 8))
        icmp.hostSetBig16(2, InternetChecksum.update(icmp.hostBig16(2), old: from, new: to))
        if headersLength > fixedLength {
            let data = packet.dataStart
            (data + headersLength - fixedLength).copyMemory(from: data, byteCount: networkOffset + fixedLength)
            packet.pullFront(headersLength - fixedLength)
        }
        return packet.dataStart + networkOffset
    }

    /// Rewrites `packet` into a neighbour advertisement (RFC 4861 section 7.2.4) of `target` at
    /// `mac`: solicited, to `requester`; or, with no requester, unsolicited to all nodes.
    mutating func advertise(_ packet: inout Packet, networkOffset: Int, target: IPv6Address, to requester: IPv6Address?,
                            mac: MACAddress) -> HostDisposition {
        let data = packet.dataStart
        let network = data + networkOffset
        // The solicitation's source link-layer address, where the answer goes (RFC 4861 section
        // 7.2.4, as the kernel sends it), whatever the frame's source was.
        var linkSource: MACAddress?
        let solicitation = network + 40
        let length = min(Int(network.hostBig16(4)), packet.length - networkOffset - 40)
        var offset = 24
        while requester != nil, offset + 8 <= length, solicitation.hostByte(offset + 1) > 0 {
            if solicitation.hostByte(offset) == 1 {
                linkSource = MACAddress(networkBytesAt: solicitation + offset + 2)
                break
            }
            offset += Int(solicitation.hostByte(offset + 1)) * 8
        }
        turnLink(data)
        if linkLayer == .ethernet, let linkSource { linkSource.store(networkBytesAt: data) }
        let allNodes = IPv6Address(high: 0xFF02 << 48, low: 1)
        if requester == nil { MACAddress(0x33, 0x33, 0, 0, 0, 1).store(networkBytesAt: data) }
        let destination = requester ?? allNodes
        network.hostSetBig32(0, 0x6000_0000)
        network.hostSetBig16(4, 32)
        network.hostSetByte(6, 58)
        network.hostSetByte(7, 255)
        target.store(networkBytesAt: network + 8)
        destination.store(networkBytesAt: network + 24)
        let icmp = network + 40
        icmp.hostSetBig32(0, 136 << 24)
        // Override, and solicited when it answers someone.
        icmp.hostSetBig32(4, requester == nil ? 0x2000_0000 : 0x6000_0000)
        target.store(networkBytesAt: icmp + 8)
        // The target link-layer address option.
        icmp.hostSetByte(24, 2)
        icmp.hostSetByte(25, 1)
        mac.store(networkBytesAt: icmp + 26)
        let pseudo = InternetChecksum.pseudoHeaderSum(source: target, destination: destination, nextHeader: 58, length: 32)
        let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: icmp, count: 32), initial: pseudo)
        icmp.hostSetBig16(2, checksum)
        packet.length = networkOffset + 72
        counters.neighborAdvertisements &+= 1
        return .answer
    }
}
