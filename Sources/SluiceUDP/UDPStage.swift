import SluiceCore
import SluicePackets

/// What a ``UDPStage`` has seen and done.
public struct UDPStageCounters: Equatable, Sendable {
    /// Datagrams handed to the service.
    public var datagrams: UInt64 = 0
    /// Datagrams turned around as replies.
    public var replies: UInt64 = 0
    /// Datagrams sent on to another endpoint.
    public var forwarded: UInt64 = 0
    /// Datagrams the service dropped.
    public var droppedByService: UInt64 = 0
    /// Datagrams the service took without a reply, as they asked (``UDPAction/consume``).
    public var consumed: UInt64 = 0
    /// Datagrams sent by the service through its emitter.
    public var emitted: UInt64 = 0
    /// Emitter sends refused for want of a frame, room in the batch or a known next hop.
    public var emitFailures: UInt64 = 0
    /// Well-formed packets that are not UDP (ARP, TCP, ICMP, ...): passed over and dropped.
    public var notUDP: UInt64 = 0
    /// IP fragments, which this stage does not reassemble.
    public var fragments: UInt64 = 0
    /// Datagrams whose UDP checksum was wrong (only when the stage verifies checksums).
    public var badChecksum: UInt64 = 0
    /// Datagrams whose UDP checksum field held only the pseudo-header's sum, as this host's own
    /// stack leaves it for offload (`CHECKSUM_PARTIAL`) when it sends through a veth: accepted, as
    /// the kernel accepts them, and answered with a checksum summed in full.
    public var offloadedChecksum: UInt64 = 0
    /// `send(to:)` to a family other than the datagram's own: dropped.
    public var familyMismatch: UInt64 = 0
    /// IPv4 headers whose checksum was wrong (only when the stage verifies checksums).
    public var badIPChecksum: UInt64 = 0
    /// Frames for another MAC or another address than this host's: the kernel's, not ours.
    public var notLocal: UInt64 = 0
    /// Martian sources or destinations (0.0.0.0, 127/8, multicast or 255.255.255.255 sources,
    /// this host's own IPv4 address as a source, `::`, `::1`, IPv4-mapped IPv6 sources), dropped
    /// as the kernel drops them.
    public var martian: UInt64 = 0
    /// Replies to source port 0, which no socket can send to.
    public var replyToPortZero: UInt64 = 0
    /// IPv4 source-route options (as with `accept_source_route=0`), and IPv6 extension headers
    /// RFC 8200 says to discard: hop-by-hop options not first, options whose type says discard,
    /// routing headers with segments left.
    public var refusedIPOptions: UInt64 = 0
    /// Frames tagged with a VLAN no device on the interface owns.
    public var vlanWithoutDevice: UInt64 = 0
    /// Malformed packets, by what was wrong, indexed by `PacketError` raw value.
    public var malformed: [UInt64] = Array(repeating: 0, count: PacketError.allCases.count)

    /// Zero counts.
    public init() {}

    /// All malformed packets together.
    public var malformedTotal: UInt64 { malformed.reduce(0, +) }

    /// The malformed count for one reason.
    public func malformed(_ reason: PacketError) -> UInt64 {
        malformed[Int(reason.rawValue)]
    }

    /// Adds another stage's counts to these.
    public mutating func add(_ other: UDPStageCounters) {
        datagrams += other.datagrams
        replies += other.replies
        forwarded += other.forwarded
        droppedByService += other.droppedByService
        consumed += other.consumed
        emitted += other.emitted
        emitFailures += other.emitFailures
        notUDP += other.notUDP
        fragments += other.fragments
        badChecksum += other.badChecksum
        offloadedChecksum += other.offloadedChecksum
        familyMismatch += other.familyMismatch
        badIPChecksum += other.badIPChecksum
        notLocal += other.notLocal
        martian += other.martian
        replyToPortZero += other.replyToPortZero
        refusedIPOptions += other.refusedIPOptions
        vlanWithoutDevice += other.vlanWithoutDevice
        for i in malformed.indices { malformed[i] += other.malformed[i] }
    }

    /// Non-zero counts as name–value pairs, for summaries.
    public var fields: [(String, UInt64)] {
        var out: [(String, UInt64)] = [
            ("datagrams", datagrams), ("replies", replies), ("forwarded", forwarded),
            ("dropped_by_service", droppedByService), ("consumed", consumed), ("emitted", emitted), ("emit_failures", emitFailures),
            ("not_udp", notUDP), ("fragments", fragments), ("bad_checksum", badChecksum),
            ("offloaded_checksum", offloadedChecksum),
            ("family_mismatch", familyMismatch), ("bad_ip_checksum", badIPChecksum), ("not_local", notLocal),
            ("martian", martian), ("reply_to_port_zero", replyToPortZero), ("refused_ip_options", refusedIPOptions),
            ("vlan_without_device", vlanWithoutDevice),
        ]
        for (reason, count) in zip(PacketError.allCases, malformed) where reason.isMalformed {
            out.append(("malformed_" + reason.name, count))
        }
        return out
    }
}

