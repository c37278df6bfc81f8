#if canImport(Glibc)
import Glibc
#endif
import SluicePackets
import SluiceSystem
import Testing

/// Received control messages as the kernel writes them, and as a truncated or hostile buffer
/// holds them: read only within both the message's length and the buffer (found by
/// `fuzz-control-messages`: a message claiming more than the buffer was read past its end).
@Suite struct DatagramControlTests {
    static let local = IPEndpoint("0.0.0.0:53")!

    /// An `IP_PKTINFO` message for 198.18.0.1 (ipi_spec_dst) on interface 7, `cut` to its first bytes.
    static func readPacketInfo(cut: Int? = nil, claimedLength: Int? = nil) -> (local: IPEndpoint, interface: UInt32, gro: Int) {
        let space = 64
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: space, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: space)
        let length = 16 + 12
        buffer.storeBytes(of: claimedLength ?? length, as: Int.self)
        buffer.storeBytes(of: Int32(IPPROTO_IP), toByteOffset: 8, as: Int32.self)
        buffer.storeBytes(of: Int32(IP_PKTINFO), toByteOffset: 12, as: Int32.self)
        buffer.storeBytes(of: Int32(7), toByteOffset: 16, as: Int32.self)
        buffer.storeBytes(of: UInt32(0xC612_0001).bigEndian, toByteOffset: 20, as: UInt32.self)
        var message = msghdr()
        message.msg_control = buffer
        message.msg_controllen = cut ?? length
        let frame = UnsafeMutableRawPointer.allocate(byteCount: DatagramHeader.minimumHeadroom, alignment: 64)
        defer { frame.deallocate() }
        let header = DatagramHeader(frameStart: frame)
        let gro = DatagramControl.readAll(&message, into: header, local: local)
        return (header.local, header.interfaceIndex, gro)
    }

    @Test func aWholePacketInfoGivesTheLocalAddressAndInterface() {
        let result = Self.readPacketInfo()
        #expect(result.local == IPEndpoint("198.18.0.1:53")! && result.interface == 7 && result.gro == 0)
    }

    @Test func aTruncatedPacketInfoIsPassedOver() {
        // The kernel's MSG_CTRUNC: the length says what is there.
        #expect(Self.readPacketInfo(cut: 20, claimedLength: 20).local == Self.local)
        // A length claiming more than the buffer holds.
        #expect(Self.readPacketInfo(cut: 20).local == Self.local)
    }
}
