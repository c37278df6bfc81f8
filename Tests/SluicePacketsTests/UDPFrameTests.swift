import SluicePackets
import Testing

@Suite struct UDPFrameParseTests {
    @Test func parsesTheRealFrames() throws {
        #expect(
            try parse(Frames.dnsOverIPv4).get()
                == UDPFrameLayout(
                    vlanTag: nil, networkOffset: 14, isIPv6: false, transportOffset: 34, payloadOffset: 42,
                    payloadLength: 29))
        #expect(
            try parse(Frames.dnsOverIPv6).get()
                == UDPFrameLayout(
                    vlanTag: nil, networkOffset: 14, isIPv6: true, transportOffset: 54, payloadOffset: 62,
                    payloadLength: 29))
        #expect(
            try parse(Frames.ntpOverVLAN).get()
                == UDPFrameLayout(
                    vlanTag: 0x2064, networkOffset: 18, isIPv6: false, transportOffset: 38, payloadOffset: 46,
                    payloadLength: 48))
        #expect(
            try parse(Array(Frames.dnsOverIPv4[14...]), .ip).get()
                == UDPFrameLayout(
                    vlanTag: nil, networkOffset: 0, isIPv6: false, transportOffset: 20, payloadOffset: 28,
                    payloadLength: 29))
        #expect(
            try parse(Array(Frames.dnsOverIPv6[14...]), .ip).get()
                == UDPFrameLayout(
                    vlanTag: nil, networkOffset: 0, isIPv6: true, transportOffset: 40, payloadOffset: 48,
                    payloadLength: 29))
    }

    @Test func ethernetPaddingAndIPv4OptionsAreSkipped() throws {
        // The NTP frame untagged is 90 bytes; the DNS one padded to the 60-byte minimum plus more.
        let padded = Frames.dnsOverIPv4 + [UInt8](repeating: 0, count: 9)
        #expect(try parse(padded).get().payloadLength == 29)
        var withOptions = Array(Frames.dnsOverIPv4[0..<34]) + [0x01, 0x01, 0x01, 0x00] + Array(Frames.dnsOverIPv4[34...])
        withOptions[14] = 0x46
        put16(&withOptions, 16, 61)
        let layout = try parse(withOptions).get()
        #expect(layout.transportOffset == 38)
        #expect(layout.payloadOffset == 46)
        #expect(Array(withOptions[layout.payloadOffset..<(layout.payloadOffset + layout.payloadLength)]) == Frames.dnsOverIPv4Payload)
    }

    /// One crafted frame for each malformed case, through `UDPFrame.parse` (ARP has its own parser).
    static func malformedFrame(for error: PacketError) -> (frame: [UInt8], linkLayer: LinkLayer)? {
        let v4 = Frames.dnsOverIPv4, v6 = Frames.dnsOverIPv6
        var f = v4
        switch error {
        case .truncatedEthernet: return (Array(v4[0..<13]), .ethernet)
        case .truncatedVLAN: return (Array(Frames.ntpOverVLAN[0..<17]), .ethernet)
        case .truncatedARP: return nil
        case .truncatedIPv4: return (Array(v4[0..<33]), .ethernet)
        case .badIPVersion: f[14] = 0x65
        case .badIPv4HeaderLength: f[14] = 0x44
        case .ipv4HeaderPastBuffer: f[14] = 0x4F
        case .ipv4TotalLengthPastBuffer: put16(&f, 16, 58)
        case .ipv4TotalLengthTooSmall: put16(&f, 16, 19)
        case .truncatedIPv6: return (Array(v6[0..<53]), .ethernet)
        case .ipv6PayloadLengthPastBuffer:
            f = v6
            put16(&f, 18, 38)
        case .ipv6ExtensionHeaderLimit:
            f = Frames.ipv6(extensions: Array(repeating: (IPProtocol.hopByHop, Frames.paddingOptions), count: 9))
        case .truncatedIPv6ExtensionHeader:
            f = Frames.ipv6(extensions: [(IPProtocol.routing, Frames.paddingOptions)])
            f[55] = 5
        case .truncatedUDP:
            put16(&f, 16, 27)  // IP payload of 7 bytes
        case .udpLengthMismatch: put16(&f, 38, 38)
        case .notUDP, .fragment: return nil
        }
        return (f, .ethernet)
    }

    @Test(arguments: PacketError.allCases.filter(\.isMalformed))
    func eachMalformationIsReportedByName(error: PacketError) {
        guard let (frame, linkLayer) = Self.malformedFrame(for: error) else {
            // ARP is not UDP: the frame parser calls it notUDP; the ARP parser reports the truncation.
            #expect(error == .truncatedARP)
            #expect(parse(Frames.arpRequest) == .failure(.notUDP))
            withBuffer(Array(Frames.arpRequest[14..<41])) { buffer in
                #expect(throws: PacketError.truncatedARP) { try ARPPacket(buffer) }
            }
            return
        }
        #expect(parse(frame, linkLayer) == .failure(error), "\(error.name)")
        // The same packet without Ethernet, where that layer is not the point.
        if ![.truncatedEthernet, .truncatedVLAN, .badIPVersion].contains(error) {
            #expect(parse(Array(frame[14...]), .ip) == .failure(error), "\(error.name) over .ip")
        }
    }

    @Test func wellFormedButNotOurs() {
        var tcp = Frames.dnsOverIPv4
        tcp[23] = IPProtocol.tcp
        #expect(parse(tcp) == .failure(.notUDP))
        var icmp6 = Frames.dnsOverIPv6
        icmp6[20] = IPProtocol.icmpv6
        #expect(parse(icmp6) == .failure(.notUDP))
        var lldp = Frames.dnsOverIPv4
        put16(&lldp, 12, 0x88CC)
        #expect(parse(lldp) == .failure(.notUDP))
        var qinq = Frames.ntpOverVLAN
        put16(&qinq, 16, EtherType.vlan)  // a second tag is not followed
        #expect(parse(qinq) == .failure(.notUDP))

        var firstFragment = Frames.dnsOverIPv4
        put16(&firstFragment, 20, 0x2000)
        #expect(parse(firstFragment) == .failure(.fragment))
        var lastFragment = Frames.dnsOverIPv4
        put16(&lastFragment, 20, 0x0001)
        #expect(parse(lastFragment) == .failure(.fragment))
    }

    @Test func ipLinkLayerVersionNibble() {
        #expect(parse([], .ip) == .failure(.truncatedIPv4))
        #expect(parse([0x45], .ip) == .failure(.truncatedIPv4))
        #expect(parse([0x60, 0, 0, 0], .ip) == .failure(.truncatedIPv6))
        #expect(parse([0x50] + Array(Frames.dnsOverIPv4[15...]), .ip) == .failure(.badIPVersion))
        // An Ethernet frame that says IPv6 but carries IPv4.
        var mismatched = Frames.dnsOverIPv4
        put16(&mismatched, 12, EtherType.ipv6)
        #expect(parse(mismatched) == .failure(.badIPVersion))
    }

    @Test func everyTruncationThrowsAndNeverCrashes() {
        let frames: [([UInt8], LinkLayer)] = [
            (Frames.dnsOverIPv4, .ethernet), (Frames.dnsOverIPv6, .ethernet), (Frames.ntpOverVLAN, .ethernet),
            (Array(Frames.dnsOverIPv4[14...]), .ip), (Array(Frames.dnsOverIPv6[14...]), .ip),
            (Frames.ipv6(extensions: [(IPProtocol.hopByHop, Frames.paddingOptions)]), .ethernet),
        ]
        for (frame, linkLayer) in frames {
            #expect(throws: Never.self) { try parse(frame, linkLayer).get() }
            for n in 0..<frame.count {
                guard case .failure(let error) = parse(Array(frame[0..<n]), linkLayer) else {
                    Issue.record("a \(frame.count)-byte frame cut to \(n) bytes parsed")
                    continue
                }
                #expect(error.isMalformed)
            }
        }
    }

    @Test func randomAndMutatedFramesNeverCrash() {
        var rng = SeededGenerator(seed: 0x5EED)
        let seeds: [[UInt8]] = [
            Frames.dnsOverIPv4, Frames.dnsOverIPv6, Frames.ntpOverVLAN, Frames.arpRequest,
            Frames.ipv6(extensions: [
                (IPProtocol.hopByHop, Frames.paddingOptions), (IPProtocol.authentication, [0, 0, 0, 0, 0, 0, 0, 0]),
            ]),
        ]
        // One buffer reused for every frame, and allocated exactly, so that a read past the
        // frame would land outside the allocation (and trip the address sanitizer if enabled).
        var accepted = 0
        for i in 0..<100_000 {
            var frame: [UInt8]
            if i % 10 == 0 {
                frame = (0..<Int.random(in: 0...128, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                frame = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    // Mutations concentrated on the header bytes, where the lengths live.
                    let at = Int.random(in: 0..<min(frame.count, 70), using: &rng)
                    frame[at] = Bool.random(using: &rng) ? UInt8.random(in: 0...255, using: &rng) : frame[at] ^ 1
                }
                if Bool.random(using: &rng) { frame.removeLast(Int.random(in: 0...frame.count, using: &rng)) }
            }
            let linkLayer: LinkLayer = i % 3 == 0 ? .ip : .ethernet
            let input = linkLayer == .ip && frame.count >= 14 && i % 2 == 0 ? Array(frame[14...]) : frame
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: input.count, alignment: 1)
            defer { buffer.deallocate() }
            buffer.copyBytes(from: input)
            if let layout = try? UDPFrame.parse(buffer, linkLayer: linkLayer) {
                accepted += 1
                #expect(layout.networkOffset < layout.transportOffset)
                #expect(layout.payloadOffset == layout.transportOffset + 8)
                #expect(layout.payloadOffset + layout.payloadLength <= input.count)
            }
        }
        #expect(accepted > 1000)  // the mutations still leave plenty of valid frames
    }

    @Test func thePlainLayoutsTakeThePlainFramesAndAgreeWithParseOnEveryFrameTheyTake() {
        func plain(_ frame: [UInt8], _ linkLayer: LinkLayer = .ethernet) -> (v4: UDPFrameLayout?, v6: UDPFrameLayout?) {
            withBuffer(frame) { (UDPFrame.plainIPv4Layout($0, linkLayer: linkLayer), UDPFrame.plainIPv6Layout($0, linkLayer: linkLayer)) }
        }
        let padded = Frames.dnsOverIPv4 + [UInt8](repeating: 0, count: 9)
        #expect(plain(Frames.dnsOverIPv4).v4 == (try? parse(Frames.dnsOverIPv4).get()))
        #expect(plain(padded).v4 == (try? parse(padded).get()))
        #expect(plain(Frames.dnsOverIPv6).v6 == (try? parse(Frames.dnsOverIPv6).get()))
        #expect(plain(Frames.dnsOverIPv4).v4 != nil && plain(Frames.dnsOverIPv6).v6 != nil)
        let bare4 = Array(Frames.dnsOverIPv4[14...]), bare6 = Array(Frames.dnsOverIPv6[14...])
        #expect(plain(bare4, .ip).v4 == (try? parse(bare4, .ip).get()) && plain(bare4, .ip).v4 != nil)
        #expect(plain(bare6, .ip).v6 == (try? parse(bare6, .ip).get()) && plain(bare6, .ip).v6 != nil)
        // Tags, options, extension headers and fragments are left to parse.
        var withOptions = Array(Frames.dnsOverIPv4[0..<34]) + [0x01, 0x01, 0x01, 0x00] + Array(Frames.dnsOverIPv4[34...])
        withOptions[14] = 0x46
        put16(&withOptions, 16, 61)
        var fragment = Frames.dnsOverIPv4
        fragment[20] |= 0x20
        let hopByHop = Frames.ipv6(extensions: [(IPProtocol.hopByHop, Frames.paddingOptions)])
        for frame in [Frames.ntpOverVLAN, withOptions, fragment, hopByHop, Frames.arpRequest] {
            #expect(plain(frame).v4 == nil && plain(frame).v6 == nil)
        }
        var rng = SeededGenerator(seed: 0x91A1)
        var taken = 0
        for _ in 0..<100_000 {
            var frame = Bool.random(using: &rng) ? Frames.dnsOverIPv4 : Frames.dnsOverIPv6
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = Int.random(in: 12..<min(frame.count, 62), using: &rng)
                frame[at] = Bool.random(using: &rng) ? UInt8.random(in: 0...255, using: &rng) : frame[at] ^ 1
            }
            if Int.random(in: 0..<4, using: &rng) == 0 { frame.removeLast(Int.random(in: 0...frame.count, using: &rng)) }
            let linkLayer: LinkLayer = Bool.random(using: &rng) || frame.count < 14 ? .ethernet : .ip
            if linkLayer == .ip { frame.removeFirst(14) }
            let (v4, v6) = plain(frame, linkLayer)
            for layout in [v4, v6].compactMap({ $0 }) {
                taken += 1
                #expect(parse(frame, linkLayer) == .success(layout), "\(frame)")
            }
        }
        #expect(taken > 10_000)
    }
}

