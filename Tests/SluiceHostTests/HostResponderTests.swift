import SluiceCore
@testable import SluiceHost
import SluicePackets
import Testing

@Suite struct HostResponderTests {
    let harness: Harness
    let mac = MACAddress(2, 0x73, 0, 0, 0, 2)
    let peerMAC = MACAddress(2, 0, 0, 0, 0, 1)
    init() throws { harness = try Harness() }

    func responder(linkLayer: LinkLayer = .ethernet) -> HostResponder {
        let configuration = HostConfiguration(addresses: [.v4(IPv4Address(198, 18, 1, 2)), .v6(IPv6Address("2001:2:1::2")!)],
                                              mac: linkLayer == .ethernet ? mac : nil, mtu: 1500)
        return HostResponder(configuration: configuration, linkLayer: linkLayer, pool: harness.pool)
    }

    func admit(_ responder: inout HostResponder, _ bytes: [UInt8], at now: Instant = Instant(nanoseconds: 1)) -> (HostDisposition, [UInt8]) {
        var packet = harness.packet(bytes)
        let disposition = responder.admit(&packet, now: now)
        let result = Harness.bytes(packet)
        harness.pool.release(packet)
        return (disposition, result)
    }

    func ethernet(to destination: MACAddress, type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: 14)
        frame.withUnsafeMutableBytes { destination.store(networkBytesAt: $0.baseAddress!); peerMAC.store(networkBytesAt: $0.baseAddress! + 6) }
        frame[12] = UInt8(type >> 8); frame[13] = UInt8(type & 0xFF)
        return frame + payload
    }

    @Test func anARPRequestForTheHostIsAnswered() {
        var responder = responder()
        var arp = [UInt8](repeating: 0, count: 28)
        _ = arp.withUnsafeMutableBytes {
            ARPPacket.emit(into: $0.baseAddress!, operation: ARPPacket.request, senderMAC: peerMAC,
                           senderIP: IPv4Address(198, 18, 1, 1), targetMAC: MACAddress(rawValue: 0), targetIP: IPv4Address(198, 18, 1, 2))
        }
        let (disposition, reply) = admit(&responder, ethernet(to: .broadcast, type: 0x0806, arp))
        #expect(disposition == .answer)
        reply.withUnsafeBytes { bytes in
            let base = UnsafeMutableRawPointer(mutating: bytes.baseAddress!)
            #expect(MACAddress(networkBytesAt: base) == peerMAC && MACAddress(networkBytesAt: base + 6) == mac)
            let arp = try! ARPPacket(UnsafeMutableRawBufferPointer(start: base + 14, count: 28))
            #expect(arp.operation == ARPPacket.reply && arp.senderHardwareAddress == mac)
            #expect(arp.senderProtocolAddress == IPv4Address(198, 18, 1, 2) && arp.targetProtocolAddress == IPv4Address(198, 18, 1, 1))
        }
        // Sent from another MAC than the one it names (a proxy, a bridge): the answer goes to the named one, as arp_send sends it.
        var proxied = ethernet(to: .broadcast, type: 0x0806, arp)
        proxied[6..<12] = [0x02, 7, 7, 7, 7, 7]
        let (_, proxiedReply) = admit(&responder, proxied)
        #expect(Array(proxiedReply.prefix(6)) == Array(proxied[(14 + 8)..<(14 + 14)]), "to the request's sender hardware address")
        // Behind a priority tag (VLAN ID 0, priority 5): the same answer, as from the kernel.
        var tagged = ethernet(to: .broadcast, type: 0x0806, arp)
        tagged.insert(contentsOf: [0x81, 0x00, 0xA0, 0x00], at: 12)
        let (taggedDisposition, taggedReply) = admit(&responder, tagged)
        #expect(taggedDisposition == .answer && taggedReply.count >= 42 && taggedReply[12] == 0x08 && taggedReply[13] == 0x06)
        // For another address: no answer.
        arp.withUnsafeMutableBytes { IPv4Address(198, 18, 1, 3).store(networkBytesAt: $0.baseAddress! + 24) }
        #expect(admit(&responder, ethernet(to: .broadcast, type: 0x0806, arp)).0 == .consumed)
        #expect(responder.counters.arpReplies == 3 && responder.counters.ignoredControl == 1)
    }

    func solicitation(hopLimit: UInt8 = 255, source: IPv6Address = IPv6Address("2001:2:1::1")!,
                      destination: IPv6Address = IPv6Address("ff02::1:ff00:2")!, options: [UInt8] = []) -> [UInt8] {
        let target = IPv6Address("2001:2:1::2")!
        let length = 24 + options.count
        var packet = [UInt8](repeating: 0, count: 40 + 24) + options
        packet.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress!
            base.storeBytes(of: UInt32(0x6000_0000).bigEndian, as: UInt32.self)
            base.storeBytes(of: UInt16(length).bigEndian, toByteOffset: 4, as: UInt16.self)
            base.storeBytes(of: UInt8(58), toByteOffset: 6, as: UInt8.self)
            base.storeBytes(of: hopLimit, toByteOffset: 7, as: UInt8.self)
            source.store(networkBytesAt: base + 8)
            destination.store(networkBytesAt: base + 24)
            base.storeBytes(of: UInt8(135), toByteOffset: 40, as: UInt8.self)
            target.store(networkBytesAt: base + 48)
            let pseudo = InternetChecksum.pseudoHeaderSum(source: source, destination: destination, nextHeader: 58, length: length)
            let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: base + 40, count: length), initial: pseudo)
            base.storeBytes(of: checksum.bigEndian, toByteOffset: 42, as: UInt16.self)
        }
        return ethernet(to: MACAddress(0x33, 0x33, 0xFF, 0, 0, 2), type: 0x86DD, packet)
    }

    @Test("neighbour solicitations RFC 4861 (7.1.1) says to discard get no advertisement, as from the kernel")
    func invalidSolicitationsAreIgnored() {
        var responder = responder()
        let sourceLinkLayer: [UInt8] = [1, 1, 2, 0, 0, 0, 0, 1]
        let (withOption, advertisement) = admit(&responder, solicitation(options: sourceLinkLayer))
        #expect(withOption == .answer, "a source link-layer address is fine")
        // Answered to that address (RFC 4861 7.2.4), as the kernel answers, not to the frame's source.
        #expect(Array(advertisement.prefix(6)) == [2, 0, 0, 0, 0, 1], "\(Array(advertisement.prefix(12)))")
        #expect(admit(&responder, solicitation(destination: IPv6Address("2001:2:1::2")!)).0 == .answer, "unicast to the target")
        let discarded: [(String, [UInt8])] = [
            ("duplicate address detection with a source link-layer address", solicitation(source: .any, options: sourceLinkLayer)),
            ("duplicate address detection to the unicast address", solicitation(source: .any, destination: IPv6Address("2001:2:1::2")!)),
            ("a multicast source", solicitation(source: IPv6Address("ff02::1")!)),
            ("an option of length zero", solicitation(options: [1, 0, 2, 0, 0, 0, 0, 1])),
            ("an option past the end", solicitation(options: [1, 2, 2, 0, 0, 0, 0, 1])),
            ("another address's solicited-node group", solicitation(destination: IPv6Address("ff02::1:ff00:3")!)),
        ]
        for (why, frame) in discarded {
            #expect(admit(&responder, frame).0 == .consumed, "\(why)")
        }
        #expect(responder.counters.neighborAdvertisements == 2 && responder.counters.ignoredControl == UInt64(discarded.count))
    }

    @Test func aNeighbourSolicitationForTheHostIsAdvertised() {
        var responder = responder()
        let (disposition, reply) = admit(&responder, solicitation())
        #expect(disposition == .answer)
        #expect(reply.count == 14 + 40 + 32)
        #expect(reply[14 + 7] == 255 && reply[14 + 40] == 136 && reply[14 + 44] == 0x60)
        reply.withUnsafeBytes { bytes in
            let base = bytes.baseAddress!
            #expect(MACAddress(networkBytesAt: base) == peerMAC)
            #expect(MACAddress(networkBytesAt: base + 14 + 40 + 26) == mac, "target link-layer address option")
            let source = IPv6Address(networkBytesAt: base + 14 + 8)
            let destination = IPv6Address(networkBytesAt: base + 14 + 24)
            #expect(source == IPv6Address("2001:2:1::2")! && destination == IPv6Address("2001:2:1::1")!)
            let pseudo = InternetChecksum.pseudoHeaderSum(source: source, destination: destination, nextHeader: 58, length: 32)
            #expect(InternetChecksum.checksum(UnsafeRawBufferPointer(start: base + 54, count: 32), initial: pseudo) == 0)
        }
        // One that crossed a router: no answer.
        #expect(admit(&responder, solicitation(hopLimit: 64)).0 == .consumed)
        #expect(responder.counters.neighborAdvertisements == 1 && responder.counters.ignoredControl == 1)
    }

    @Test("another host's duplicate address detection for the host's address is answered to all nodes (RFC 4862 5.4.3)")
    func duplicateAddressDetectionIsDefended() {
        var responder = responder()
        let (disposition, reply) = admit(&responder, solicitation(source: .any))
        #expect(disposition == .answer)
        #expect(reply.count == 14 + 40 + 32 && reply[14 + 40] == 136 && reply[14 + 44] == 0x20, "override, not solicited")
        reply.withUnsafeBytes { bytes in
            let base = bytes.baseAddress!
            #expect(MACAddress(networkBytesAt: base) == MACAddress(0x33, 0x33, 0, 0, 0, 1))
            let destination = IPv6Address(networkBytesAt: base + 14 + 24)
            #expect(destination == IPv6Address("ff02::1")!)
            let pseudo = InternetChecksum.pseudoHeaderSum(source: IPv6Address("2001:2:1::2")!, destination: destination, nextHeader: 58, length: 32)
            #expect(InternetChecksum.checksum(UnsafeRawBufferPointer(start: base + 54, count: 32), initial: pseudo) == 0)
        }
    }

    @Test("an ARP request from the host's own address (another host claiming it) gets no reply, as from the kernel")
    func aConflictingClaimIsNotAnswered() {
        var responder = responder()
        var arp = [UInt8](repeating: 0, count: 28)
        _ = arp.withUnsafeMutableBytes {
            ARPPacket.emit(into: $0.baseAddress!, operation: ARPPacket.request, senderMAC: peerMAC,
                           senderIP: IPv4Address(198, 18, 1, 2), targetMAC: MACAddress(rawValue: 0), targetIP: IPv4Address(198, 18, 1, 2))
        }
        #expect(admit(&responder, ethernet(to: .broadcast, type: 0x0806, arp)).0 == .consumed)
        #expect(responder.counters.arpReplies == 0)
    }

    @Test("an ARP request from a martian sender (loopback, multicast, broadcast, 0/8) gets no reply; a probe from 0.0.0.0 does")
    func martianSendersAreNotAnswered() {
        var responder = responder()
        func request(from sender: IPv4Address) -> [UInt8] {
            var arp = [UInt8](repeating: 0, count: 28)
            _ = arp.withUnsafeMutableBytes {
                ARPPacket.emit(into: $0.baseAddress!, operation: ARPPacket.request, senderMAC: peerMAC,
                               senderIP: sender, targetMAC: MACAddress(rawValue: 0), targetIP: IPv4Address(198, 18, 1, 2))
            }
            return ethernet(to: .broadcast, type: 0x0806, arp)
        }
        for sender in [IPv4Address(127, 0, 0, 1), IPv4Address(224, 0, 0, 1), IPv4Address(255, 255, 255, 255), IPv4Address(0, 1, 2, 3)] {
            #expect(admit(&responder, request(from: sender)).0 == .consumed, "\(sender)")
        }
        #expect(admit(&responder, request(from: .any)).0 == .answer, "a probe (RFC 5227)")
    }

    /// A UDP datagram from `source` to `destination` over bare IP, checksums right (or the UDP one wrong).
    func datagram(from source: String, to destination: String, payload: Int = 40, corrupt: Bool = false) -> [UInt8] {
        var bytes = Harness.datagram(from: source, to: destination, payload: payload)
        if corrupt { bytes[bytes.count - 1] ^= 1 }
        return bytes
    }

    func portResponder() -> HostResponder {
        var configuration = HostConfiguration(addresses: [.v4(IPv4Address(198, 18, 1, 2)), .v6(IPv6Address("2001:2:1::2")!)], mtu: 1500)
        configuration.udpPort = 9000
        return HostResponder(configuration: configuration, linkLayer: .ip, pool: harness.pool)
    }

    @Test("UDP to another port gets ICMP port unreachable quoting it (IPv4 and IPv6); the service's port goes on to it")
    func aClosedPortIsUnreachable() {
        var responder = portResponder()
        #expect(admit(&responder, datagram(from: "198.18.1.1:4000", to: "198.18.1.2:9000")).0 == .service)
        let request = datagram(from: "198.18.1.1:4000", to: "198.18.1.2:9001")
        let (disposition, reply) = admit(&responder, request)
        #expect(disposition == .answer)
        #expect(Harness.isIPv4HeaderValid(reply) && reply[9] == 1 && reply[1] == 0xC0)
        #expect(Array(reply[12..<16]) == [198, 18, 1, 2] && Array(reply[16..<20]) == [198, 18, 1, 1])
        #expect(reply[20] == 3 && reply[21] == 3 && Array(reply[28...]) == request)
        #expect(reply[20...].withUnsafeBytes { InternetChecksum.checksum($0) } == 0)

        let request6 = datagram(from: "[2001:2:1::1]:4000", to: "[2001:2:1::2]:53", payload: 2000)
        let (disposition6, reply6) = admit(&responder, request6)
        #expect(disposition6 == .answer)
        #expect(reply6.count == 1280 && reply6[6] == 58 && reply6[40] == 1 && reply6[41] == 4)
        #expect(Array(reply6[48...]) == Array(request6[..<1232]), "as much as fits 1280 bytes")
        reply6.withUnsafeBytes { bytes in
            let base = bytes.baseAddress!
            let pseudo = InternetChecksum.pseudoHeaderSum(source: IPv6Address(networkBytesAt: base + 8), destination: IPv6Address(networkBytesAt: base + 24),
                                                          nextHeader: 58, length: 1240)
            #expect(InternetChecksum.checksum(UnsafeRawBufferPointer(start: base + 40, count: 1240), initial: pseudo) == 0)
        }
        #expect(responder.counters.portUnreachable == 2)
    }

    /// An IPv4 TCP segment from 198.18.1.1:4000 to 198.18.1.2:80 with `flags`, `sequence`,
    /// `acknowledgment` and `payload` bytes of data, its checksums right.
    func segment(flags: UInt8, sequence: UInt32, acknowledgment: UInt32 = 0, payload: Int = 0) -> [UInt8] {
        var bytes: [UInt8] = [0x45, 0, 0, UInt8(40 + payload), 0, 1, 0, 0, 64, 6, 0, 0, 198, 18, 1, 1, 198, 18, 1, 2,
                              0x0F, 0xA0, 0, 80] + withUnsafeBytes(of: sequence.bigEndian, Array.init)
            + withUnsafeBytes(of: acknowledgment.bigEndian, Array.init) + [0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]
            + [UInt8](repeating: 7, count: payload)
        let header = bytes[..<20].withUnsafeBytes { InternetChecksum.checksum($0) }
        bytes[10] = UInt8(header >> 8); bytes[11] = UInt8(header & 0xFF)
        let pseudo = InternetChecksum.pseudoHeaderSum(source: IPv4Address(198, 18, 1, 1), destination: IPv4Address(198, 18, 1, 2),
                                                      protocol: 6, length: 20 + payload)
        let checksum = bytes[20...].withUnsafeBytes { InternetChecksum.checksum($0, initial: pseudo) }
        bytes[36] = UInt8(checksum >> 8); bytes[37] = UInt8(checksum & 0xFF)
        return bytes
    }

    @Test("TCP gets a reset as from a host with no listener: RST+ACK of a SYN's sequence space, RST at an ACK's number, nothing for a reset")
    func tcpIsReset() throws {
        var responder = portResponder()
        let (disposition, reply) = admit(&responder, segment(flags: 0x02, sequence: 1000))
        #expect(disposition == .answer && Harness.isIPv4HeaderValid(reply) && reply.count == 40 && reply[9] == 6)
        #expect(Array(reply[12..<20]) == [198, 18, 1, 2, 198, 18, 1, 1] && Array(reply[20..<24]) == [0, 80, 0x0F, 0xA0])
        // As the kernel's reset: DF (its control socket does path MTU discovery) and identification 0.
        #expect(Array(reply[4..<8]) == [0, 0, 0x40, 0x00] && reply[8] == 64, "\(Array(reply[..<20]))")
        #expect(Array(reply[24..<28]) == [0, 0, 0, 0] && Array(reply[28..<32]) == [0, 0, 0x03, 0xE9] && reply[33] == 0x14)
        let pseudo = InternetChecksum.pseudoHeaderSum(source: IPv4Address(198, 18, 1, 2), destination: IPv4Address(198, 18, 1, 1),
                                                      protocol: 6, length: 20)
        #expect(reply[20...].withUnsafeBytes { InternetChecksum.checksum($0, initial: pseudo) } == 0)
        // Data with FIN, no ACK: acknowledged whole, FIN counted.
        let (_, finReply) = admit(&responder, segment(flags: 0x01, sequence: 1000, payload: 10))
        #expect(Array(finReply[28..<32]) == [0, 0, 0x03, 0xF3] && finReply[33] == 0x14)
        // With ACK: a bare reset at the number acknowledged.
        let (_, ackReply) = admit(&responder, segment(flags: 0x10, sequence: 5, acknowledgment: 0xDEAD_BEEF))
        #expect(Array(ackReply[24..<28]) == [0xDE, 0xAD, 0xBE, 0xEF] && ackReply[33] == 0x04)
        // Never a reset for a reset, nor for a bad checksum.
        #expect(admit(&responder, segment(flags: 0x04, sequence: 5)).0 == .consumed)
        var corrupt = segment(flags: 0x02, sequence: 1)
        corrupt[30] ^= 1
        #expect(admit(&responder, corrupt).0 == .consumed)
        #expect(responder.counters.tcpResets == 3 && responder.counters.badChecksum == 1 && responder.counters.closedPort == 1)
    }

    @Test("no port unreachable for a bad checksum, a group source, or past the per-peer rate (a burst of six, then one a second)")
    func closedPortErrorsAreBounded() {
        var responder = portResponder()
        #expect(admit(&responder, datagram(from: "198.18.1.1:4000", to: "198.18.1.2:9001", corrupt: true)).0 == .consumed)
        #expect(responder.counters.badChecksum == 1)
        #expect(admit(&responder, datagram(from: "224.0.0.5:4000", to: "198.18.1.2:9001")).0 == .consumed)
        var answered = 0
        for _ in 0..<20 where admit(&responder, datagram(from: "198.18.1.1:4000", to: "198.18.1.2:9001")).0 == .answer { answered += 1 }
        #expect(answered == 6)
        #expect(admit(&responder, datagram(from: "198.18.1.3:4000", to: "198.18.1.2:9001")).0 == .answer, "another peer has its own burst")
        #expect(responder.counters.portUnreachable == 7 && responder.counters.closedPort == 15)
    }

    @Test("the kernel's ICMP settings hold: icmp_ratelimit 0 lifts the per-peer bound, icmp_msgs_burst and icmp_msgs_per_sec bound the host")
    func icmpErrorLimitsFollowTheSettings() {
        var configuration = HostConfiguration(addresses: [.v4(IPv4Address(198, 18, 1, 2))], mtu: 1500)
        configuration.udpPort = 9000
        configuration.icmpErrors.peerIntervalIPv4 = .zero
        configuration.icmpErrors.burst = 10
        configuration.icmpErrors.messagesPerSecond = 100
        var responder = HostResponder(configuration: configuration, linkLayer: .ip, pool: harness.pool)
        func answered(_ count: Int, at now: Instant) -> Int {
            (0..<count).count { _ in admit(&responder, datagram(from: "198.18.1.1:4000", to: "198.18.1.2:9001"), at: now).0 == .answer }
        }
        #expect(answered(20, at: Instant(nanoseconds: 1)) == 10, "a burst of ten, whatever the peer")
        #expect(answered(5, at: Instant(nanoseconds: 10_000_001)) == 1, "one more each 10 ms")
        #expect(answered(5, at: Instant(nanoseconds: 60_000_001)) == 5)
        // icmp_msgs_per_sec 0: the kernel sends none at all.
        configuration.icmpErrors.messagesPerSecond = 0
        responder = HostResponder(configuration: configuration, linkLayer: .ip, pool: harness.pool)
        #expect(answered(5, at: Instant(nanoseconds: 2_000_000_000)) == 0)
    }

    @Test("a datagram not whole in time whose first fragment came gets ICMP time exceeded quoting that fragment as it came (RFC 792, RFC 8200 4.5)")
    func reassemblyTimeoutIsAnswered() {
        var responder = responder(linkLayer: .ip)
        let start = Instant(nanoseconds: 1_000_000_000)
        let whole4 = Harness.datagram(from: "198.18.1.1:4000", to: "198.18.1.2:9000", payload: 3000)
        let first4 = Harness.fragment4(whole4, offset: 0, count: 1480, more: true)
        let whole6 = Harness.datagram(from: "[2001:2:1::1]:4000", to: "[2001:2:1::2]:9000", payload: 3000)
        let first6 = Harness.fragment6(whole6, offset: 0, count: 1448, more: true)
        // A datagram of which only a later fragment came: dropped in silence.
        let later4 = Harness.fragment4(whole4, identification: 0x999, offset: 1480, count: 1480, more: true)
        for fragment in [first4, first6, later4] { #expect(admit(&responder, fragment, at: start).0 == .consumed) }
        var output = PacketBatch(pool: harness.pool, capacity: 8)
        responder.expireReassembly(now: start + .seconds(29), into: &output)
        let notYet = output.count
        #expect(notYet == 0, "not yet")
        responder.expireReassembly(now: start + .seconds(31), into: &output)
        let afterIPv4 = output.count
        #expect(afterIPv4 == 1)
        if afterIPv4 == 1 {
            let error = Harness.bytes(output[0])
            #expect(Harness.isIPv4HeaderValid(error) && error[9] == 1 && Array(error[16..<20]) == [198, 18, 1, 1])
            #expect(error[20] == 11 && error[21] == 1 && error.count == 576)
            #expect(Array(error[28...]) == Array(first4.prefix(548)), "the first fragment, header and all")
        }
        output.releaseAll()
        responder.expireReassembly(now: start + .seconds(61), into: &output)
        let afterIPv6 = output.count
        #expect(afterIPv6 == 1)
        if afterIPv6 == 1 {
            let error = Harness.bytes(output[0])
            #expect(error[6] == 58 && error[40] == 3 && error[41] == 1 && error.count == 1280)
            #expect(Array(error[48...]) == Array(first6.prefix(1232)), "the first fragment, its fragment header back in place")
        }
        output.releaseAll()
        #expect(responder.counters.timeExceeded == 2 && responder.reassembler.counters.timedOut == 3)
        #expect(responder.reassembler.activeDatagrams == 0)
    }

    /// A UDP datagram to the service's port behind one 8-byte extension header (`next`, its
    /// bytes after the next-header and length fields given).
    func datagram(behind next: UInt8, _ body: [UInt8], to destination: String = "[2001:2:1::2]:9000") -> [UInt8] {
        let whole = Harness.datagram(from: "[2001:2:1::1]:4000", to: destination, payload: 16)
        var header = Array(whole[0..<40])
        header[6] = next
        let length = whole.count - 40 + 8
        header[4] = UInt8(length >> 8); header[5] = UInt8(length & 0xFF)
        return header + [17, 0] + body + whole[40...]
    }

    @Test("extension headers RFC 8200 answers with parameter problem get it, pointing where the kernel points; the rest go on or are dropped")
    func extensionHeadersEarnParameterProblems() {
        var responder = portResponder()
        let cases: [(String, [UInt8], (code: UInt8, pointer: UInt32)?)] = [
            ("an unknown option marked 10", datagram(behind: 60, [0x9E, 4, 0, 0, 0, 0]), (2, 42)),
            ("an unknown option marked 11", datagram(behind: 60, [0xDE, 4, 0, 0, 0, 0]), (2, 42)),
            ("after PadN, an unknown hop-by-hop option marked 10", datagram(behind: 0, [1, 0, 0x9E, 2, 0, 0]), (2, 44)),
            ("a routing header of type 0 with a segment left", datagram(behind: 43, [0, 1, 0, 0, 0, 0]), (0, 42)),
            ("a routing header of type 99 with a segment left", datagram(behind: 43, [99, 1, 0, 0, 0, 0]), (0, 42)),
            ("an unknown option marked 00: skipped", datagram(behind: 60, [0x1E, 4, 0, 0, 0, 0]), nil),
            ("a routing header with no segment left", datagram(behind: 43, [0, 0, 0, 0, 0, 0]), nil),
        ]
        for (why, packet, expected) in cases {
            let (disposition, reply) = admit(&responder, packet)
            if let expected {
                #expect(disposition == .answer, "\(why)")
                guard reply.count >= 48 else { continue }
                #expect(reply[6] == 58 && reply[40] == 4 && reply[41] == expected.code, "\(why)")
                #expect(reply[44..<48].reduce(0) { $0 << 8 | UInt32($1) } == expected.pointer, "\(why)")
                #expect(Array(reply[48...]) == packet, "\(why): the packet quoted whole")
            } else {
                #expect(disposition == .service, "\(why)")
            }
        }
        #expect(responder.counters.parameterProblems == 5)
        // An option marked 01 ends the packet in silence, whatever it carries: a datagram, or a
        // ping the host would otherwise answer.
        var ping = datagram(behind: 60, [0x5E, 4, 0, 0, 0, 0])
        ping[40] = 58
        var echo: [UInt8] = [128, 0, 0, 0, 0, 1, 0, 1] + Array(ping[56...])
        let pseudo = InternetChecksum.pseudoHeaderSum(source: IPv6Address("2001:2:1::1")!, destination: IPv6Address("2001:2:1::2")!,
                                                      nextHeader: 58, length: echo.count)
        let sum = echo.withUnsafeBytes { InternetChecksum.checksum($0, initial: pseudo) }
        echo[2] = UInt8(sum >> 8); echo[3] = UInt8(sum & 0xFF)
        ping = Array(ping[..<48]) + echo
        var clean = ping
        clean[42] = 0x1E   // the same option marked 00: the ping is answered
        #expect(admit(&responder, clean).0 == .answer, "the ping itself is sound")
        for packet in [datagram(behind: 60, [0x5E, 4, 0, 0, 0, 0]), ping] {
            #expect(admit(&responder, packet).0 == .consumed)
        }
        #expect(responder.counters.refusedOptions == 2 && responder.counters.echoReplies == 1)
    }

    @Test("fragments RFC 8200 4.5 refuses get the kernel's parameter problem: a short non-final one, one past 65535 bytes, a first one without the upper-layer header (RFC 7112)")
    func refusedFragmentsEarnParameterProblems() {
        var responder = portResponder()
        let whole = Harness.datagram(from: "[2001:2:1::1]:4000", to: "[2001:2:1::2]:9000", payload: 100)
        let headerOnly = Harness.fragment6(datagram(behind: 60, [1, 4, 0, 0, 0, 0]), offset: 0, count: 8, more: true)
        var beyond = Harness.fragment6(whole, offset: 0, count: 16, more: false)
        beyond[42] = 0xFF; beyond[43] = 0xF8   // offset 65528: 16 bytes reach past 65535
        let cases: [(String, [UInt8], code: UInt8, pointer: UInt32)] = [
            ("12 bytes, more to come", Harness.fragment6(whole, offset: 0, count: 12, more: true), 0, 4),
            ("past 65535 bytes", beyond, 0, 42),
            ("a first fragment ending before UDP", headerOnly, 3, 0),
        ]
        for (why, packet, code, pointer) in cases {
            let (disposition, reply) = admit(&responder, packet)
            #expect(disposition == .answer && reply.count >= 48, "\(why)")
            guard reply.count >= 48 else { continue }
            #expect(reply[40] == 4 && reply[41] == code, "\(why)")
            #expect(reply[44..<48].reduce(0) { $0 << 8 | UInt32($1) } == pointer, "\(why)")
        }
        #expect(responder.counters.parameterProblems == 3 && responder.reassembler.activeDatagrams == 0)
        // The whole header chain in the first fragment: taken in as usual.
        #expect(admit(&responder, Harness.fragment6(whole, offset: 0, count: 16, more: true)).0 == .consumed)
        #expect(responder.reassembler.activeDatagrams == 1)
    }

    @Test("behind extension headers and IPv4 options, a closed port and an unknown protocol are answered as without them")
    func closedPortsAndProtocolsBehindOptions() {
        var responder = portResponder()
        let closed = datagram(behind: 60, [1, 4, 0, 0, 0, 0], to: "[2001:2:1::2]:9001")
        let (disposition, reply) = admit(&responder, closed)
        #expect(disposition == .answer && reply.count == 48 + closed.count && reply[40] == 1 && reply[41] == 4, "port unreachable")
        var unknown = datagram(behind: 60, [1, 4, 0, 0, 0, 0])
        unknown[40] = 132
        let (refused, problem) = admit(&responder, unknown)
        #expect(refused == .answer && problem.count >= 48 && problem[40] == 4 && problem[41] == 1, "parameter problem, next header")
        #expect(problem.count >= 48 && problem[44..<48].reduce(0) { $0 << 8 | UInt32($1) } == 40, "at the destination options' next header")
        // Four NOPs (no harm to the kernel) in front of a datagram to a closed port.
        var plain = Harness.datagram(from: "198.18.1.1:4000", to: "198.18.1.2:9001", payload: 16)
        var header = Array(plain[0..<20]) + [1, 1, 1, 1]
        header[0] = 0x46
        let total = header.count + plain.count - 20
        header[2] = UInt8(total >> 8); header[3] = UInt8(total & 0xFF)
        header[10] = 0; header[11] = 0
        let checksum = header.withUnsafeBytes { InternetChecksum.checksum($0) }
        header[10] = UInt8(checksum >> 8); header[11] = UInt8(checksum & 0xFF)
        plain = header + plain[20...]
        let (answered, unreachable) = admit(&responder, plain)
        #expect(answered == .answer && unreachable.count == 28 + plain.count && unreachable[20] == 3 && unreachable[21] == 3)
        #expect(responder.counters.portUnreachable == 2 && responder.counters.protocolUnreachable == 1)
    }

    @Test("an IPv4 header under 20 bytes is dropped unanswered; an ICMP error keeps the offending packet's TOS bits under precedence 6")
    func shortHeadersAndErrorTOS() {
        var responder = portResponder()
        var closed = Harness.datagram(from: "198.18.1.1:4000", to: "198.18.1.2:9001", payload: 16)
        closed[1] = 0x10   // low delay
        closed[10] = 0; closed[11] = 0
        var checksum = closed[0..<20].withUnsafeBytes { InternetChecksum.checksum($0) }
        closed[10] = UInt8(checksum >> 8); closed[11] = UInt8(checksum & 0xFF)
        let (answered, unreachable) = admit(&responder, closed)
        #expect(answered == .answer && unreachable.count > 20 && unreachable[1] == 0xD0, "TOS \(unreachable.count > 1 ? unreachable[1] : 0)")
        // IHL 4, its 16-byte header summed right: ip_rcv_core drops it before anything answers.
        var short = closed
        short[0] = 0x44
        short[10] = 0; short[11] = 0
        checksum = short[0..<16].withUnsafeBytes { InternetChecksum.checksum($0) }
        short[10] = UInt8(checksum >> 8); short[11] = UInt8(checksum & 0xFF)
        let (dropped, _) = admit(&responder, short)
        #expect(dropped == .consumed && responder.counters.malformed == 1 && responder.counters.portUnreachable == 1)
    }

    @Test("a TAP frame from a group MAC (broadcast, multicast) is dropped: an answer would reach the whole link")
    func aGroupSourceMACIsDropped() {
        var responder = responder()
        let ping = echoRequest(to: IPv4Address(198, 18, 1, 2))
        var frame = ethernet(to: mac, type: 0x0800, ping)
        let (answered, _) = admit(&responder, frame)
        #expect(answered == .answer)
        for i in 6..<12 { frame[i] = 0xFF }
        let (dropped, _) = admit(&responder, frame)
        #expect(dropped == .consumed && responder.counters.malformed == 1 && responder.counters.echoReplies == 1)
    }

    @Test("ICMPv6 errors to a peer are spaced by the interval alone, on a /64 as on no known prefix, as Linux 6.18 spaces them")
    func icmpv6ErrorsAreSpacedEvenly() {
        var configuration = HostConfiguration(addresses: [.v6(IPv6Address("2001:2:1::2")!)], mtu: 1500)
        configuration.udpPort = 9000
        var responder = HostResponder(configuration: configuration, linkLayer: .ip, pool: harness.pool)
        func answered(from peer: String, over seconds: Int) -> Int {
            var count = 0
            // One datagram every 10 ms, from the start of the second second on (a full burst first).
            for tick in 0..<(seconds * 100) {
                let now = Instant(nanoseconds: UInt64(1_000_000_000 + tick * 10_000_000))
                if admit(&responder, datagram(from: peer, to: "[2001:2:1::2]:9001"), at: now).0 == .answer { count += 1 }
            }
            return count
        }
        // Over the two seconds: a burst of six, then one a second, whatever the peer's prefix.
        #expect(answered(from: "[2001:2:1::1]:4000", over: 2) == 6 + 1)
        #expect(answered(from: "[2001:2:9::1]:4000", over: 2) == 6 + 1)
    }

    func echoRequest(to destination: IPv4Address, from source: IPv4Address = IPv4Address(198, 18, 1, 1), corrupt: Bool = false) -> [UInt8] {
        var packet = [UInt8](repeating: 0, count: 20 + 16)
        packet.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress!
            _ = IPv4Header.emit(into: base, source: source, destination: destination,
                                protocol: 1, payloadLength: 16, identification: 1)
            base.storeBytes(of: UInt8(8), toByteOffset: 20, as: UInt8.self)
            for i in 28..<36 { base.storeBytes(of: UInt8(i), toByteOffset: i, as: UInt8.self) }
            let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: base + 20, count: 16))
            base.storeBytes(of: (corrupt ? checksum ^ 1 : checksum).bigEndian, toByteOffset: 22, as: UInt16.self)
        }
        return packet
    }

    @Test func anEchoRequestIsAnsweredOverTUN() {
        var responder = responder(linkLayer: .ip)
        let (disposition, reply) = admit(&responder, echoRequest(to: IPv4Address(198, 18, 1, 2)))
        #expect(disposition == .answer)
        #expect(reply[20] == 0 && Harness.isIPv4HeaderValid(reply))
        #expect(reply[20...].withUnsafeBytes { InternetChecksum.checksum($0) } == 0)
        #expect(Array(reply[12..<16]) == [198, 18, 1, 2] && Array(reply[16..<20]) == [198, 18, 1, 1])
        var withCode = echoRequest(to: IPv4Address(198, 18, 1, 2))
        withCode[21] = 7
        withCode[22...23] = [0, 0]
        let sum = withCode[20...].withUnsafeBytes { InternetChecksum.checksum($0) }
        withCode[22] = UInt8(sum >> 8); withCode[23] = UInt8(sum & 0xFF)
        let (answered, codeKept) = admit(&responder, withCode)
        #expect(answered == .answer && codeKept[20] == 0 && codeKept[21] == 7, "any code is answered, as Linux answers it, the code kept")
        #expect(codeKept[20...].withUnsafeBytes { InternetChecksum.checksum($0) } == 0)
        #expect(admit(&responder, echoRequest(to: IPv4Address(198, 18, 1, 255))).0 == .consumed, "a broadcast")
        #expect(admit(&responder, echoRequest(to: IPv4Address(198, 18, 1, 2), corrupt: true)).0 == .consumed)
        #expect(responder.counters.echoReplies == 2 && responder.counters.ignoredControl == 1 && responder.counters.badChecksum == 1)
    }

    @Test("the identifications of the host's packets count up per destination, not across them (RFC 7739), as Linux picks them")
    func identificationsArePerDestination() throws {
        var responder = responder(linkLayer: .ip)
        func identification(from peer: IPv4Address) -> UInt16 {
            let reply = admit(&responder, echoRequest(to: IPv4Address(198, 18, 1, 2), from: peer)).1
            return UInt16(reply[4]) << 8 | UInt16(reply[5])
        }
        // Another peer whose packets hash to another counter (1 in 2048 share one).
        func bucket(from source: IPv4Address, to destination: IPv4Address, protocolNumber: UInt8) -> Int {
            var header = [UInt8](repeating: 0, count: 20)
            header.withUnsafeMutableBytes {
                source.store(networkBytesAt: $0.baseAddress! + 12)
                destination.store(networkBytesAt: $0.baseAddress! + 16)
            }
            return header.withUnsafeBytes {
                IPIdentifiers.bucket(of: IPIdentifiers.hash(forHeaderAt: $0.baseAddress!, isIPv6: false, protocolNumber: protocolNumber))
            }
        }
        let host = IPv4Address(198, 18, 1, 2)
        let peer = try #require((7...99).map { IPv4Address(198, 18, 1, UInt8($0)) }.first {
            bucket(from: host, to: $0, protocolNumber: 1) != bucket(from: host, to: IPv4Address(198, 18, 1, 1), protocolNumber: 1)
        })
        let (first, other, second) = (identification(from: IPv4Address(198, 18, 1, 1)), identification(from: peer),
                                      identification(from: IPv4Address(198, 18, 1, 1)))
        #expect(second == first &+ 1, "one counter per destination")
        // With one counter for all, the other peer's would be the one between (the idle-scan side channel).
        #expect(other != first &+ 1 && other != first &+ 2, "\(first) \(other) \(second)")
        // The fragments of datagrams: the same, each datagram's fragments sharing one.
        var fragmenter = Fragmenter(mtu: 576)
        var identifications: [Set<UInt16>] = []
        let source = IPv4Address(198, 18, 0, 1)
        let otherDestination = try #require((3...99).map { IPv4Address(198, 18, 0, UInt8($0)) }.first {
            bucket(from: source, to: $0, protocolNumber: 17) != bucket(from: source, to: IPv4Address(198, 18, 0, 2), protocolNumber: 17)
        })
        for destination in ["198.18.0.2:9000", "\(otherDestination):9000", "198.18.0.2:9000"] {
            var fragments = PacketBatch(pool: harness.pool, capacity: 16)
            _ = fragmenter.fragment(harness.packet(Harness.datagram(from: "198.18.0.1:4000", to: destination, payload: 1000)),
                                    networkOffset: 0, into: &fragments)
            var seen = Set<UInt16>()
            fragments.takeAll { packet in
                let bytes = Harness.bytes(packet)
                seen.insert(UInt16(bytes[4]) << 8 | UInt16(bytes[5]))
                harness.pool.release(packet)
            }
            identifications.append(seen)
        }
        let ids = identifications.compactMap { $0.count == 1 ? $0.first : nil }
        #expect(ids.count == 3 && ids[2] == ids[0] &+ 1 && ids[1] != ids[0] &+ 1, "\(identifications)")
    }

    @Test("nothing answers a martian source, as the kernel drops it first: 0/8, loopback, the host's own address")
    func martianSourcesGetNoAnswer() {
        var responder = portResponder()
        for source in [IPv4Address(0, 1, 2, 3), IPv4Address(198, 18, 1, 2), IPv4Address(127, 0, 0, 9)] {
            #expect(admit(&responder, echoRequest(to: IPv4Address(198, 18, 1, 2), from: source)).0 == .consumed, "echo from \(source)")
        }
        #expect(admit(&responder, echoRequest(to: IPv4Address(198, 18, 1, 2))).0 == .answer)
        for source in ["0.1.2.3:4000", "198.18.1.2:4000"] {
            #expect(admit(&responder, datagram(from: source, to: "198.18.1.2:9001")).0 == .consumed, "UDP from \(source)")
        }
        #expect(admit(&responder, datagram(from: "[2001:2:1::2]:4000", to: "[2001:2:1::2]:9001")).0 == .consumed)
        #expect(responder.counters.echoReplies == 1 && responder.counters.portUnreachable == 0)
    }

    /// An ICMPv6 echo request from `source` to `destination` over bare IP.
    func echoRequest6(from source: String, to destination: String) -> [UInt8] {
        let (from, to) = (IPv6Address(source)!, IPv6Address(destination)!)
        var packet = [UInt8](repeating: 0, count: 40 + 16)
        _ = packet.withUnsafeMutableBytes { buffer in
            IPv6Header.emit(into: buffer.baseAddress!, source: from, destination: to, nextHeader: 58, payloadLength: 16)
        }
        packet[40] = 128
        for i in 44..<56 { packet[i] = UInt8(i) }
        let pseudo = InternetChecksum.pseudoHeaderSum(source: from, destination: to, nextHeader: 58, length: 16)
        let sum = packet[40...].withUnsafeBytes { InternetChecksum.checksum($0, initial: pseudo) }
        packet[42] = UInt8(sum >> 8); packet[43] = UInt8(sum & 0xFF)
        return packet
    }

    @Test("pings to all nodes and to the host's solicited-node group are answered from the host's address of the asker's scope, as from the kernel")
    func groupEchoRequestsAreAnswered() {
        var configuration = HostConfiguration(addresses: [.v6(IPv6Address("2001:2:1::2")!), .v6(IPv6Address("fe80::73:ff:fe00:2")!)],
                                              mtu: 1500)
        configuration.udpPort = 9000
        var responder = HostResponder(configuration: configuration, linkLayer: .ip, pool: harness.pool)
        for (source, destination, replyFrom) in [("2001:2:1::1", "ff02::1", "2001:2:1::2"), ("fe80::1", "ff02::1", "fe80::73:ff:fe00:2"),
                                                  ("2001:2:1::1", "ff02::1:ff00:2", "2001:2:1::2"), ("fe80::1", "fe80::73:ff:fe00:2", "fe80::73:ff:fe00:2")] {
            let (disposition, reply) = admit(&responder, echoRequest6(from: source, to: destination))
            #expect(disposition == .answer && reply.count == 56, "\(source) → \(destination)")
            guard reply.count == 56 else { continue }
            let from = reply.withUnsafeBytes { IPv6Address(networkBytesAt: UnsafeMutableRawPointer(mutating: $0.baseAddress! + 8)) }
            #expect(reply[40] == 129 && from == IPv6Address(replyFrom), "\(source) → \(destination)")
            let pseudo = InternetChecksum.pseudoHeaderSum(source: from, destination: IPv6Address(source)!, nextHeader: 58, length: 16)
            #expect(reply[40...].withUnsafeBytes { InternetChecksum.checksum($0, initial: pseudo) } == 0, "the reply's checksum")
        }
        #expect(admit(&responder, echoRequest6(from: "2001:2:1::1", to: "ff02::1:ff00:9")).0 == .consumed, "another address's group")
    }

    /// An echo request to the host over bare IP carrying `options` (padded by the caller).
    func echoRequest(options: [UInt8]) -> [UInt8] {
        let plain = echoRequest(to: IPv4Address(198, 18, 1, 2))
        var header = Array(plain[0..<20]) + options
        header[0] = 0x40 | UInt8(header.count / 4)
        let total = header.count + plain.count - 20
        header[2] = UInt8(total >> 8); header[3] = UInt8(total & 0xFF)
        header[10] = 0; header[11] = 0
        let checksum = header.withUnsafeBytes { InternetChecksum.checksum($0) }
        header[10] = UInt8(checksum >> 8); header[11] = UInt8(checksum & 0xFF)
        return header + plain[20...]
    }

    @Test("an echo request's record route comes back with the host's address in and out, as ping -R shows from Linux; a source route gets nothing")
    func recordRouteIsEchoed() {
        var responder = responder(linkLayer: .ip)
        // Record route of 39 bytes, the sender's address already in, then end of options.
        let recordRoute: [UInt8] = [7, 39, 8, 198, 18, 1, 1] + [UInt8](repeating: 0, count: 32) + [0]
        let request = echoRequest(options: recordRoute)
        let (disposition, reply) = admit(&responder, request)
        #expect(disposition == .answer)
        #expect(reply[0] == 0x4F && Harness.isIPv4HeaderValid(reply) && reply.count == request.count)
        #expect(Array(reply[20..<23]) == [7, 39, 16], "two entries added")
        #expect(Array(reply[23..<35]) == [198, 18, 1, 1, 198, 18, 1, 2, 198, 18, 1, 2])
        #expect(reply[60] == 0 && reply[60...].withUnsafeBytes { InternetChecksum.checksum($0) } == 0, "an echo reply, summed")
        #expect(Array(reply[64...]) == Array(request[64...]), "the identifier, sequence and data as sent")
        let looseSourceRoute: [UInt8] = [0x83, 7, 4, 198, 18, 1, 9, 0]
        #expect(admit(&responder, echoRequest(options: looseSourceRoute)).0 == .consumed)
        // Other options are not echoed: a router alert alone leaves a plain header.
        let (_, plain) = admit(&responder, echoRequest(options: [0x94, 4, 0, 0]))
        #expect(plain[0] == 0x45 && Harness.isIPv4HeaderValid(plain) && plain.count == 36)
    }

    @Test("IPv4 options the kernel finds wrong get ICMP parameter problem pointing where it points")
    func badIPv4OptionsEarnParameterProblems() {
        var responder = responder(linkLayer: .ip)
        let cases: [(String, [UInt8], UInt8)] = [
            ("a record route pointer of 3", [7, 7, 3, 0, 0, 0, 0, 0], 22),
            ("a record route of length 2", [7, 2, 1, 1], 21),
            ("a second record route", [7, 3, 4, 7, 3, 4, 0, 0], 23),
            ("an option past the header", [1, 1, 0x94, 9], 22),
        ]
        for (why, options, pointer) in cases {
            let request = echoRequest(options: options)
            let (disposition, reply) = admit(&responder, request)
            #expect(disposition == .answer, "\(why)")
            guard reply.count >= 28 else { continue }
            #expect(reply[20] == 12 && reply[21] == 0 && reply[24] == pointer, "\(why): pointer \(reply[24])")
            #expect(Array(reply[28...]) == request, "\(why): quoted whole")
        }
        #expect(responder.counters.parameterProblems == UInt64(cases.count))
        // A timestamp with flags the kernel does not know passes in a received packet, echoed as it came.
        let unknownFlags: [UInt8] = [0x44, 8, 5, 2, 0, 0, 0, 0]
        let (echoed, echo) = admit(&responder, echoRequest(options: unknownFlags))
        #expect(echoed == .answer && echo.count >= 29 && echo[0] == 0x47 && Array(echo[20..<28]) == unknownFlags && echo[28] == 0)
        // A later fragment is checked as it comes, before reassembly, as the kernel checks it.
        var fragment = echoRequest(options: [7, 7, 3, 0, 0, 0, 0, 0])
        fragment[6] = 0; fragment[7] = 1   // offset 8 bytes, no more fragments
        fragment[10] = 0; fragment[11] = 0
        let sum = fragment[0..<28].withUnsafeBytes { InternetChecksum.checksum($0) }
        fragment[10] = UInt8(sum >> 8); fragment[11] = UInt8(sum & 0xFF)
        let (disposition, reply) = admit(&responder, fragment)
        #expect(disposition == .answer && reply.count > 24 && reply[20] == 12 && reply[24] == 22)
        #expect(responder.reassembler.activeDatagrams == 0, "nothing kept for reassembly")
    }

    @Test func aFrameForAnotherMACIsNotTheHosts() {
        var responder = responder()
        #expect(admit(&responder, ethernet(to: MACAddress(2, 9, 9, 9, 9, 9), type: 0x0800, echoRequest(to: IPv4Address(198, 18, 1, 2)))).0
                == .consumed)
        #expect(responder.counters.notForThisHost == 1)
    }

    /// An ICMP "fragmentation needed" (MTU `mtu`) from 198.18.1.1 about a packet from `quotedSource` to 198.18.9.9.
    func fragmentationNeeded(mtu: UInt16, quotedSource: IPv4Address = IPv4Address(198, 18, 1, 2)) -> [UInt8] {
        var quoted = [UInt8](repeating: 0, count: 28)
        quoted.withUnsafeMutableBytes {
            _ = IPv4Header.emit(into: $0.baseAddress!, source: quotedSource, destination: IPv4Address(198, 18, 9, 9),
                                protocol: 17, payloadLength: 1472, identification: 7)
        }
        var message: [UInt8] = [3, 4, 0, 0, 0, 0, UInt8(mtu >> 8), UInt8(mtu & 0xFF)] + quoted
        let checksum = message.withUnsafeBytes { InternetChecksum.checksum($0) }
        message[2] = UInt8(checksum >> 8); message[3] = UInt8(checksum & 0xFF)
        var packet = [UInt8](repeating: 0, count: 20)
        packet.withUnsafeMutableBytes {
            _ = IPv4Header.emit(into: $0.baseAddress!, source: IPv4Address(198, 18, 1, 1), destination: IPv4Address(198, 18, 1, 2),
                                protocol: 1, payloadLength: message.count, identification: 1)
        }
        return packet + message
    }

    @Test("two workers of one host share its ICMP limits and the path MTUs either learns, as one kernel keeps them")
    func workersShareLimitsAndPathMTUs() {
        var configuration = HostConfiguration(addresses: [.v4(IPv4Address(198, 18, 1, 2))], mtu: 1500)
        configuration.udpPort = 9000
        configuration.shared = HostShared(configuration.icmpErrors)
        var first = HostResponder(configuration: configuration, linkLayer: .ip, pool: harness.pool)
        var second = HostResponder(configuration: configuration, linkLayer: .ip, pool: harness.pool)
        // One peer, a closed port, both workers at once: the peer's burst of six, not six each.
        var answered = 0
        for round in 0..<10 {
            let now = Instant(nanoseconds: UInt64(1_000_000_000 + round))
            let closed = Harness.datagram(from: "198.18.1.1:\(4000 + round)", to: "198.18.1.2:9001", payload: 16)
            if admit(&first, closed, at: now).0 == .answer { answered += 1 }
            if admit(&second, closed, at: now).0 == .answer { answered += 1 }
        }
        #expect(answered == 6)
        // A path MTU the first learns bounds the second's replies from its next batch on.
        #expect(admit(&first, fragmentationNeeded(mtu: 1280)).0 == .consumed)
        #expect(second.pathMTUs.isEmpty)
        second.takeSharedPathMTUs()
        #expect(second.pathMTUs.mtu(for: .v4(IPv4Address(198, 18, 9, 9)), now: Instant(nanoseconds: 1)) == 1280)
    }

    @Test("fragmentation needed about the host's own packet bounds what goes to that destination, never below 552 bytes")
    func fragmentationNeededSetsThePathMTU() {
        var responder = responder(linkLayer: .ip)
        let now = Instant(nanoseconds: 1)
        #expect(admit(&responder, fragmentationNeeded(mtu: 1280)).0 == .consumed)
        #expect(responder.pathMTUs.mtu(for: .v4(IPv4Address(198, 18, 9, 9)), now: now) == 1280)
        #expect(responder.counters.pathMTUUpdates == 1)
        #expect(admit(&responder, fragmentationNeeded(mtu: 300)).0 == .consumed)
        #expect(responder.pathMTUs.mtu(for: .v4(IPv4Address(198, 18, 9, 9)), now: now) == 552)
        // Ten minutes on, it is forgotten.
        #expect(responder.pathMTUs.mtu(for: .v4(IPv4Address(198, 18, 9, 9)), now: now + .seconds(601)) == nil)
        // About a packet another host sent: not this host's path.
        var other = self.responder(linkLayer: .ip)
        #expect(admit(&other, fragmentationNeeded(mtu: 1280, quotedSource: IPv4Address(198, 18, 1, 7))).0 == .consumed)
        #expect(other.pathMTUs.isEmpty && other.counters.pathMTUUpdates == 0)
    }

    /// An ICMPv6 packet too big (MTU `mtu`) from 2001:2:1::1 about a datagram the host sent to 2001:2:9::9.
    func packetTooBig(mtu: UInt32) -> [UInt8] {
        let (router, host) = (IPv6Address("2001:2:1::1")!, IPv6Address("2001:2:1::2")!)
        let quoted = Harness.datagram(from: "[2001:2:1::2]:9000", to: "[2001:2:9::9]:4000", payload: 16)
        var message: [UInt8] = [2, 0, 0, 0, UInt8(mtu >> 24), UInt8(mtu >> 16 & 0xFF), UInt8(mtu >> 8 & 0xFF), UInt8(mtu & 0xFF)] + quoted
        let pseudo = InternetChecksum.pseudoHeaderSum(source: router, destination: host, nextHeader: 58, length: message.count)
        let checksum = message.withUnsafeBytes { InternetChecksum.checksum($0, initial: pseudo) }
        message[2] = UInt8(checksum >> 8); message[3] = UInt8(checksum & 0xFF)
        var packet = [UInt8](repeating: 0, count: 40)
        _ = packet.withUnsafeMutableBytes {
            IPv6Header.emit(into: $0.baseAddress!, source: router, destination: host, nextHeader: 58, payloadLength: message.count)
        }
        return packet + message
    }

    @Test("packet too big bounds what goes to that destination; one below 1280 bytes is discarded (RFC 8201 section 4), as Linux does")
    func packetTooBigSetsThePathMTU() {
        var responder = responder(linkLayer: .ip)
        let now = Instant(nanoseconds: 1)
        let peer = IPAddress.v6(IPv6Address("2001:2:9::9")!)
        #expect(admit(&responder, packetTooBig(mtu: 600)).0 == .consumed && responder.counters.ignoredControl == 1)
        #expect(responder.pathMTUs.mtu(for: peer, now: now) == nil && responder.counters.pathMTUUpdates == 0)
        #expect(admit(&responder, packetTooBig(mtu: 1400)).0 == .consumed)
        #expect(responder.pathMTUs.mtu(for: peer, now: now) == 1400)
        #expect(admit(&responder, packetTooBig(mtu: 1279)).0 == .consumed && responder.counters.ignoredControl == 2)
        #expect(responder.pathMTUs.mtu(for: peer, now: now) == 1400)
    }

    /// Passes every packet on as it came: the host stage's service, for watching what the host sends.
    struct PassThrough: Stage {
        mutating func handle(_ input: inout PacketBatch, output: inout PacketBatch, now: Instant) {
            input.takeAll { output.append($0) }
        }
    }

    @Test("after fragmentation needed, a packet to that destination leaves in fragments that fit the path; to others, whole")
    func packetsFollowThePathMTU() {
        let host = HostConfiguration(addresses: [.v4(IPv4Address(198, 18, 1, 2))], mtu: 1500)
        var stage = HostStage(PassThrough(), configuration: host, format: .ip, pool: harness.pool)
        let now = Instant(nanoseconds: 1)
        func run(_ bytes: [UInt8]) -> [Int] {
            var input = PacketBatch(pool: harness.pool)
            var output = PacketBatch(pool: harness.pool)
            input.append(harness.packet(bytes))
            stage.handle(&input, output: &output, now: now)
            var lengths: [Int] = []
            output.takeAll { lengths.append($0.length); harness.pool.release($0) }
            return lengths
        }
        #expect(run(fragmentationNeeded(mtu: 1280)).isEmpty)
        let toPeer = Harness.datagram(from: "198.18.1.2:9000", to: "198.18.9.9:4000", payload: 1400)
        let fragments = run(toPeer)
        #expect(fragments.count == 2 && fragments.allSatisfy { $0 <= 1280 }, "\(fragments)")
        #expect(run(Harness.datagram(from: "198.18.1.2:9000", to: "198.18.9.8:4000", payload: 1400)) == [1428])
    }
}
