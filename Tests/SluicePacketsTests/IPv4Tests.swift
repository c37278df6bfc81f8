import SluicePackets
import Testing

@Suite struct IPv4Tests {
    static var packet: [UInt8] { Array(Frames.dnsOverIPv4[14...]) }

    @Test func referenceAgreesWithTheCapturedChecksums() {
        #expect(referenceFold(Self.packet[0..<20]) == 0xFFFF)
        #expect(be16(Self.packet, 10) == 0x4cac)
        let ntp = Array(Frames.ntpOverVLAN[18...])
        #expect(referenceFold(ntp[0..<20]) == 0xFFFF)
    }

    @Test func deconstruct() throws {
        try withBuffer(Self.packet) { buffer in
            let ip = try IPv4Header(buffer)
            #expect(ip.headerLength == 20)
            #expect(ip.totalLength == 57)
            #expect(ip.identification == 0x1c46)
            #expect(ip.dontFragment)
            #expect(!ip.moreFragments)
            #expect(ip.fragmentOffset == 0)
            #expect(!ip.isFragment)
            #expect(ip.timeToLive == 64)
            #expect(ip.protocol == IPProtocol.udp)
            #expect(ip.headerChecksum == 0x4cac)
            #expect(ip.source == IPv4Address(192, 168, 1, 10))
            #expect(ip.destination == IPv4Address(8, 8, 8, 8))
            #expect(ip.payload.count == 37)
            #expect(ip.isChecksumValid())
        }
    }

    @Test func emitMatchesRealPacket() {
        var out = [UInt8](repeating: 0xAA, count: 20)
        let n = out.withUnsafeMutableBytes {
            IPv4Header.emit(
                into: $0.baseAddress!, source: IPv4Address(192, 168, 1, 10), destination: IPv4Address(8, 8, 8, 8),
                protocol: IPProtocol.udp, payloadLength: 37, identification: 0x1c46)
        }
        #expect(n == 20)
        #expect(out == Array(Self.packet[0..<20]))
    }

    @Test func optionsAreSkippedAndCovered() throws {
        // The same packet with a 4-byte option (NOP NOP NOP EOL): IHL 6.
        var bytes = Array(Self.packet[0..<20]) + [0x01, 0x01, 0x01, 0x00] + Array(Self.packet[20...])
        bytes[0] = 0x46
        put16(&bytes, 2, 61)
        put16(&bytes, 10, 0)
        put16(&bytes, 10, referenceChecksum(bytes[0..<24]))
        try withBuffer(bytes) { buffer in
            let ip = try IPv4Header(buffer)
            #expect(ip.headerLength == 24)
            #expect(ip.payload.count == 37)
            #expect(ip.payload.first == 0xcf)
            #expect(ip.isChecksumValid())
            let stored = ip.headerChecksum
            ip.headerChecksum = 0x1234
            #expect(!ip.isChecksumValid())
            ip.updateChecksum()
            #expect(ip.headerChecksum == stored)
        }
    }

    @Test func settersKeepAChecksumThatUpdateCanFix() throws {
        var bytes = Self.packet
        try bytes.withUnsafeMutableBytes { buffer in
            let ip = try IPv4Header(buffer)
            ip.swapAddresses()
            #expect(ip.isChecksumValid())  // swapping words does not change the sum
            let oldTTL = UInt16(ip.timeToLive) << 8 | UInt16(ip.protocol)
            ip.timeToLive = 63
            let newTTL = UInt16(ip.timeToLive) << 8 | UInt16(ip.protocol)
            ip.headerChecksum = InternetChecksum.update(ip.headerChecksum, old: oldTTL, new: newTTL)
            #expect(ip.isChecksumValid())
            let oldSource = ip.source
            ip.source = IPv4Address(203, 0, 113, 7)
            ip.headerChecksum = InternetChecksum.update(ip.headerChecksum, old: oldSource.rawValue, new: ip.source.rawValue)
            #expect(ip.isChecksumValid())
        }
        #expect(Array(bytes[12..<20]) == [203, 0, 113, 7, 192, 168, 1, 10])
        #expect(bytes[8] == 63)
        #expect(referenceFold(bytes[0..<20]) == 0xFFFF)
    }

    @Test func fragmentFlags() throws {
        var bytes = Self.packet
        put16(&bytes, 6, 0x2000 | 185)  // MF, offset 185 * 8
        try withBuffer(bytes) { buffer in
            let ip = try IPv4Header(buffer)
            #expect(ip.moreFragments)
            #expect(!ip.dontFragment)
            #expect(ip.fragmentOffset == 1480)
            #expect(ip.isFragment)
        }
    }

    /// The packet with `bytes` in place of the bytes from `start` on to `end`.
    static func patched(_ start: Int, _ bytes: [UInt8], through end: Int) -> [UInt8] {
        let packet: [UInt8] = IPv4Tests.packet
        return Array(packet[0..<start]) + bytes + Array(packet[end...])
    }

    static let malformed: [([UInt8], PacketError)] = [
        (Array(IPv4Tests.packet[0..<19]), .truncatedIPv4),
        (patched(0, [0x65], through: 1), .badIPVersion),
        (patched(0, [0x44], through: 1), .badIPv4HeaderLength),
        (patched(0, [0x4F], through: 1), .ipv4HeaderPastBuffer),
        (patched(2, [0x00, 0x3A], through: 4), .ipv4TotalLengthPastBuffer),
        (patched(2, [0x00, 0x13], through: 4), .ipv4TotalLengthTooSmall),
    ]

    @Test(arguments: IPv4Tests.malformed)
    func malformedHeadersAreRejected(bytes: [UInt8], error: PacketError) {
        withBuffer(bytes) { buffer in
            #expect(throws: error) { try IPv4Header(buffer) }
        }
    }
}