/// A tiny parser written separately from the module: fixed offsets, reference checksums.
struct IndependentParse: Equatable {
    var destinationMAC: [UInt8]?, sourceMAC: [UInt8]?, vlanTag: UInt16?
    var source: [UInt8], destination: [UInt8], sourcePort: UInt16, destinationPort: UInt16
    var hopLimit: UInt8, payload: [UInt8]

    init(_ f: [UInt8], ethernet: Bool) {
        var n = 0
        if ethernet {
            destinationMAC = Array(f[0..<6])
            sourceMAC = Array(f[6..<12])
            n = 12
            if be16(f, 12) == 0x8100 {
                vlanTag = be16(f, 14)
                n = 16
            }
            let type = be16(f, n)
            #expect(type == (f[n + 2] >> 4 == 4 ? 0x0800 : 0x86DD))
            n += 2
        }
        let ip = n
        let udp: Int
        if f[ip] >> 4 == 4 {
            #expect(f[ip] == 0x45)
            #expect(f[ip + 1] == 0)
            #expect(Int(be16(f, ip + 2)) == f.count - ip)
            #expect(be16(f, ip + 6) == 0x4000)
            #expect(f[ip + 9] == 17)
            #expect(referenceFold(f[ip..<(ip + 20)]) == 0xFFFF, "IPv4 header checksum")
            hopLimit = f[ip + 8]
            source = Array(f[(ip + 12)..<(ip + 16)])
            destination = Array(f[(ip + 16)..<(ip + 20)])
            udp = ip + 20
        } else {
            #expect(Array(f[ip..<(ip + 4)]) == [0x60, 0, 0, 0])
            #expect(Int(be16(f, ip + 4)) == f.count - ip - 40)
            #expect(f[ip + 6] == 17)
            hopLimit = f[ip + 7]
            source = Array(f[(ip + 8)..<(ip + 24)])
            destination = Array(f[(ip + 24)..<(ip + 40)])
            udp = ip + 40
        }
        sourcePort = be16(f, udp)
        destinationPort = be16(f, udp + 2)
        #expect(Int(be16(f, udp + 4)) == f.count - udp)
        let datagram = Array(f[udp...])
        #expect(be16(f, udp + 6) == referenceUDPChecksum(source: source, destination: destination, datagram: datagram))
        payload = Array(f[(udp + 8)...])
    }
}

