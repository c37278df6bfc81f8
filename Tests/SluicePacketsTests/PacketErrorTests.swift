import SluicePackets
import Testing

@Suite struct PacketErrorTests {
    @Test func namesAreDistinctAndShort() {
        let names = PacketError.allCases.map(\.name)
        #expect(Set(names).count == PacketError.allCases.count)
        #expect(PacketError.allCases.count == 17)
        for name in names {
            #expect(!name.isEmpty && name.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" }, "\(name)")
        }
        #expect(PacketError.ipv4TotalLengthPastBuffer.name == "ipv4-total-length-past-buffer")
        #expect(PacketError.truncatedVLAN.description == "truncated-vlan")
    }

    @Test func onlyNotUDPAndFragmentAreWellFormed() {
        #expect(PacketError.allCases.filter { !$0.isMalformed } == [.notUDP, .fragment])
    }
}
