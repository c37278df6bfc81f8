import FuzzDriver
import SluiceCore
import SluiceHost

/// IPv4 and IPv6 fragments into the reassembler: the input is a run of packets, each a length
/// byte pair, a time step in milliseconds and the packet's bytes. Whatever comes out, every frame
/// is back in the pool once the datagrams' time has run out.
let pool = try! FramePool(frameCount: 64, frameSize: (Reassembler.minimumFrameSize(headroom: 64) + 63) / 64 * 64, headroom: 64)

func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = input(start, count)
    var reassembler = Reassembler(pool: pool, limits: ReassemblyLimits())
    var now = Instant(nanoseconds: 1_000_000_000)
    var at = 0
    while at + 3 <= bytes.count {
        let length = min(Int(bytes[at]) << 8 | Int(bytes[at + 1]), bytes.count - at - 3)
        now = now + .milliseconds(Int64(bytes[at + 2]) * 16)
        let packetBytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[(at + 3)..<(at + 3 + length)])
        at += 3 + length
        reassembler.expire(now: now)
        guard var packet = pool.allocate() else { break }
        packet.dataStart.copyMemory(from: packetBytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, byteCount: length)
        packet.length = length
        let isFragment = length >= 20 && (packetBytes[0] >> 4 == 4 ? Reassembler.isIPv4Fragment(packet.dataStart)
            : Reassembler.ipv6FragmentHeader(packet.dataStart, length: length) != nil)
        if isFragment {
            _ = reassembler.insert(&packet, networkOffset: 0, now: now)
        }
        pool.release(packet)
    }
    reassembler.expire(now: now + .seconds(3600))
    precondition(reassembler.activeDatagrams == 0 && pool.freeCount == pool.frameCount, "a frame went missing")
    return 0
}

runFuzzer(fuzz)
