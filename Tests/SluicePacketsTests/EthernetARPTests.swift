import SluicePackets
import Testing

@Suite struct EthernetTests {
    @Test func deconstructUntagged() throws {
        try withBuffer(Frames.dnsOverIPv4) { buffer in
            let eth = try EthernetHeader(buffer)
            #expect(eth.destination == MACAddress(0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e))
            #expect(eth.source == MACAddress("52:54:00:12:34:56"))
            #expect(eth.vlanTag == nil)
            #expect(eth.etherType == EtherType.ipv4)
            #expect(eth.headerLength == 14)
            #expect(eth.payload.count == 57)
            #expect(eth.payload.first == 0x45)
        }
    }

    @Test func deconstructTagged() throws {
        try withBuffer(Frames.ntpOverVLAN) { buffer in
            let eth = try EthernetHeader(buffer)
            #expect(eth.vlanTag == 0x2064)
            #expect(eth.etherType == EtherType.ipv4)
            #expect(eth.headerLength == 18)
            #expect(eth.payload.count == Frames.ntpOverVLAN.count - 18)
        }
    }

    @Test func emitMatchesRealFrames() {
        var out = [UInt8](repeating: 0xEE, count: 18)
        let n = out.withUnsafeMutableBytes {
            EthernetHeader.emit(
                into: $0.baseAddress!, destination: MACAddress("00:1a:2b:3c:4d:5e")!,
                source: MACAddress("52:54:00:12:34:56")!, etherType: EtherType.ipv4)
        }
        #expect(n == 14)
        #expect(Array(out[0..<14]) == Array(Frames.dnsOverIPv4[0..<14]))
        #expect(out[14] == 0xEE)

        let m = out.withUnsafeMutableBytes {
            EthernetHeader.emit(
                into: $0.baseAddress!, destination: MACAddress("00:1a:2b:3c:4d:5e")!,
                source: MACAddress("52:54:00:12:34:56")!, etherType: EtherType.ipv4, vlanTag: 0x2064)
        }
        #expect(m == 18)
        #expect(out == Array(Frames.ntpOverVLAN[0..<18]))
    }

    @Test func settersAndSwapWriteInPlace() throws {
        var bytes = Frames.ntpOverVLAN
        try bytes.withUnsafeMutableBytes { buffer in
            let eth = try EthernetHeader(buffer)
            eth.swapAddresses()
            eth.etherType = EtherType.ipv6
        }
        #expect(Array(bytes[0..<6]) == Array(Frames.ntpOverVLAN[6..<12]))
        #expect(Array(bytes[6..<12]) == Array(Frames.ntpOverVLAN[0..<6]))
        #expect(Array(bytes[12..<18]) == [0x81, 0x00, 0x20, 0x64, 0x86, 0xdd])
    }

    @Test func shortFramesAreRejected() {
        for n in 0..<14 {
            withBuffer(Array(Frames.dnsOverIPv4[0..<n])) { buffer in
                #expect(throws: PacketError.truncatedEthernet) { try EthernetHeader(buffer) }
            }
        }
        for n in 14..<18 {
            withBuffer(Array(Frames.ntpOverVLAN[0..<n])) { buffer in
                #expect(throws: PacketError.truncatedVLAN) { try EthernetHeader(buffer) }
            }
        }
    }
}

@Suite struct ARPTests {
    @Test func deconstruct() throws {
        try withBuffer(Frames.arpRequest) { buffer in
            let eth = try EthernetHeader(buffer)
            #expect(eth.etherType == EtherType.arp)
            #expect(eth.destination == .broadcast)
            let arp = try ARPPacket(eth.payload)
            #expect(arp.isEthernetIPv4)
            #expect(arp.operation == ARPPacket.request)
            #expect(arp.senderHardwareAddress == MACAddress("52:54:00:12:34:56"))
            #expect(arp.senderProtocolAddress == IPv4Address("192.168.1.10"))
            #expect(arp.targetHardwareAddress == MACAddress(rawValue: 0))
            #expect(arp.targetProtocolAddress == IPv4Address(192, 168, 1, 1))
        }
    }

    @Test func emitMatchesRealFrame() {
        var out = [UInt8](repeating: 0, count: 42)
        let mac = MACAddress("52:54:00:12:34:56")!
        let n = out.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress!
            var n = EthernetHeader.emit(into: base, destination: .broadcast, source: mac, etherType: EtherType.arp)
            n += ARPPacket.emit(
                into: base + n, operation: ARPPacket.request, senderMAC: mac, senderIP: IPv4Address(192, 168, 1, 10),
                targetMAC: MACAddress(rawValue: 0), targetIP: IPv4Address(192, 168, 1, 1))
            return n
        }
        #expect(n == 42)
        #expect(out == Frames.arpRequest)
    }

    @Test func answerInPlace() throws {
        var bytes = Frames.arpRequest
        let ours = MACAddress("02:00:00:00:00:01")!
        try bytes.withUnsafeMutableBytes { buffer in
            let arp = try ARPPacket(UnsafeMutableRawBufferPointer(rebasing: buffer[14...]))
            let asker = (arp.senderHardwareAddress, arp.senderProtocolAddress)
            arp.operation = ARPPacket.reply
            arp.senderProtocolAddress = arp.targetProtocolAddress
            arp.senderHardwareAddress = ours
            arp.targetHardwareAddress = asker.0
            arp.targetProtocolAddress = asker.1
        }
        let expected: [UInt8] = [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc0, 0xa8,
            0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x01, 0x0a,
        ]
        #expect(Array(bytes[14...]) == expected)
    }

    @Test func otherShapesAreFlaggedAndShortOnesRejected() {
        var other = Array(Frames.arpRequest[14...])
        other[0] = 0x00
        other[1] = 0x06  // IEEE 802 hardware
        withBuffer(other) { buffer in
            #expect((try? ARPPacket(buffer))?.isEthernetIPv4 == false)
        }
        var long = Array(Frames.arpRequest[14...])
        long[5] = 16  // plen 16 needs 8 + 2 * (6 + 16) = 52 bytes
        withBuffer(long) { buffer in
            #expect(throws: PacketError.truncatedARP) { try ARPPacket(buffer) }
        }
        for n in 0..<28 {
            withBuffer(Array(Frames.arpRequest[14..<(14 + n)])) { buffer in
                #expect(throws: PacketError.truncatedARP) { try ARPPacket(buffer) }
            }
        }
    }
}