/// The addresses for frames a service sends on its own over an Ethernet port.
@usableFromInline
struct LinkTemplate {
    @usableFromInline var localMAC: MACAddress
    @usableFromInline var nextHopMAC: MACAddress
    @usableFromInline var vlanTag: UInt16?

    @inlinable
    init(localMAC: MACAddress, nextHopMAC: MACAddress, vlanTag: UInt16?) {
        self.localMAC = localMAC
        self.nextHopMAC = nextHopMAC
        self.vlanTag = vlanTag
    }
}

/// The link of the last datagram received on an Ethernet port, so datagrams a service sends on
/// its own go out the way replies do. Kept as that frame's first 16 bytes (MACs, EtherType or
/// tag): two loads and two stores a packet, read out only when the service sends.
@usableFromInline
struct ReceivedLink: Sendable {
    @usableFromInline var head: (UInt64, UInt64)

    /// No frame seen yet: a parsed frame's bytes 12 and 13 (an EtherType) are never zero.
    @usableFromInline static let none = ReceivedLink(head: (0, 0))

    @inlinable
    init(head: (UInt64, UInt64)) {
        self.head = head
    }

    /// The first 16 bytes of a received Ethernet frame (a parsed UDP frame has at least 42).
    @inlinable @inline(__always)
    init(frame: UnsafeRawPointer) {
        head = (frame.loadUnaligned(as: UInt64.self), frame.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }

    /// The addresses to send with: from `ownMAC` when known (the frame may have been sent to a
    /// group address), else from the MAC the frame was sent to; to the MAC it came from, with
    /// its VLAN tag. `nil` before the first frame.
    @inlinable
    func template(ownMAC: MACAddress?) -> LinkTemplate? {
        guard head.1 != 0 else { return nil }
        return withUnsafeBytes(of: head) {
            let bytes = $0.baseAddress!
            let tagged = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt16.self)) == EtherType.vlan
            return LinkTemplate(
                localMAC: ownMAC ?? MACAddress(networkBytesAt: bytes), nextHopMAC: MACAddress(networkBytesAt: bytes + 6),
                vlanTag: tagged ? UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 14, as: UInt16.self)) : nil)
        }
    }
}

/// A received datagram's verified UDP checksum and the sum of what it covered besides the
/// payload (`UDPStage.headerSum(from:to:udpLength:)`): enough to update it for a reply that
/// carries the same payload between other endpoints.
@usableFromInline
struct ReceivedChecksum {
    @usableFromInline let checksum: UInt16
    /// `nil` for a reply between the same endpoints swapped: the checksum stays as it is.
    @usableFromInline let headerSum: UInt64?

    @inlinable
    init(checksum: UInt16, headerSum: UInt64?) {
        self.checksum = checksum
        self.headerSum = headerSum
    }
}

/// Addresses split by family, so a per-packet membership test compares plain integers instead
/// of calling the generic `contains` on `[IPAddress]`.
@usableFromInline
struct AddressSet {
    @usableFromInline let ipv4: [UInt32]
    @usableFromInline let ipv6: [IPv6Address]

    @usableFromInline
    init(_ addresses: [IPAddress]) {
        var ipv4: [UInt32] = [], ipv6: [IPv6Address] = []
        for address in addresses {
            switch address {
            case .v4(let a): ipv4.append(a.rawValue)
            case .v6(let a): ipv6.append(a)
            }
        }
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }

    @inlinable
    var isEmpty: Bool { ipv4.isEmpty && ipv6.isEmpty }

    @inlinable @inline(__always)
    func contains(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let a):
            for candidate in ipv4 where candidate == a.rawValue { return true }
            return false
        case .v6(let a):
            for candidate in ipv6 where candidate == a { return true }
            return false
        }
    }
}