@Suite struct UDPFrameBuildTests {
    static let mac1 = MACAddress("00:1a:2b:3c:4d:5e")!, mac2 = MACAddress("52:54:00:12:34:56")!

    func build(
        _ linkLayer: LinkLayer, vlanTag: UInt16? = nil, _ source: String, _ destination: String, payload: [UInt8],
        hopLimit: UInt8 = 64
    ) -> [UInt8] {
        var out = [UInt8](repeating: 0xCC, count: 1600)
        let n = out.withUnsafeMutableBytes { buffer in
            payload.withUnsafeBytes { payload in
                UDPFrame.build(
                    into: buffer, linkLayer: linkLayer, sourceMAC: Self.mac2, destinationMAC: Self.mac1, vlanTag: vlanTag,
                    source: IPEndpoint(source)!, destination: IPEndpoint(destination)!, payload: payload,
                    hopLimit: hopLimit)
            }
        }
        #expect(out[n] == 0xCC)  // nothing written past the frame
        return Array(out[0..<n])
    }

    @Test func reproducesTheRealFrames() {
        // The captured NTP frame has IP id 0, which is what build writes.
        #expect(build(.ethernet, vlanTag: 0x2064, "10.0.100.5:123", "10.0.100.1:123", payload: Frames.ntpPayload) == Frames.ntpOverVLAN)
        let v6 = build(.ethernet, "[2001:db8::1234]:40000", "[2001:4860:4860::8888]:53", payload: Frames.dnsOverIPv6Payload)
        var expected = Frames.dnsOverIPv6
        expected[15] = 0; expected[16] = 0; expected[17] = 0  // build writes flow label 0
        #expect(v6 == expected)
    }

