#if canImport(Glibc)
import Glibc
#endif
import FuzzDriver
import SluiceCore
import SluiceTUN

/// One read from a TUN or TAP queue made with `IFF_VNET_HDR`: the virtio-net header and the
/// packet behind it, through the real `TUNPort` receive path (checksum completion, super-packets
/// split into segments) over a packet socket pair standing in for the device. The first byte
/// picks TUN or TAP; the rest is what the device hands over. A one-byte packet follows it, so the
/// port is read until that arrives: every segment and drop accounted, every frame back in the pool.
let pool = try! FramePool(frameCount: 64, frameSize: 72 * 1024, headroom: 64)
let pair: (Int32, Int32) = {
    var descriptors: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &descriptors) == 0)
    var size: Int32 = 4 << 20
    setsockopt(descriptors[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    return (descriptors[0], descriptors[1])
}()
/// A virtio-net header with nothing to do, then one byte.
let marker: [UInt8] = Array(repeating: 0, count: VirtioNetHeader.length) + [0xA5]

func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = input(start, count)
    guard let selector = bytes.first else { return 0 }
    let packet = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[1...].prefix(65535 + VirtioNetHeader.length))
    guard write(pair.0, packet.baseAddress ?? UnsafeRawPointer(pool.base), packet.count) == packet.count,
          write(pair.0, marker, marker.count) == marker.count else { preconditionFailure("the socket pair refused a packet") }
    var port = TUNPort(descriptor: pair.1, kind: selector & 1 == 0 ? .tun : .tap, virtioHeaderLength: VirtioNetHeader.length,
                       offloads: .all, pool: pool, name: "fuzz", receiveTimeout: .milliseconds(1))
    var batch = PacketBatch(pool: pool, capacity: 32)
    var sawMarker = false
    while !sawMarker {
        guard (try? port.receive(into: &batch)) != nil else { preconditionFailure("a read from the socket pair failed") }
        for index in 0..<batch.count where batch[index].length == 1 && batch[index].data[0] == 0xA5 {
            sawMarker = true
        }
        batch.releaseAll()
    }
    precondition(port.framesHeld == 0 && pool.tally(held: 0).isBalanced, "a frame went missing")
    return 0
}

runFuzzer(fuzz)
