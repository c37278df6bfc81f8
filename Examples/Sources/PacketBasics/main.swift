// Frames, batches, packet views and a stage pipeline, with no network and a fake clock: how a
// stage is tested, and the pieces every backend is made of.
//
//   swift run packet-basics
import Sluice

// README: begin stage
/// The smallest stage: counts what passes and hands every packet on.
struct PacketCounter: Stage {
    var packets = 0

    mutating func handle(_ input: inout PacketBatch, output: inout PacketBatch, now: Instant) {
        packets += input.count
        input.moveAll(to: &output)
    }
}
// README: end

// README: begin packets
let pool = try FramePool(frameCount: 64, frameSize: 2048, headroom: 256)   // one mmap'd region, UMEM layout
var input = PacketBatch(pool: pool)              // ~Copyable: a frame is owned in one place only
var output = PacketBatch(pool: pool)

// Build a UDP request in a frame of the pool: Ethernet, IPv4, UDP, valid checksums.
let client = IPEndpoint("198.18.0.2:5353")!, server = IPEndpoint("198.18.0.1:53")!
let request = input.appendNewFrame()!
let length = Array("hello".utf8).withUnsafeBytes { payload in
    UDPFrame.build(into: UnsafeMutableRawBufferPointer(rebasing: input[request].frame[pool.headroom...]),
                   linkLayer: .ethernet, sourceMAC: MACAddress(0x02, 0, 0, 0, 0, 2), destinationMAC: MACAddress(0x02, 0, 0, 0, 0, 1),
                   source: client, destination: server, payload: payload)
}
input[request].setData(offset: pool.headroom, length: length)

// Two stages composed statically (no existentials): a counter, then the UDP stage over a service.
var pipeline = Pipeline(PacketCounter(), UDPStage(service: UDPEchoService(), format: .ethernet), pool: pool)
let clock = ManualTimeSource()
pipeline.handle(&input, output: &output, now: clock.now())
if let due = pipeline.pollTimeout() { clock.advance(to: due); pipeline.handleTimeout(now: clock.now(), output: &output) }

// The reply left in the request's own frame: parse it (bounds-checked once) and read its fields.
let reply = try UDPFrame.parse(output[0].data, linkLayer: .ethernet)
let ip = try IPv4Header(UnsafeMutableRawBufferPointer(rebasing: output[0].data[reply.networkOffset...]))
print("\(pipeline.first.packets) packet(s) in, reply \(ip.source) -> \(ip.destination), \(reply.payloadLength) payload bytes")
output.releaseAll()
precondition(pool.tally(held: 0).isBalanced)     // every frame accounted for
// README: end

// README: begin host
// The host behind a TUN device: a 5000-byte datagram arrives in fragments, is reassembled for the
// echo service, and its reply leaves fragmented again for a 1500-byte MTU.
let big = try FramePool(frameCount: 512, frameSize: 66560, headroom: 64)   // a whole 64 KiB datagram per frame
let host = HostConfiguration(addresses: [.v4(IPv4Address(198, 18, 1, 2))], mtu: 1500)
var stage = HostStage(UDPStage(service: UDPEchoService(), format: .ip), configuration: host, format: .ip, pool: big)

var datagram = PacketBatch(pool: big, capacity: 8)
let whole = datagram.appendNewFrame()!
let size = [UInt8](repeating: 7, count: 5000).withUnsafeBytes { payload in
    UDPFrame.build(into: datagram[whole].frame, linkLayer: .ip, sourceMAC: MACAddress(rawValue: 0), destinationMAC: MACAddress(rawValue: 0),
                   source: IPEndpoint("198.18.1.1:4000")!, destination: IPEndpoint("198.18.1.2:9000")!, payload: payload)
}
datagram[whole].setData(offset: 0, length: size)
var fragments = PacketBatch(pool: big)
var fragmenter = Fragmenter(mtu: 1500)
_ = fragmenter.fragment(datagram.removeLast(), networkOffset: 0, into: &fragments)   // as the kernel would send it
var replies = PacketBatch(pool: big)
stage.handle(&fragments, output: &replies, now: clock.now())
print("\(stage.counters.reassembly.reassembled) datagram reassembled, reply in \(replies.count) fragments")
replies.releaseAll()
// README: end
