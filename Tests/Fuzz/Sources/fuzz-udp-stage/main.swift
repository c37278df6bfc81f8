import FuzzDriver
import SluiceCore
import SluicePackets
import SluiceUDP

/// One frame, its first byte choosing the format and whether checksums are verified, through the
/// parser and the UDP stage (echo service, kernel receive rules on); every frame must come back
/// to the pool.
let pool = try! FramePool(frameCount: 8, frameSize: 4096, headroom: DatagramHeader.minimumHeadroom)

func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let all = input(start, count)
    guard let selector = all.first else { return 0 }
    let bytes = UnsafeBufferPointer(rebasing: all.dropFirst().prefix(4000))
    let format: FrameFormat = switch selector % 3 {
    case 0: .ethernet
    case 1: .ip
    default: .datagram
    }
    var scratch = Array(bytes)
    scratch.withUnsafeMutableBytes { frame in
        _ = try? UDPFrame.parse(frame, linkLayer: selector & 4 == 0 ? .ethernet : .ip)
    }
    var acceptance = UDPAcceptance()
    acceptance.verifiesChecksums = selector & 8 != 0
    acceptance.appliesKernelRules = selector & 16 != 0
    var stage = UDPStage(service: UDPEchoService(), format: format, acceptance: acceptance)
    var input = PacketBatch(pool: pool, capacity: 4)
    var output = PacketBatch(pool: pool, capacity: 4)
    let index = input.appendNewFrame()!
    input[index].length = bytes.count
    input[index].data.copyBytes(from: UnsafeRawBufferPointer(bytes))
    stage.handle(&input, output: &output, now: Instant(nanoseconds: 1))
    if format != .datagram, output.count == 1 {
        precondition(replyChecksumsAreValid(output[0].data, linkLayer: format == .ethernet ? .ethernet : .ip),
                     "a reply with a wrong checksum")
    }
    output.releaseAll()
    precondition(pool.tally(held: 0).isBalanced, "a frame went missing")
    return 0
}

/// Whether a reply's IPv4 header and UDP checksums hold, as a peer's kernel checks them.
func replyChecksumsAreValid(_ frame: UnsafeMutableRawBufferPointer, linkLayer: LinkLayer) -> Bool {
    guard let layout = try? UDPFrame.parse(frame, linkLayer: linkLayer),
          let udp = try? UDPHeader(UnsafeMutableRawBufferPointer(rebasing: frame[layout.transportOffset...]))
    else { return false }
    let network = frame.baseAddress! + layout.networkOffset
    if layout.isIPv6 {
        return udp.isChecksumValid(source: IPv6Address(networkBytesAt: network + 8), destination: IPv6Address(networkBytesAt: network + 24))
    }
    let header = UnsafeRawBufferPointer(start: network, count: layout.transportOffset - layout.networkOffset)
    return InternetChecksum.checksum(header) == 0 && udp.checksum != 0
        && udp.isChecksumValid(source: IPv4Address(networkBytesAt: network + 12), destination: IPv4Address(networkBytesAt: network + 16))
}

runFuzzer(fuzz)