/// What a ``UDPStage`` accepts of Ethernet and IP frames that no kernel has checked (AF_XDP,
/// TAP): the Linux stack's rules for a socket bound to the listen address, so the stage takes
/// exactly what the kernel would deliver to that socket. Every rule is off by default (a stage
/// fed by a kernel socket needs none); each drop is counted by reason.
public struct UDPAcceptance: Sendable, Equatable {
    /// Verify IPv4 header and UDP checksums (a zero UDP checksum allowed over IPv4, dropped over
    /// IPv6, RFC 8200). Off only for a NIC that validates in hardware.
    public var verifiesChecksums = false
    /// This host's MAC: a frame for another unicast MAC is not ours, and a reply to a broadcast
    /// or multicast frame leaves from this MAC. `nil`: not checked.
    public var localMAC: MACAddress?
    /// The addresses a datagram may be sent to: the listen address, or the interface's for a
    /// wildcard listen. A reply to a broadcast or multicast leaves from one of them (see
    /// ``localPrefixLengths``). Empty: not checked.
    public var localAddresses: [IPAddress] = []
    /// The prefix length of each of ``localAddresses``' subnets, in the same order (empty: not
    /// known). A reply to a broadcast leaves from the address whose subnet holds the requester,
    /// else the first of its family: the address the kernel gives a socket as `ipi_spec_dst`.
    public var localPrefixLengths: [Int] = []
    /// Broadcast addresses also accepted (a wildcard IPv4 listen's: the subnets' and 255.255.255.255).
    public var broadcastAddresses: [IPAddress] = []
    /// The interface's broadcast addresses, whatever the listen address: no datagram comes from
    /// one (the kernel drops it as a martian source, as it drops ``broadcastAddresses``).
    public var broadcastSources: [IPAddress] = []
    /// The most bytes of IP packet a reply may take, the link's MTU when the server started:
    /// nothing past the stage fragments it (AF_XDP), so a service's reply is held to it (a DNS
    /// answer sets TC past it). `nil`: only the frame bounds it.
    public var maximumPacket: Int?
    /// Apply the kernel's IP and link rules: drop IPv4 source-route options, IPv6 extension
    /// headers RFC 8200 discards, and frames tagged with a VLAN not in ``vlanIDs``.
    public var appliesKernelRules = false
    /// The VLAN IDs that have a device on the interface (their frames are the kernel's to give
    /// to that device, and a service listening there takes them).
    public var vlanIDs: Set<UInt16> = []

    /// Whether ``localAddresses`` are this host's now: `false` while a listen address has been
    /// deleted from the interface, when every datagram is refused as not local, as the kernel
    /// refuses datagrams for an address it no longer has.
    public var localAddressesPresent = true

    /// Nothing checked.
    public init() {}
}

/// Adapts a port's frames to a ``UDPService``: parses each frame once, bounds-checked, hands
/// the service a ``UDPDatagram`` over the payload in place, and turns the same frame into the
/// reply (addresses and ports swapped, lengths and checksums rewritten).
///
/// Malformed frames are counted by reason and dropped; frames that are not UDP are counted
/// and dropped (on an AF_XDP port the XDP program passes them to the kernel before they get here).
public struct UDPStage<Service: UDPService>: Stage {
    /// The service.
    public var service: Service
    /// What the port's packets hold.
    public let format: FrameFormat
    /// What the stage accepts of Ethernet and IP frames.
    public var acceptance: UDPAcceptance {
        didSet { (destinations, broadcasts) = Self.addressSets(acceptance) }
    }
    /// ``acceptance``'s local and broadcast addresses (empty: every destination is taken), and its
    /// broadcast addresses alone, for the per-packet checks.
    @usableFromInline var destinations: AddressSet
    @usableFromInline var broadcasts: AddressSet
    /// Whether incoming IPv4 header and UDP checksums are verified (``UDPAcceptance/verifiesChecksums``).
    @inlinable public var verifiesChecksums: Bool { acceptance.verifiesChecksums }
    @usableFromInline var _counters = UDPStageCounters()
    @usableFromInline var link = ReceivedLink.none

    /// Creates a stage running `service` over packets of `format`.
    public init(service: Service, format: FrameFormat, verifiesChecksums: Bool = false) {
        var acceptance = UDPAcceptance()
        acceptance.verifiesChecksums = verifiesChecksums
        self.init(service: service, format: format, acceptance: acceptance)
    }

    /// Creates a stage running `service` over packets of `format`, accepting what `acceptance` says.
    public init(service: Service, format: FrameFormat, acceptance: UDPAcceptance) {
        self.service = service
        self.format = format
        self.acceptance = acceptance
        (destinations, broadcasts) = Self.addressSets(acceptance)
    }

    static func addressSets(_ acceptance: UDPAcceptance) -> (destinations: AddressSet, broadcasts: AddressSet) {
        // Addresses absent: only the unspecified ones, which no datagram past the martian check is sent to.
        let destinations: [IPAddress] = !acceptance.localAddressesPresent ? [.v4(.any), .v6(.any)]
            : acceptance.localAddresses.isEmpty ? [] : acceptance.localAddresses + acceptance.broadcastAddresses
        let sources = acceptance.broadcastSources.filter { !acceptance.broadcastAddresses.contains($0) }
        return (AddressSet(destinations), AddressSet(acceptance.broadcastAddresses + sources))
    }

    /// What the stage has counted.
    public var counters: UDPStageCounters { _counters }

    @inlinable
    public mutating func handle(_ input: inout PacketBatch, output: inout PacketBatch, now: Instant) {
        switch format {
        case .datagram:
            input.drain(keepingInto: &output) { handleDatagram(&$0, now: now) }
        case .ethernet:
            input.drain(keepingInto: &output) { handleAnyFrame(&$0, linkLayer: .ethernet, now: now) }
        case .ip:
            input.drain(keepingInto: &output) { handleAnyFrame(&$0, linkLayer: .ip, now: now) }
        }
        flush(into: &output, now: now)
    }

