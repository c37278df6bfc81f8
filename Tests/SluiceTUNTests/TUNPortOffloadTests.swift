#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Testing

/// The port's side of the virtio-net header, over a packet-preserving socket pair standing in
/// for the device: crafted headers a kernel would never send are counted and dropped, partial
/// checksums completed, super-packets split as the kernel splits them, and runs of one flow
/// joined on the way out.
@Suite struct TUNPortOffloadTests {
    let pool: FramePool
    let device: Int32
    let peer: Int32

    init() throws {
        pool = try FramePool(frameCount: 256, frameSize: 66560, headroom: 64)
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw ChildProcessError(message: "socketpair: errno \(errno)")
        }
        _ = fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK)
        var size: Int32 = 4 << 20
        for fd in pair { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4); setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4) }
        (device, peer) = (pair[0], pair[1])
    }

    func port() -> TUNPort {
        TUNPort(descriptor: device, kind: .tun, virtioHeaderLength: VirtioNetHeader.length, offloads: .udp, pool: pool,
                name: "pair", receiveTimeout: .milliseconds(10))
    }

    static func datagram(payload: Int, identification: UInt16 = 0) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: payload + 28)
        let bytes = (0..<payload).map { UInt8(truncatingIfNeeded: $0 * 13 + 1) }
        _ = frame.withUnsafeMutableBytes { buffer in
            bytes.withUnsafeBytes {
                UDPFrame.build(into: buffer, linkLayer: .ip, sourceMAC: MACAddress(rawValue: 0), destinationMAC: MACAddress(rawValue: 0),
                               source: IPEndpoint("198.18.0.1:4000")!, destination: IPEndpoint("198.18.0.2:9000")!, payload: $0)
            }
        }
        frame[4] = UInt8(identification >> 8); frame[5] = UInt8(identification & 0xFF)
        return frame
    }

    /// Leaves the UDP checksum as the kernel does for an offloaded send: the pseudo-header sum only.
    static func makePartial(_ packet: inout [UInt8]) {
        let udpLength = Int(packet[24]) << 8 | Int(packet[25])
        let pseudo = packet.withUnsafeBytes {
            InternetChecksum.pseudoHeaderSum(source: IPv4Address(networkBytesAt: $0.baseAddress! + 12),
                                             destination: IPv4Address(networkBytesAt: $0.baseAddress! + 16), protocol: 17, length: udpLength)
        }
        let folded = InternetChecksum.fold(pseudo)
        packet[26] = UInt8(folded >> 8); packet[27] = UInt8(folded & 0xFF)
    }

    static func header(_ build: (inout VirtioNetHeader) -> Void) -> [UInt8] {
        var header = VirtioNetHeader()
        build(&header)
        var bytes = [UInt8](repeating: 0, count: VirtioNetHeader.length)
        bytes.withUnsafeMutableBytes { header.store(at: $0.baseAddress!) }
        return bytes
    }

    func write(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { send(peer, $0.baseAddress, $0.count, 0) } }

    func receiveAll(_ port: inout TUNPort) throws -> [[UInt8]] {
        var batch = PacketBatch(pool: pool, capacity: 64)
        var packets: [[UInt8]] = []
        while try port.receive(into: &batch) > 0 {
            batch.takeAll { packet in
                packets.append(Array(UnsafeRawBufferPointer(start: packet.dataStart, count: packet.length)))
                pool.release(packet)
            }
        }
        return packets
    }

    static func udpChecksumIsValid(_ packet: [UInt8]) -> Bool {
        var copy = packet
        return copy.withUnsafeMutableBytes { bytes in
            let base = bytes.baseAddress!
            guard let udp = try? UDPHeader(UnsafeMutableRawBufferPointer(start: base + 20, count: packet.count - 20)) else { return false }
            return udp.isChecksumValid(source: IPv4Address(networkBytesAt: base + 12), destination: IPv4Address(networkBytesAt: base + 16))
        }
    }

    @Test func aPartialChecksumIsCompleted() throws {
        var port = port()
        var packet = Self.datagram(payload: 333)
        let complete = packet
        Self.makePartial(&packet)
        write(Self.header { $0.flags = VirtioNetHeader.needsChecksum; $0.checksumStart = 20; $0.checksumOffset = 6 } + packet)
        let received = try receiveAll(&port)
        #expect(received == [complete])
        close(device); close(peer)
    }

    @Test func aSuperPacketIsSplitAsTheKernelSplitsIt() throws {
        var port = port()
        var whole = Self.datagram(payload: 3500, identification: 100)
        Self.makePartial(&whole)
        write(Self.header {
            $0.flags = VirtioNetHeader.needsChecksum; $0.segmentation = VirtioNetHeader.Segmentation.udp.rawValue
            $0.headerLength = 28; $0.segmentSize = 1000; $0.checksumStart = 20; $0.checksumOffset = 6
        } + whole)
        let segments = try receiveAll(&port)
        #expect(segments.count == 4)
        for (index, segment) in segments.enumerated() {
            let size = index < 3 ? 1000 : 500
            #expect(segment.count == 28 + size)
            #expect(Array(segment[28...]) == Array(whole[(28 + index * 1000)..<(28 + index * 1000 + size)]))
            #expect(Int(segment[4]) << 8 | Int(segment[5]) == 100 + index, "identification counts up")
            #expect(segment[0..<20].withUnsafeBytes { InternetChecksum.checksum($0) } == 0)
            #expect(Self.udpChecksumIsValid(segment), "segment \(index)")
        }
        #expect(port.counters.coalescedSegments == 4 && port.counters.receivedPackets == 4)
        #expect(pool.freeCount == pool.frameCount)
        close(device); close(peer)
    }

    @Test func headersThatDisagreeWithTheirPacketAreCountedAndDropped() throws {
        var port = port()
        let packet = Self.datagram(payload: 2000)
        let udp = VirtioNetHeader.Segmentation.udp.rawValue
        let bad: [[UInt8]] = [
            Self.header { $0.flags = VirtioNetHeader.needsChecksum; $0.segmentation = 9; $0.segmentSize = 500; $0.checksumStart = 20; $0.checksumOffset = 6 },
            Self.header { $0.flags = VirtioNetHeader.needsChecksum; $0.checksumStart = 5000; $0.checksumOffset = 6 },
            Self.header { $0.segmentation = udp; $0.segmentSize = 500; $0.checksumStart = 20; $0.checksumOffset = 6 },
            Self.header { $0.flags = VirtioNetHeader.needsChecksum; $0.segmentation = udp; $0.segmentSize = 0; $0.checksumStart = 20; $0.checksumOffset = 6 },
            Self.header { $0.flags = VirtioNetHeader.needsChecksum; $0.segmentation = udp; $0.segmentSize = 500; $0.checksumStart = 20; $0.checksumOffset = 16 },
            Self.header { $0.flags = VirtioNetHeader.needsChecksum; $0.segmentation = VirtioNetHeader.Segmentation.tcpIPv6.rawValue; $0.segmentSize = 500; $0.checksumStart = 20; $0.checksumOffset = 16 },
        ].map { $0 + packet }
        for message in bad { write(message) }
        write(Self.header { _ in })
        write(Array(Self.header { _ in }.prefix(4)))
        #expect(try receiveAll(&port).isEmpty)
        #expect(port.counters.droppedMalformed == 8 && port.counters.receivedPackets == 0)
        #expect(pool.freeCount == pool.frameCount)
        close(device); close(peer)
    }

    @Test func aRunOfOneFlowLeavesAsOneSuperPacket() throws {
        var port = port()
        var batch = PacketBatch(pool: pool, capacity: 64)
        let sizes = [100, 100, 100, 100, 60, 100]
        for (index, size) in sizes.enumerated() {
            var packet = pool.allocate()!
            // The last one is of another flow (another source port).
            var bytes = Self.datagram(payload: size)
            if index == sizes.count - 1 { bytes[21] &+= 1 }
            bytes.withUnsafeBytes { packet.dataStart.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            packet.length = bytes.count
            batch.append(packet)
        }
        try port.transmit(&batch)
        var buffer = [UInt8](repeating: 0, count: 70000)
        let first = buffer.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, 0) }
        let header = buffer.withUnsafeBytes { VirtioNetHeader(at: $0.baseAddress!) }
        #expect(header.segmentation == VirtioNetHeader.Segmentation.udp.rawValue && header.segmentSize == 100)
        #expect(header.flags == VirtioNetHeader.needsChecksum && header.checksumStart == 20 && header.checksumOffset == 6)
        #expect(first == 10 + 28 + 460)
        #expect(Int(buffer[12]) << 8 | Int(buffer[13]) == 28 + 460, "the IPv4 length covers every segment")
        let second = buffer.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, 0) }
        #expect(second == 10 + 28 + 100)
        #expect(port.counters.transmittedPackets == 6 && port.counters.segmentedPackets == 5 && port.counters.transmitCalls == 2)
        close(device); close(peer)
    }

    @Test func aTCPSuperPacketIsSplitWithItsSequenceAndFlags() throws {
        var port = TUNPort(descriptor: device, kind: .tun, virtioHeaderLength: VirtioNetHeader.length, offloads: .all, pool: pool,
                           name: "pair", receiveTimeout: .milliseconds(10))
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0 * 5) }
        var packet: [UInt8] = [0x45, 0, 0, 0, 0, 9, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]
        packet[2] = UInt8((40 + payload.count) >> 8); packet[3] = UInt8((40 + payload.count) & 0xFF)
        // Ports 4000 → 9000, sequence 1000, header 20 bytes, FIN|PSH|ACK.
        packet += [0x0F, 0xA0, 0x23, 0x28, 0, 0, 0x03, 0xE8, 0, 0, 0, 1, 0x50, 0x19, 0xFF, 0xFF, 0, 0, 0, 0] + payload
        let pseudo = InternetChecksum.pseudoHeaderSum(source: IPv4Address(198, 18, 0, 1), destination: IPv4Address(198, 18, 0, 2),
                                                      protocol: 6, length: 20 + payload.count)
        let folded = InternetChecksum.fold(pseudo)
        packet[36] = UInt8(folded >> 8); packet[37] = UInt8(folded & 0xFF)
        write(Self.header {
            $0.flags = VirtioNetHeader.needsChecksum; $0.segmentation = VirtioNetHeader.Segmentation.tcpIPv4.rawValue
            $0.headerLength = 40; $0.segmentSize = 1000; $0.checksumStart = 20; $0.checksumOffset = 16
        } + packet)
        let segments = try receiveAll(&port)
        #expect(segments.count == 3)
        for (index, segment) in segments.enumerated() {
            let sequence = segment[24..<28].reduce(0) { $0 << 8 | Int($1) }
            #expect(sequence == 1000 + index * 1000)
            #expect(segment[33] == (index == 2 ? 0x19 : 0x10), "FIN and PSH on the last segment only")
            #expect(Array(segment[40...]) == Array(payload[(index * 1000)..<(index * 1000 + 1000)]))
            let sum = segment[20...].withUnsafeBytes {
                InternetChecksum.checksum($0, initial: InternetChecksum.pseudoHeaderSum(
                    source: IPv4Address(198, 18, 0, 1), destination: IPv4Address(198, 18, 0, 2), protocol: 6, length: 1020))
            }
            #expect(sum == 0, "segment \(index) checksum")
        }
        close(device); close(peer)
    }
}
