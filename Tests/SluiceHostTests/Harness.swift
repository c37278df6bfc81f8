import SluiceCore
import SluiceHost
import SluicePackets

/// Frames big enough for reassembly, and byte-level builders for datagrams and their fragments.
struct Harness {
    let pool: FramePool

    init(frames: Int = 256) throws {
        pool = try FramePool(frameCount: frames, frameSize: 66560, headroom: 64)
    }

    func packet(_ bytes: [UInt8]) -> Packet {
        var packet = pool.allocate()!
        bytes.withUnsafeBytes { packet.dataStart.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        packet.length = bytes.count
        return packet
    }

    static func bytes(_ packet: borrowing Packet) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: packet.dataStart, count: packet.length))
    }

    /// A whole UDP datagram from `source` to `destination` over bare IP (or Ethernet), payload bytes counting up.
    static func datagram(from source: String, to destination: String, payload size: Int, linkLayer: LinkLayer = .ip) -> [UInt8] {
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        var frame = [UInt8](repeating: 0, count: size + 80)
        let length = frame.withUnsafeMutableBytes { buffer in
            payload.withUnsafeBytes { bytes in
                UDPFrame.build(into: buffer, linkLayer: linkLayer, sourceMAC: MACAddress(2, 0, 0, 0, 0, 1),
                               destinationMAC: MACAddress(2, 0, 0, 0, 0, 2),
                               source: IPEndpoint(source)!, destination: IPEndpoint(destination)!, payload: bytes)
            }
        }
        return Array(frame[..<length])
    }

    /// An IPv4 fragment of `whole` (a 20-byte header and its payload): `count` payload bytes at `offset`.
    static func fragment4(_ whole: [UInt8], identification: UInt16 = 0x1234, offset: Int, count: Int, more: Bool) -> [UInt8] {
        var header = Array(whole[0..<20])
        let total = 20 + count
        header[2] = UInt8(total >> 8); header[3] = UInt8(total & 0xFF)
        header[4] = UInt8(identification >> 8); header[5] = UInt8(identification & 0xFF)
        let field = (more ? 0x2000 : 0) | (offset / 8)
        header[6] = UInt8(field >> 8); header[7] = UInt8(field & 0xFF)
        header[10] = 0; header[11] = 0
        let checksum = header.withUnsafeBytes { InternetChecksum.checksum($0) }
        header[10] = UInt8(checksum >> 8); header[11] = UInt8(checksum & 0xFF)
        return header + whole[(20 + offset)..<(20 + offset + count)]
    }

    /// An IPv6 fragment of `whole` (a 40-byte header and its payload).
    static func fragment6(_ whole: [UInt8], identification: UInt32 = 0xABCD_0001, offset: Int, count: Int, more: Bool) -> [UInt8] {
        var header = Array(whole[0..<40])
        let next = header[6]
        header[6] = 44
        let length = 8 + count
        header[4] = UInt8(length >> 8); header[5] = UInt8(length & 0xFF)
        let field = offset | (more ? 1 : 0)
        let fragment: [UInt8] = [next, 0, UInt8(field >> 8), UInt8(field & 0xFF),
                                 UInt8(identification >> 24), UInt8((identification >> 16) & 0xFF),
                                 UInt8((identification >> 8) & 0xFF), UInt8(identification & 0xFF)]
        return header + fragment + whole[(40 + offset)..<(40 + offset + count)]
    }

    static func isIPv4HeaderValid(_ bytes: [UInt8], at offset: Int = 0) -> Bool {
        let length = Int(bytes[offset] & 0x0F) * 4
        return bytes[offset..<(offset + length)].withUnsafeBytes { InternetChecksum.checksum($0) } == 0
    }
}