    @inlinable
    public func pollTimeout() -> Instant? { service.pollTimeout() }

    @inlinable
    public mutating func handleTimeout(now: Instant, output: inout PacketBatch) {
        flush(into: &output, now: now)
    }

    @inlinable
    mutating func flush(into output: inout PacketBatch, now: Instant) {
        var emitter = UDPEmitter(batch: output, format: format, link: link.template(ownMAC: acceptance.localMAC))
        service.flush(into: &emitter, now: now)
        _counters.emitted &+= emitter.sent
        _counters.emitFailures &+= emitter.failed
        output = emitter.finish()
    }

    // MARK: Socket datagrams

    @inlinable
    mutating func handleDatagram(_ packet: inout Packet, now: Instant) -> Bool {
        let header = DatagramHeader(frameStart: packet.frameStart)
        var datagram = UDPDatagram(
            source: header.peer, destination: header.local, payloadStart: packet.dataStart,
            payloadLength: packet.length, payloadCapacity: min(packet.capacity - packet.offset, 65507))
        _counters.datagrams &+= 1
        switch service.handle(&datagram, now: now) {
        case .reply:
            _counters.replies &+= 1
        case .send(let target):
            header.peer = target
            _counters.forwarded &+= 1
        case .drop:
            _counters.droppedByService &+= 1
            return false
        case .consume:
            _counters.consumed &+= 1
            return false
        }
        if datagram.destination != header.local { header.local = datagram.destination }
        packet.length = datagram.payloadLength
        return true
    }

    // MARK: Ethernet and IP frames

    /// The common shapes get their own copies of the handling, specialized to their offsets.
    @inlinable @inline(__always)
    mutating func handleAnyFrame(_ packet: inout Packet, linkLayer: LinkLayer, now: Instant) -> Bool {
        if let layout = UDPFrame.plainIPv4Layout(packet.data, linkLayer: linkLayer) {
            return handleFrame(&packet, layout: layout, linkLayer: linkLayer, now: now)
        }
        if let layout = UDPFrame.plainIPv6Layout(packet.data, linkLayer: linkLayer) {
            return handleFrame(&packet, layout: layout, linkLayer: linkLayer, now: now)
        }
        return handleFrame(&packet, linkLayer: linkLayer, now: now)
    }

    @inlinable @inline(__always)
    mutating func handleFrame(_ packet: inout Packet, linkLayer: LinkLayer, now: Instant) -> Bool {
        let layout: UDPFrameLayout
        do {
            layout = try UDPFrame.parse(packet.data, linkLayer: linkLayer)
        } catch {
            count(error)
            return false
        }
        return handleFrame(&packet, layout: layout, linkLayer: linkLayer, now: now)
    }