    @Test(arguments: [LinkLayer.ethernet, .ip], [nil, UInt16(0x0064)])
    func ipv4RoundTrip(linkLayer: LinkLayer, vlanTag: UInt16?) throws {
        let payload: [UInt8] = Array("hello, sluice".utf8)
        let f = build(linkLayer, vlanTag: vlanTag, "198.18.0.1:5353", "198.18.0.2:53", payload: payload, hopLimit: 17)
        let check = IndependentParse(f, ethernet: linkLayer == .ethernet)
        #expect(check.source == [198, 18, 0, 1])
        #expect(check.destination == [198, 18, 0, 2])
        #expect(check.sourcePort == 5353 && check.destinationPort == 53)
        #expect(check.hopLimit == 17)
        #expect(check.payload == payload)
        if linkLayer == .ethernet {
            #expect(check.destinationMAC == [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e])
            #expect(check.sourceMAC == [0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
            #expect(check.vlanTag == vlanTag)
        }
        let layout = try parse(f, linkLayer).get()
        #expect(layout.vlanTag == (linkLayer == .ethernet ? vlanTag : nil))
        #expect(layout.payloadLength == payload.count && layout.payloadOffset + payload.count == f.count)
    }

    @Test(arguments: [LinkLayer.ethernet, .ip], [nil, UInt16(0xE001)])
    func ipv6RoundTrip(linkLayer: LinkLayer, vlanTag: UInt16?) throws {
        let payload: [UInt8] = (0..<1001).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let f = build(linkLayer, vlanTag: vlanTag, "[fd00::1]:443", "[2001:db8:0:0:1:0:0:1]:50000", payload: payload)
        let check = IndependentParse(f, ethernet: linkLayer == .ethernet)
        #expect(check.source == [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [1])
        #expect(check.destination == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1])
        #expect(check.sourcePort == 443 && check.destinationPort == 50000)
        #expect(check.hopLimit == 64)
        #expect(check.payload == payload)
        if linkLayer == .ethernet { #expect(check.vlanTag == vlanTag) }
        #expect(try parse(f, linkLayer).get().isIPv6)
    }

    @Test func mappedAddressesAreSentAsIPv4() {
        let f = build(.ip, "[::ffff:192.0.2.1]:53", "192.0.2.99:1234", payload: [1, 2, 3])
        #expect(f.count == 20 + 8 + 3)
        let check = IndependentParse(f, ethernet: false)
        #expect(check.source == [192, 0, 2, 1])
        #expect(check.destination == [192, 0, 2, 99])
    }

    @Test func payloadAlreadyInPlaceOrOverlapping() throws {
        let payload: [UInt8] = Array("in place".utf8)
        for offset in [42, 0, 30, 50] {
            var out = [UInt8](repeating: 0, count: 200)
            let n = out.withUnsafeMutableBytes { buffer in
                for (i, b) in payload.enumerated() { buffer[offset + i] = b }
                return UDPFrame.build(
                    into: buffer, linkLayer: .ethernet, sourceMAC: Self.mac2, destinationMAC: Self.mac1,
                    source: IPEndpoint("10.0.0.1:1")!, destination: IPEndpoint("10.0.0.2:2")!,
                    payload: UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + payload.count)]))
            }
            #expect(IndependentParse(Array(out[0..<n]), ethernet: true).payload == payload, "payload at \(offset)")
        }
    }

    @Test func emptyPayload() throws {
        let f = build(.ethernet, "10.0.0.1:1", "10.0.0.2:2", payload: [])
        #expect(f.count == 42)
        #expect(IndependentParse(f, ethernet: true).payload == [])
        #expect(try parse(f).get().payloadLength == 0)
    }
}
