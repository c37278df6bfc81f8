#if canImport(Glibc)
import Glibc
#endif
import FuzzDriver
import SluicePackets
import SluiceSystem

/// A received message's control buffer, as the kernel (or a truncated copy, `MSG_CTRUNC`) leaves
/// it, read the way the socket port reads it: every message walked, none read past its length or
/// past the buffer. The first byte picks the local endpoint's family; the rest is the buffer.
nonisolated(unsafe) let frame = UnsafeMutableRawPointer.allocate(byteCount: DatagramHeader.minimumHeadroom, alignment: 64)
let locals = [IPEndpoint("198.18.0.1:53")!, IPEndpoint("[2001:2::1]:53")!, IPEndpoint("0.0.0.0:9")!, IPEndpoint("[::]:9")!]

func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = input(start, count)
    guard let selector = bytes.first else { return 0 }
    let body = UnsafeBufferPointer(rebasing: bytes.dropFirst().prefix(4096))
    // Exactly the input's bytes: AddressSanitizer catches a read past them.
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(body.count, 1), alignment: MemoryLayout<cmsghdr>.alignment)
    defer { buffer.deallocate() }
    if let base = body.baseAddress { buffer.copyMemory(from: base, byteCount: body.count) }
    var message = msghdr()
    message.msg_control = buffer
    message.msg_controllen = body.count
    let header = DatagramHeader(frameStart: frame)
    let local = locals[Int(selector) % locals.count]
    let segmentSize = DatagramControl.readAll(&message, into: header, local: local)
    precondition(segmentSize >= 0, "a segment size is never negative")
    precondition(header.local.port == local.port, "the local port is the socket's")
    return 0
}

runFuzzer(fuzz)