    /// The frame parsed as `layout`: accepted or dropped, handed to the service, turned around.
    @inlinable @inline(__always)
    mutating func handleFrame(_ packet: inout Packet, layout: UDPFrameLayout, linkLayer: LinkLayer, now: Instant) -> Bool {
        let data = packet.dataStart
        let network = data + layout.networkOffset
        let transport = data + layout.transportOffset
        let ipHeaderLength = layout.transportOffset - layout.networkOffset
        let source: IPAddress
        let destination: IPAddress
        if layout.isIPv6 {
            source = .v6(IPv6Address(networkBytesAt: network + 8))
            destination = .v6(IPv6Address(networkBytesAt: network + 24))
        } else {
            source = .v4(IPv4Address(networkBytesAt: network + 12))
            destination = .v4(IPv4Address(networkBytesAt: network + 16))
        }
        if linkLayer == .ethernet, let localMAC = acceptance.localMAC {
            let frameDestination = MACAddress(networkBytesAt: data)
            // The group bit: broadcast and multicast frames are for everyone on the link.
            guard frameDestination == localMAC || data.load(as: UInt8.self) & 1 == 1 else {
                _counters.notLocal &+= 1
                return false
            }
            // A source with the group bit is no station (IEEE 802): the reply would go to the whole link.
            guard (data + 6).load(as: UInt8.self) & 1 == 0 else {
                _counters.martian &+= 1
                return false
            }
        }
        guard !Self.isMartian(source: source, destination: destination) else {
            _counters.martian &+= 1
            return false
        }
        if acceptance.appliesKernelRules {
            // VLAN ID 0 is a priority tag: the frame is the untagged network's (802.1Q).
            if let tag = layout.vlanTag, tag & 0x0FFF != 0, !acceptance.vlanIDs.contains(tag & 0x0FFF) {
                _counters.vlanWithoutDevice &+= 1
                return false
            }
            guard ipHeaderLength == (layout.isIPv6 ? 40 : 20)
                    || !Self.refusesIPOptions(network: network, length: ipHeaderLength, isIPv6: layout.isIPv6,
                                              toThisHost: linkLayer != .ethernet || data.load(as: UInt8.self) & 1 == 0) else {
                _counters.refusedIPOptions &+= 1
                return false
            }
            // A packet from this host's own IPv4 address did not come from the wire (the
            // kernel's fib_validate_source, accept_local=0); from its broadcast address it
            // could get no reply (the kernel's send fails with EACCES). From its own IPv6
            // address the kernel's reply would go to itself over lo, never onto the wire.
            if destinations.contains(source) || broadcasts.contains(source) {
                _counters.martian &+= 1
                return false
            }
        }
        if !destinations.isEmpty, !destinations.contains(destination) {
            _counters.notLocal &+= 1
            return false
        }
        // The received UDP checksum once verified (and not "none"): a reply whose payload the
        // service left alone updates it for the new addresses instead of summing the payload.
        var verifiedChecksum: UInt16?
        if verifiesChecksums {
            let udpLength = 8 + layout.payloadLength
            let pseudoHeader: UInt64
            switch (source, destination) {
            case let (.v4(s), .v4(d)):
                let sum = ipHeaderLength == 20 ? InternetChecksum.sum(twentyBytesAt: network)
                    : InternetChecksum.sum(UnsafeRawBufferPointer(start: network, count: ipHeaderLength))
                if InternetChecksum.fold(sum) != 0xFFFF {
                    _counters.badIPChecksum &+= 1
                    return false
                }
                pseudoHeader = InternetChecksum.pseudoHeaderSum(source: s, destination: d, protocol: IPProtocol.udp, length: udpLength)
            case let (.v6(s), .v6(d)):
                pseudoHeader = InternetChecksum.pseudoHeaderSum(source: s, destination: d, nextHeader: IPProtocol.udp, length: udpLength)
            default:
                preconditionFailure("UDP stage: one family per packet")
            }
            let stored = UInt16(bigEndian: transport.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            // Zero is "no checksum": allowed over IPv4, dropped over IPv6 (RFC 8200 section 8.1).
            if stored != 0 {
                let sum = InternetChecksum.sum(UnsafeRawBufferPointer(start: transport, count: udpLength), initial: pseudoHeader)
                if InternetChecksum.fold(sum) == 0xFFFF {
                    verifiedChecksum = stored
                } else if stored == InternetChecksum.fold(pseudoHeader) {
                    // No NIC computed it: the frame came from this host's stack through a veth,
                    // whose skb the kernel trusts (CHECKSUM_PARTIAL), but XDP does not see that
                    // mark. A corrupted frame lands on this one value as rarely as on a valid sum.
                    _counters.offloadedChecksum &+= 1
                } else {
                    _counters.badChecksum &+= 1
                    return false
                }
            } else if layout.isIPv6 {
                _counters.badChecksum &+= 1
                return false
            }
        }
        let sourcePort = UInt16(bigEndian: transport.loadUnaligned(as: UInt16.self))
        let destinationPort = UInt16(bigEndian: transport.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        let received = (source: IPEndpoint(address: source, port: sourcePort),
                        destination: IPEndpoint(address: destination, port: destinationPort))
        // A reply drops IP options and extension headers, so its IP header is the fixed one.
        let replyHeaders = layout.networkOffset + (layout.isIPv6 ? 40 : 20) + 8
        let room = packet.capacity - packet.offset - layout.payloadOffset
        var datagram = UDPDatagram(
            source: received.source, destination: received.destination,
            payloadStart: data + layout.payloadOffset, payloadLength: layout.payloadLength,
            payloadCapacity: min(room, (acceptance.maximumPacket ?? 65535) - (replyHeaders - layout.networkOffset)))
        _counters.datagrams &+= 1
        if linkLayer == .ethernet { link = ReceivedLink(frame: data) }
        let target: IPEndpoint
        let isReply: Bool
        switch service.handle(&datagram, now: now) {
        case .reply:
            target = datagram.source
            isReply = true
            _counters.replies &+= 1
        case .send(let to):
            target = to
            isReply = false
            _counters.forwarded &+= 1
        case .drop:
            _counters.droppedByService &+= 1
            return false
        case .consume:
            _counters.consumed &+= 1
            return false
        }
        guard Self.sameFamily(target.address, datagram.destination.address) else {
            _counters.familyMismatch &+= 1
            return false
        }
        guard target.port != 0 else {
            _counters.replyToPortZero &+= 1
            return false
        }
        var from = datagram.destination
        var swapsEndpoints = isReply && !datagram.endpointsSet
        if from.address.isMulticastOrBroadcast || broadcasts.contains(from.address),
           let own = Self.replySource(to: target.address, family: from.address, acceptance) {
            // A reply is unicast: from this host's own address, never a group one.
            from = IPEndpoint(address: own, port: from.port)
            swapsEndpoints = false
        }
        let groupFrame = linkLayer == .ethernet && data.load(as: UInt8.self) & 1 == 1
        var unchanged: ReceivedChecksum?
        if let checksum = verifiedChecksum, !datagram.payloadMayHaveChanged, datagram.payloadLength == layout.payloadLength {
            unchanged = ReceivedChecksum(checksum: checksum, headerSum: swapsEndpoints ? nil : Self.headerSum(
                from: received.source, to: received.destination, udpLength: UInt16(truncatingIfNeeded: 8 + layout.payloadLength)))
        }
        Self.turnAround(&packet, layout: layout, linkLayer: linkLayer, from: from, to: target,
                        payloadLength: datagram.payloadLength, unchangedPayload: unchanged)
        if groupFrame, let localMAC = acceptance.localMAC { localMAC.store(networkBytesAt: packet.dataStart + 6) }
        return true
    }

    /// The own address a reply to a group request from `requester` leaves from (see
    /// ``UDPAcceptance/localPrefixLengths``).
    @usableFromInline
    static func replySource(to requester: IPAddress, family group: IPAddress, _ acceptance: UDPAcceptance) -> IPAddress? {
        let addresses = acceptance.localAddresses
        let knowsSubnets = acceptance.localPrefixLengths.count == addresses.count
        var first: IPAddress?
        for index in addresses.indices where sameFamily(addresses[index], group) {
            if knowsSubnets, addresses[index].sharesPrefix(with: requester, length: acceptance.localPrefixLengths[index]) { return addresses[index] }
            first = first ?? addresses[index]
        }
        return first
    }

    /// Whether the kernel would drop the packet for its IP options or extension headers.
    ///
    /// IPv4, as `ip_options_compile` reads a received packet's options: a loose or strict
    /// source route (`accept_source_route=0`, the default), an option running past the header,
    /// a second record route or timestamp, a record route or timestamp whose pointer or length
    /// is off, a timestamp with its overflow count full, a router alert shorter than 4 bytes,
    /// CIPSO (no DOI is configured). IPv6 (RFC 8200, as `ip6_parse_tlv` and the routing code
    /// read them): hop-by-hop options anywhere but first; in options headers, padding longer
    /// than 7 bytes or PadN with non-zero bytes, more than 8 other options, an option past its
    /// header, an unknown option whose type says discard, a router alert not 2 bytes long, IOAM
    /// not 4-byte aligned, CALIPSO and jumbo; a routing header with segments left, of type 3 or 4
    /// (their handling off by default), or in a frame not sent to this host. `length` is the
    /// whole IP header with options or extension headers, already bounds-checked by the parser.
    @inlinable
    static func refusesIPOptions(network: UnsafeMutableRawPointer, length: Int, isIPv6: Bool, toThisHost: Bool) -> Bool {
        func byte(_ offset: Int) -> Int { Int(network.load(fromByteOffset: offset, as: UInt8.self)) }
        if !isIPv6 {
            var offset = 20   // the fixed header; options follow
            var seenRecordRoute = false, seenTimestamp = false
            while offset < length {
                let type = byte(offset)
                if type == 0 { return false }          // end of options
                if type == 1 { offset += 1; continue }  // no operation
                guard offset + 1 < length else { return true }
                let size = byte(offset + 1)
                guard size >= 2, offset + size <= length else { return true }
                switch type {
                case 0x83, 0x89, 0x86:   // LSRR, SSRR, CIPSO
                    return true
                case 7:   // record route
                    let pointer = size >= 3 ? byte(offset + 2) : 0
                    if seenRecordRoute || size < 3 || pointer < 4 || (pointer <= size && pointer + 3 > size) { return true }
                    seenRecordRoute = true
                case 0x44:   // timestamp
                    guard !seenTimestamp, size >= 4 else { return true }
                    seenTimestamp = true
                    let pointer = byte(offset + 2), flags = byte(offset + 3)
                    guard pointer >= 5 else { return true }
                    if pointer <= size {
                        // Room for the next timestamp, and for its address with flags 1 and 3.
                        guard pointer + 3 <= size else { return true }
                        if flags & 0xF == 1 || flags & 0xF == 3, pointer + 7 > size { return true }
                    } else if flags & 0xF != 3 && flags >> 4 == 15 {
                        return true   // full, and its overflow count can go no higher
                    }
                case 0x94:   // router alert
                    if size < 4 { return true }
                default:
                    break
                }
                offset += size
            }
            return false
        }
        var next = byte(6)
        var offset = 40
        var first = true
        while offset < length {
            let size = (byte(offset + 1) + 1) * 8
            switch next {
            case 0, 60:   // hop-by-hop, destination options
                if next == 0 && !first { return true }
                if refusesOptions(network: network, header: offset, size: size, hopByHop: next == 0) { return true }
            case 43:
                // Routing: this host is the destination, so no segment may be left; segment
                // routing (type 4) and RPL (type 3) headers are dropped whatever is left, as the
                // kernel does while seg6_enabled and rpl_seg_enabled are off (their default); and
                // the kernel takes none from a frame sent to a group.
                let type = byte(offset + 2)
                if byte(offset + 3) != 0 || type == 3 || type == 4 || !toThisHost { return true }
            default:
                break
            }
            next = byte(offset)
            offset += size
            first = false
        }
        return false
    }

    /// Whether the kernel would drop the packet for the options of the hop-by-hop or destination
    /// options header at `header` (`size` bytes), as `ip6_parse_tlv` reads them.
    @inlinable
    static func refusesOptions(network: UnsafeMutableRawPointer, header: Int, size: Int, hopByHop: Bool) -> Bool {
        func byte(_ offset: Int) -> Int { Int(network.load(fromByteOffset: offset, as: UInt8.self)) }
        var option = header + 2
        let end = header + size
        var padding = 0
        var options = 0
        while option < end {
            let type = byte(option)
            if type == 0 {   // Pad1
                padding += 1
                if padding > 7 { return true }
                option += 1
                continue
            }
            guard option + 2 <= end else { return true }
            let optionSize = byte(option + 1) + 2
            guard option + optionSize <= end else { return true }
            if type == 1 {   // PadN: at most 7 bytes of padding in a row, all zero (RFC 4942 2.1.9.5)
                padding += optionSize
                if padding > 7 { return true }
                for index in 2..<optionSize where byte(option + index) != 0 { return true }
            } else {
                options += 1
                // max_hbh_opts_number and max_dst_opts_number, 8 by default.
                if options > 8 { return true }
                switch (hopByHop, type) {
                case (true, 5): if optionSize != 4 { return true }             // router alert: 2 bytes of data
                case (true, 0x31): if (option - header) & 3 != 0 { return true } // IOAM: 4-byte aligned
                case (true, 7), (true, 0xC2): return true                      // CALIPSO (no DOI), jumbo
                default: if type >> 6 != 0 { return true }                      // unknown, "discard"
                }
                padding = 0
            }
            option += optionSize
        }
        return false
    }

    /// Whether the kernel would drop the packet for a martian address: 0.0.0.0, 127/8, a
    /// multicast address or 255.255.255.255 as the source (the rest of 0/8 and 240/4 are
    /// routable since Linux 5.3), or 0/8, 127/8 as the destination, over IPv4; `::`, `::1`, a
    /// multicast or an IPv4-mapped source (or `::`, `::1` as the destination) over IPv6.
    @inlinable @inline(__always)
    static func isMartian(source: IPAddress, destination: IPAddress) -> Bool {
        switch (source, destination) {
        case let (.v4(s), .v4(d)):
            let sourceNet = s.rawValue >> 24, destinationNet = d.rawValue >> 24
            return s.rawValue == 0 || sourceNet == 127 || s.rawValue >> 28 == 0xE || s.rawValue == .max
                || destinationNet == 0 || destinationNet == 127
        case let (.v6(s), .v6(d)):
            let loopback = IPv6Address(high: 0, low: 1)
            return s == .any || s == loopback || s.high >> 56 == 0xFF || s.mappedIPv4 != nil || d == .any || d == loopback
        default:
            return true
        }
    }

    @inlinable
    static func sameFamily(_ a: IPAddress, _ b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4, .v4), (.v6, .v6): true
        default: false
        }
    }

