import FuzzDriver
import SluiceCore
import SluiceHost
import SluicePackets
import SluiceUDP

/// The whole host behind a TUN or TAP device: ARP, neighbour discovery, ICMP echo, reassembly and
/// fragmentation of replies, in front of a UDP echo with the kernel's receive rules. The first
/// byte picks TUN or TAP, checksum verification and the MTU; then a run of packets, each a
/// two-byte length, a time step in milliseconds and the bytes. Whatever comes out, every frame is
/// back in the pool once the host's timers have run out.
let pool = try! FramePool(frameCount: 1024, frameSize: (Reassembler.minimumFrameSize(headroom: 64) + 63) / 64 * 64,
                          headroom: 64)
let mac = MACAddress(0x02, 0, 0, 0, 0, 0x01)
let addresses = [IPAddress("198.18.0.1")!, IPAddress("2001:2::1")!]

func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = input(start, count)
    guard let selector = bytes.first else { return 0 }
    let format: FrameFormat = selector & 1 == 0 ? .ip : .ethernet
    var configuration = HostConfiguration(addresses: addresses, mac: format == .ethernet ? mac : nil,
                                          mtu: [1280, 1500, 9000][Int(selector >> 1) % 3])
    configuration.verifiesChecksums = selector & 8 == 0
    // With the service's port known, the host refuses the rest: port and protocol unreachable, TCP resets.
    configuration.udpPort = selector & 16 == 0 ? 7 : nil
    var acceptance = UDPAcceptance()
    acceptance.verifiesChecksums = configuration.verifiesChecksums
    acceptance.appliesKernelRules = true
    acceptance.localAddresses = addresses
    acceptance.localMAC = configuration.mac
    var stage = HostStage(UDPStage(service: UDPEchoService(), format: format, acceptance: acceptance),
                          configuration: configuration, format: format, pool: pool)
    var input = PacketBatch(pool: pool, capacity: 8)
    var output = PacketBatch(pool: pool, capacity: PacketBatch.defaultCapacity)
    var now = Instant(nanoseconds: 1_000_000_000)
    var at = 1
    while at + 3 <= bytes.count {
        let length = min(Int(bytes[at]) << 8 | Int(bytes[at + 1]), bytes.count - at - 3)
        now = now + .milliseconds(Int64(bytes[at + 2]) * 16)
        guard let index = input.appendNewFrame() else { break }
        input[index].length = length
        input[index].data.copyBytes(from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[(at + 3)..<(at + 3 + length)]))
        at += 3 + length
        if input.isFull || at + 3 > bytes.count {
            stage.handle(&input, output: &output, now: now)
            output.releaseAll()
        }
    }
    // Past every reassembly deadline, with room for whatever waits to go out.
    now = now + .seconds(3600)
    while stage.framesHeld > 0, let due = stage.pollTimeout(), due <= now {
        stage.handleTimeout(now: now, output: &output)
        output.releaseAll()
    }
    precondition(stage.framesHeld == 0 && pool.tally(held: 0).isBalanced, "a frame went missing")
    return 0
}

runFuzzer(fuzz)
