import SluicePackets
import Testing

@Suite struct IPv6Tests {
    static var packet: [UInt8] { Array(Frames.dnsOverIPv6[14...]) }

    @Test func deconstruct() throws {
        try withBuffer(Self.packet) { buffer in
            let ip = try IPv6Header(buffer)
            #expect(ip.trafficClass == 0)
            #expect(ip.flowLabel == 0x5a1f3)
            #expect(ip.payloadLength == 37)
            #expect(ip.nextHeader == IPProtocol.udp)
            #expect(ip.hopLimit == 64)
            #expect(ip.source == IPv6Address("2001:db8::1234"))
            #expect(ip.destination == IPv6Address("2001:4860:4860::8888"))
            #expect(ip.payload.count == 37)
            let upper = try ip.upperLayer()
            #expect(upper.protocol == IPProtocol.udp)
            #expect(upper.offset == 40)
        }
    }

    @Test func emitMatchesRealPacket() {
        var out = [UInt8](repeating: 0xAA, count: 40)
        let n = out.withUnsafeMutableBytes {
            IPv6Header.emit(
                into: $0.baseAddress!, source: IPv6Address("2001:db8::1234")!,
                destination: IPv6Address("2001:4860:4860::8888")!, nextHeader: IPProtocol.udp, payloadLength: 37,
                flowLabel: 0x5a1f3)
        }
        #expect(n == 40)
        #expect(out == Array(Self.packet[0..<40]))
    }

    @Test func trafficClassAndSetters() throws {
        var out = [UInt8](repeating: 0, count: 40)
        try out.withUnsafeMutableBytes { buffer in
            IPv6Header.emit(
                into: buffer.baseAddress!, source: .loopback, destination: .any, nextHeader: 59, payloadLength: 0,
                hopLimit: 1, trafficClass: 0xB8, flowLabel: 0xFFFFF)
            let ip = try IPv6Header(buffer)
            #expect(ip.trafficClass == 0xB8)
            #expect(ip.flowLabel == 0xFFFFF)
            ip.swapAddresses()
            ip.hopLimit = 255
            #expect(ip.source == .any)
            #expect(ip.destination == .loopback)
            #expect(try ip.upperLayer() == (IPProtocol.noNextHeader, 40))
        }
        #expect(Array(out[0..<8]) == [0x6B, 0x8F, 0xFF, 0xFF, 0, 0, 59, 255])
    }

    @Test func malformedHeadersAreRejected() {
        withBuffer(Array(Self.packet[0..<39])) { buffer in
            #expect(throws: PacketError.truncatedIPv6) { try IPv6Header(buffer) }
        }
        withBuffer([0x40] + Array(Self.packet[1...])) { buffer in
            #expect(throws: PacketError.badIPVersion) { try IPv6Header(buffer) }
        }
        withBuffer(Array(Self.packet.dropLast())) { buffer in
            #expect(throws: PacketError.ipv6PayloadLengthPastBuffer) { try IPv6Header(buffer) }
        }
    }

    /// Walks `frame` (Ethernet + IPv6) to its upper layer.
    func walk(_ frame: [UInt8], limit: Int = 8) -> Result<(UInt8, Int), PacketError> {
        withBuffer(Array(frame[14...])) { buffer in
            Result { () throws(PacketError) in
                let upper = try IPv6Header(buffer).upperLayer(limit: limit)
                return (upper.protocol, upper.offset)
            }
        }
    }

    @Test func walksHopByHopAndDestinationOptions() throws {
        // Hop-by-hop (8 bytes), destination options with length 1 (16 bytes), then UDP.
        let frame = Frames.ipv6(extensions: [
            (IPProtocol.hopByHop, Frames.paddingOptions),
            (IPProtocol.destinationOptions, [0, 1, 1, 12] + [UInt8](repeating: 0, count: 12)),
        ])
        let (proto, offset) = try walk(frame).get()
        #expect(proto == IPProtocol.udp)
        #expect(offset == 40 + 8 + 16)
        let layout = try parse(frame).get()
        #expect(layout.transportOffset == 14 + 64)
        #expect(layout.payloadLength == 4)
    }

    @Test func walksRoutingAndAuthenticationHeaders() throws {
        // Routing (type 0 header, 24 bytes), then AH with length 4: (4 + 2) * 4 = 24 bytes.
        let frame = Frames.ipv6(extensions: [
            (IPProtocol.routing, [0, 2, 0, 0] + [UInt8](repeating: 0, count: 20)),
            (IPProtocol.authentication, [0, 4] + [UInt8](repeating: 0, count: 22)),
        ])
        let (proto, offset) = try walk(frame).get()
        #expect(proto == IPProtocol.udp)
        #expect(offset == 40 + 24 + 24)
    }

    @Test func espAndNoNextHeaderEndTheWalk() throws {
        var frame = Frames.ipv6(extensions: [(IPProtocol.hopByHop, Frames.paddingOptions)])
        frame[54] = IPProtocol.esp
        #expect(try walk(frame).get() == (IPProtocol.esp, 48))
        #expect(parse(frame) == .failure(.notUDP))
        frame[54] = IPProtocol.noNextHeader
        #expect(try walk(frame).get() == (IPProtocol.noNextHeader, 48))
    }

    @Test func chainLongerThanTheLimitThrows() throws {
        let eight = Frames.ipv6(extensions: Array(repeating: (IPProtocol.destinationOptions, Frames.paddingOptions), count: 8))
        #expect(try walk(eight).get() == (IPProtocol.udp, 40 + 64))
        #expect(parse(eight).map(\.transportOffset) == .success(14 + 40 + 64))
        let nine = Frames.ipv6(extensions: Array(repeating: (IPProtocol.destinationOptions, Frames.paddingOptions), count: 9))
        #expect(throws: PacketError.ipv6ExtensionHeaderLimit) { try walk(nine).get() }
        #expect(parse(nine) == .failure(.ipv6ExtensionHeaderLimit))
        #expect(throws: PacketError.ipv6ExtensionHeaderLimit) { try walk(eight, limit: 7).get() }
        #expect(throws: PacketError.ipv6ExtensionHeaderLimit) { try walk(eight, limit: 0).get() }
    }

    @Test func chainRunningPastThePayloadLengthThrows() throws {
        // The destination options header claims 24 bytes but the payload ends after 16.
        var frame = Frames.ipv6(extensions: [(IPProtocol.destinationOptions, Frames.paddingOptions)], udpPayload: [])
        frame[55] = 2
        #expect(throws: PacketError.truncatedIPv6ExtensionHeader) { try walk(frame).get() }
        #expect(parse(frame) == .failure(.truncatedIPv6ExtensionHeader))

        // The payload ends inside the first two bytes of an extension header: payload length 1,
        // with the frame still holding the bytes after it.
        var short = Frames.ipv6(extensions: [(IPProtocol.hopByHop, Frames.paddingOptions)])
        put16(&short, 18, 1)
        #expect(parse(short) == .failure(.truncatedIPv6ExtensionHeader))
        put16(&short, 18, 0)
        #expect(parse(short) == .failure(.truncatedIPv6ExtensionHeader))
    }

    @Test func fragmentHeaderIsAFragment() {
        let frame = Frames.ipv6(extensions: [
            (IPProtocol.hopByHop, Frames.paddingOptions),
            (IPProtocol.fragment, [0, 0, 0x05, 0xA9, 0x12, 0x34, 0x56, 0x78]),
        ])
        #expect(throws: PacketError.fragment) { try walk(frame).get() }
        #expect(parse(frame) == .failure(.fragment))
        #expect(!PacketError.fragment.isMalformed)
    }
}