    /// The sum of everything a UDP checksum covers besides the payload: the pseudo-header and
    /// the UDP header's words (its checksum field as zero).
    @inlinable @inline(__always)
    static func headerSum(from: IPEndpoint, to: IPEndpoint, udpLength: UInt16) -> UInt64 {
        let udpHeader = UInt64(from.port) &+ UInt64(to.port) &+ UInt64(udpLength)
        switch (from.address, to.address) {
        case let (.v4(source), .v4(destination)):
            return udpHeader &+ InternetChecksum.pseudoHeaderSum(
                source: source, destination: destination, protocol: IPProtocol.udp, length: Int(udpLength))
        case let (.v6(source), .v6(destination)):
            return udpHeader &+ InternetChecksum.pseudoHeaderSum(
                source: source, destination: destination, nextHeader: IPProtocol.udp, length: Int(udpLength))
        default:
            preconditionFailure("UDP stage: reply families checked before")
        }
    }

    /// Rewrites a received frame, in place, into a datagram from `from` to `to` carrying the
    /// first `payloadLength` bytes already at the payload's place. With `unchangedPayload` (the
    /// received datagram's verified checksum, its payload and length untouched), the UDP checksum
    /// is kept for an echo and updated for other endpoints rather than summed over the payload.
    @inlinable @inline(__always)
    static func turnAround(_ packet: inout Packet, layout: UDPFrameLayout, linkLayer: LinkLayer,
                           from: IPEndpoint, to: IPEndpoint, payloadLength: Int,
                           unchangedPayload: ReceivedChecksum? = nil) {
        let fixedIPHeader = layout.isIPv6 ? 40 : 20
        // Options and extension headers sit between the fixed IP header and UDP: slide the
        // link and fixed IP headers up against UDP instead of moving the payload.
        let extra = layout.transportOffset - layout.networkOffset - fixedIPHeader
        if extra > 0 {
            let start = packet.dataStart
            (start + extra).copyMemory(from: start, byteCount: layout.networkOffset + fixedIPHeader)
            packet.pullFront(extra)
        }
        let networkOffset = layout.networkOffset
        let udpOffset = networkOffset + fixedIPHeader
        // Stored only when it changes: the batch then moves the packet with one wide load, which
        // a narrow store just before would stall (store forwarding), as it does for every echo.
        if packet.length != udpOffset + 8 + payloadLength { packet.length = udpOffset + 8 + payloadLength }
        let data = packet.dataStart
        if linkLayer == .ethernet {
            let destination = MACAddress(networkBytesAt: data)
            MACAddress(networkBytesAt: data + 6).store(networkBytesAt: data)
            destination.store(networkBytesAt: data + 6)
        }
        let network = data + networkOffset
        let udpBytes = UnsafeMutableRawBufferPointer(start: data + udpOffset, count: 8 + payloadLength)
        let udpLength = UInt16(truncatingIfNeeded: 8 + payloadLength)
        udpBytes.storeBytes(of: from.port.bigEndian, toByteOffset: 0, as: UInt16.self)
        udpBytes.storeBytes(of: to.port.bigEndian, toByteOffset: 2, as: UInt16.self)
        udpBytes.storeBytes(of: udpLength.bigEndian, toByteOffset: 4, as: UInt16.self)
        udpBytes.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        switch (from.address, to.address) {
        case let (.v4(source), .v4(destination)):
            // TOS 0, as a socket sends: the request's DSCP and ECN bits are its own, not the reply's.
            let versionAndTOS = UInt16(0x4500)
            let totalLength = UInt16(truncatingIfNeeded: 20 + 8 + payloadLength)
            let flags = UInt16(0x4000)  // DF, no fragment; identification 0 (RFC 6864)
            let timeToLiveAndProtocol = UInt16(64) << 8 | UInt16(IPProtocol.udp)
            // Summed from the values, not read back from the bytes just stored: a wide load
            // over narrow stores stalls store forwarding.
            let ipHeaderChecksum = ~InternetChecksum.fold(
                UInt64(versionAndTOS) &+ UInt64(totalLength) &+ UInt64(flags) &+ UInt64(timeToLiveAndProtocol)
                    &+ UInt64(source.rawValue) &+ UInt64(destination.rawValue))
            network.storeBytes(of: versionAndTOS.bigEndian, as: UInt16.self)
            network.storeBytes(of: totalLength.bigEndian, toByteOffset: 2, as: UInt16.self)
            network.storeBytes(of: UInt16(0), toByteOffset: 4, as: UInt16.self)
            network.storeBytes(of: flags.bigEndian, toByteOffset: 6, as: UInt16.self)
            network.storeBytes(of: timeToLiveAndProtocol.bigEndian, toByteOffset: 8, as: UInt16.self)
            network.storeBytes(of: ipHeaderChecksum.bigEndian, toByteOffset: 10, as: UInt16.self)
            source.store(networkBytesAt: network + 12)
            destination.store(networkBytesAt: network + 16)
        case let (.v6(source), .v6(destination)):
            // Version 6, traffic class and flow label 0: the request's are its own (RFC 6437).
            network.storeBytes(of: UInt32(0x6000_0000).bigEndian, as: UInt32.self)
            network.storeBytes(of: udpLength.bigEndian, toByteOffset: 4, as: UInt16.self)
            network.storeBytes(of: IPProtocol.udp, toByteOffset: 6, as: UInt8.self)
            network.storeBytes(of: UInt8(64), toByteOffset: 7, as: UInt8.self)
            source.store(networkBytesAt: network + 8)
            destination.store(networkBytesAt: network + 24)
        default:
            preconditionFailure("UDP stage: reply families checked before")
        }
        // The header's words from their values and the payload from memory: reading back the
        // header just stored would stall store forwarding.
        let checksum: UInt16
        if let received = unchangedPayload {
            // Swapped endpoints sum the same words in another order: the checksum stays.
            checksum = received.headerSum.map {
                InternetChecksum.update(received.checksum, oldSum: $0, newSum: Self.headerSum(from: from, to: to, udpLength: udpLength))
            } ?? received.checksum
        } else {
            checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: udpBytes.baseAddress! + 8, count: payloadLength),
                                                 initial: Self.headerSum(from: from, to: to, udpLength: udpLength))
        }
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        udpBytes.storeBytes(of: (checksum == 0 ? 0xFFFF : checksum).bigEndian, toByteOffset: 6, as: UInt16.self)
    }

    @inlinable
    mutating func count(_ error: PacketError) {
        switch error {
        case .notUDP: _counters.notUDP &+= 1
        case .fragment: _counters.fragments &+= 1
        default: _counters.malformed[Int(error.rawValue)] &+= 1
        }
    }
}
