import SluicePackets
import Testing

@Suite struct UDPTests {
    static let v4Source = IPv4Address(192, 168, 1, 10), v4Destination = IPv4Address(8, 8, 8, 8)
    static let v6Source = IPv6Address("2001:db8::1234")!, v6Destination = IPv6Address("2001:4860:4860::8888")!

    @Test func referenceAgreesWithTheCapturedChecksums() {
        let v4 = Array(Frames.dnsOverIPv4[34...])
        #expect(referenceUDPChecksum(source: [192, 168, 1, 10], destination: [8, 8, 8, 8], datagram: v4) == 0xe2ec)
        let v6 = Array(Frames.dnsOverIPv6[54...])
        let s = Array(Frames.dnsOverIPv6[22..<38]), d = Array(Frames.dnsOverIPv6[38..<54])
        #expect(referenceUDPChecksum(source: s, destination: d, datagram: v6) == 0xed55)
        let ntp = Array(Frames.ntpOverVLAN[38...])
        #expect(referenceUDPChecksum(source: [10, 0, 100, 5], destination: [10, 0, 100, 1], datagram: ntp) == 0x72a7)
    }

    @Test func deconstructOverIPv4() throws {
        try withBuffer(Array(Frames.dnsOverIPv4[34...])) { buffer in
            let udp = try UDPHeader(buffer)
            #expect(udp.sourcePort == 53124)
            #expect(udp.destinationPort == 53)
            #expect(udp.length == 37)
            #expect(udp.checksum == 0xe2ec)
            #expect(Array(udp.payload) == Frames.dnsOverIPv4Payload)
            #expect(udp.computeChecksum(source: Self.v4Source, destination: Self.v4Destination) == 0xe2ec)
            #expect(udp.isChecksumValid(source: Self.v4Source, destination: Self.v4Destination))
            #expect(!udp.isChecksumValid(source: Self.v4Destination, destination: IPv4Address(8, 8, 4, 4)))
            udp.checksum = 0
            #expect(udp.isChecksumValid(source: Self.v4Source, destination: Self.v4Destination))
        }
    }

    @Test func deconstructOverIPv6() throws {
        try withBuffer(Array(Frames.dnsOverIPv6[54...])) { buffer in
            let udp = try UDPHeader(buffer)
            #expect(udp.sourcePort == 40000)
            #expect(udp.destinationPort == 53)
            #expect(udp.length == 37)
            #expect(udp.checksum == 0xed55)
            #expect(Array(udp.payload) == Frames.dnsOverIPv6Payload)
            #expect(udp.computeChecksum(source: Self.v6Source, destination: Self.v6Destination) == 0xed55)
            #expect(udp.isChecksumValid(source: Self.v6Source, destination: Self.v6Destination))
            udp.checksum = 0
            #expect(!udp.isChecksumValid(source: Self.v6Source, destination: Self.v6Destination))
        }
    }

    @Test func emitThenChecksumMatchesRealDatagram() {
        let payload = Frames.dnsOverIPv4Payload
        var out = [UInt8](repeating: 0xAA, count: 8) + payload
        let n = out.withUnsafeMutableBytes { buffer in
            let n = UDPHeader.emit(into: buffer.baseAddress!, sourcePort: 53124, destinationPort: 53, payloadLength: payload.count)
            #expect(buffer[6] == 0 && buffer[7] == 0)
            let udp = try! UDPHeader(buffer)
            udp.checksum = udp.computeChecksum(source: Self.v4Source, destination: Self.v4Destination)
            return n
        }
        #expect(n == 8)
        #expect(out == Array(Frames.dnsOverIPv4[34...]))
    }

    @Test func computedZeroIsSentAsAllOnes() throws {
        // Pick the last payload word so that the datagram sums to 0xFFFF: the checksum is then 0.
        var datagram: [UInt8] = [0x12, 0x34, 0x00, 0x35, 0x00, 0x0A, 0, 0, 0, 0]
        let partial = referenceFold([10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 10] + datagram)
        put16(&datagram, 8, ~partial)
        #expect(referenceChecksum([10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 10] + datagram) == 0)
        try withBuffer(datagram) { buffer in
            let udp = try UDPHeader(buffer)
            let c = udp.computeChecksum(source: IPv4Address(10, 0, 0, 1), destination: IPv4Address(10, 0, 0, 2))
            #expect(c == 0xFFFF)
            udp.checksum = c
            #expect(udp.isChecksumValid(source: IPv4Address(10, 0, 0, 1), destination: IPv4Address(10, 0, 0, 2)))
        }
    }

    @Test func partialChecksumCompletesToTheFullOne() throws {
        // What a NIC does with CHECKSUM_PARTIAL: sum from the UDP header on, field included, and invert.
        for (datagram, v6) in [(Array(Frames.dnsOverIPv4[34...]), false), (Array(Frames.dnsOverIPv6[54...]), true)] {
            var bytes = datagram
            try bytes.withUnsafeMutableBytes { buffer in
                let udp = try UDPHeader(buffer)
                if v6 {
                    udp.setPartialChecksum(source: Self.v6Source, destination: Self.v6Destination)
                } else {
                    udp.setPartialChecksum(source: Self.v4Source, destination: Self.v4Destination)
                }
            }
            #expect(bytes[6] != 0 || bytes[7] != 0)
            #expect(referenceChecksum(bytes) == be16(datagram, 6))
        }
        // The partial value itself: the folded pseudo-header, not inverted.
        var bytes = Array(Frames.dnsOverIPv4[34...])
        try bytes.withUnsafeMutableBytes { buffer in
            try UDPHeader(buffer).setPartialChecksum(source: Self.v4Source, destination: Self.v4Destination)
        }
        #expect(be16(bytes, 6) == referenceFold([192, 168, 1, 10, 8, 8, 8, 8, 0, 17, 0, 37]))
    }

    @Test func shorterLengthIsTrimmedAndSwapWorks() throws {
        // Two trailing bytes beyond the UDP length (as after Ethernet padding) are ignored.
        var bytes = Array(Frames.dnsOverIPv4[34...]) + [0xDE, 0xAD]
        try bytes.withUnsafeMutableBytes { buffer in
            let udp = try UDPHeader(buffer)
            #expect(udp.payload.count == 29)
            #expect(udp.isChecksumValid(source: Self.v4Source, destination: Self.v4Destination))
            udp.swapPorts()
        }
        #expect(Array(bytes[0..<4]) == [0x00, 0x35, 0xcf, 0x84])
    }

    @Test func malformedDatagramsAreRejected() {
        let datagram = Array(Frames.dnsOverIPv4[34...])
        for n in 0..<8 {
            withBuffer(Array(datagram[0..<n])) { buffer in
                #expect(throws: PacketError.truncatedUDP) { try UDPHeader(buffer) }
            }
        }
        for length: UInt16 in [0, 7, 38, 0xFFFF] {
            var bytes = datagram
            put16(&bytes, 4, length)
            withBuffer(bytes) { buffer in
                #expect(throws: PacketError.udpLengthMismatch) { try UDPHeader(buffer) }
            }
        }
    }
}
