#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluicePackets

/// A plain blocking kernel UDP socket: the independent peer that Sluice's ports are tested against.
public final class KernelUDPSocket {
    /// The descriptor.
    public let descriptor: Int32
    /// The family, `AF_INET` or `AF_INET6`.
    public let family: Int32
    /// The errno of the last ``receive()`` that got no datagram (0 after one that did).
    public private(set) var lastReceiveError: Int32 = 0

    /// Opens a socket bound to `bind` (port 0 for any), with a receive timeout.
    public init(bind endpoint: IPEndpoint, receiveTimeout: Duration = .seconds(2), bufferBytes: Int32 = 8 << 20) {
        if case .v4 = endpoint.address { family = AF_INET } else { family = AF_INET6 }
        // Close-on-exec: a child another test spawns meanwhile must not keep the port bound.
        descriptor = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(descriptor >= 0, "socket: \(errno)")
        var size = bufferBytes
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUFFORCE, &size, 4)
        setsockopt(descriptor, SOL_SOCKET, SO_SNDBUFFORCE, &size, 4)
        var timeout = timeval(tv_sec: Int(receiveTimeout.components.seconds),
                              tv_usec: Int(receiveTimeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result = KernelSocketAddress.with(endpoint, family: family) { Glibc.bind(descriptor, $0, $1) }
        precondition(result == 0, "bind \(endpoint): errno \(errno)")
    }

    deinit { close(descriptor) }

    /// The bound address.
    public var localEndpoint: IPEndpoint {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return withUnsafeBytes(of: &storage) { KernelSocketAddress.endpoint($0.baseAddress!) }
    }

    /// Connects to `endpoint`: ICMP errors about it then fail the next receive (port unreachable
    /// as `ECONNREFUSED`). Returns 0, or the errno.
    public func connect(to endpoint: IPEndpoint) -> Int32 {
        let result = KernelSocketAddress.with(endpoint, family: family) { Glibc.connect(descriptor, $0, $1) }
        return result == 0 ? 0 : errno
    }

    /// Sends one datagram.
    @discardableResult
    public func send(_ bytes: [UInt8], to endpoint: IPEndpoint) -> Int {
        KernelSocketAddress.with(endpoint, family: family) { address, length in
            bytes.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, 0, address, length) }
        }
    }

    /// Sends `bytes` as one GSO send cut into `segmentSize` datagrams (`UDP_SEGMENT`).
    @discardableResult
    public func send(_ bytes: [UInt8], to endpoint: IPEndpoint, segmentSize: Int) -> Int {
        KernelSocketAddress.with(endpoint, family: family) { address, length in
            bytes.withUnsafeBytes { raw in
                var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress), iov_len: raw.count)
                var control = [UInt8](repeating: 0, count: sluice_cmsg_space(2))
                return control.withUnsafeMutableBytes { c in withUnsafeMutablePointer(to: &vector) { v in
                    var message = msghdr(
                        msg_name: UnsafeMutableRawPointer(mutating: address), msg_namelen: length,
                        msg_iov: v, msg_iovlen: 1, msg_control: c.baseAddress, msg_controllen: c.count, msg_flags: 0)
                    let header = sluice_cmsg_firsthdr(&message)!
                    header.pointee.cmsg_level = Int32(IPPROTO_UDP)
                    header.pointee.cmsg_type = sluice_UDP_SEGMENT
                    header.pointee.cmsg_len = sluice_cmsg_len(2)
                    UnsafeMutableRawPointer(sluice_cmsg_data(header)!).storeBytes(of: UInt16(segmentSize), as: UInt16.self)
                    return sendmsg(descriptor, &message, 0)
                } }
            }
        }
    }

    /// Sends `payload` to `target` again and again until it comes back or `timeout` passes: for
    /// a server that is expected to answer again after a fault.
    public func echoes(_ payload: [UInt8], to target: IPEndpoint, timeout: Duration = .seconds(5)) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            send(payload, to: target)
            if receive()?.bytes == payload { return true }
        }
        return false
    }

    /// Receives one datagram (up to 64 KiB), or `nil` on timeout.
    public func receive() -> (bytes: [UInt8], from: IPEndpoint)? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let count = buffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(descriptor, raw.baseAddress, raw.count, 0, $0, &length)
                }
            }
        }
        guard count >= 0 else {
            lastReceiveError = errno
            return nil
        }
        lastReceiveError = 0
        let from = withUnsafeBytes(of: &storage) { KernelSocketAddress.endpoint($0.baseAddress!) }
        return (Array(buffer[0..<count]), from)
    }
}

/// `sockaddr` conversions for the kernel-socket helpers, written out here rather than taken
/// from Sluice, so the peers stay independent of the code they test.
public enum KernelSocketAddress {
    /// Calls `body` with `endpoint` as a `sockaddr` of `family` (IPv4 mapped into IPv6 for `AF_INET6`).
    public static func with<R>(_ endpoint: IPEndpoint, family: Int32, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var storage = sockaddr_storage()
        return withUnsafeMutableBytes(of: &storage) { raw in
            let p = raw.baseAddress!
            var target = endpoint.address
            if family == AF_INET6, case .v4(let a) = target { target = .v6(IPv6Address(mapping: a)) }
            switch target {
            case .v4(let a):
                p.storeBytes(of: sa_family_t(AF_INET), as: sa_family_t.self)
                a.store(networkBytesAt: p + 4)
            case .v6(let a):
                p.storeBytes(of: sa_family_t(AF_INET6), as: sa_family_t.self)
                a.store(networkBytesAt: p + 8)
            }
            p.storeBytes(of: endpoint.port.bigEndian, toByteOffset: 2, as: UInt16.self)
            let length = family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
            return body(p.assumingMemoryBound(to: sockaddr.self), socklen_t(length))
        }
    }

    /// The endpoint in a `sockaddr` the kernel filled.
    static func endpoint(_ p: UnsafeRawPointer) -> IPEndpoint {
        let family = p.loadUnaligned(as: sa_family_t.self)
        let port = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        if family == sa_family_t(AF_INET) { return IPEndpoint(address: .v4(IPv4Address(networkBytesAt: p + 4)), port: port) }
        return IPEndpoint(address: IPAddress.v6(IPv6Address(networkBytesAt: p + 8)).unmapped, port: port)
    }
}

/// A seeded SplitMix64 generator: deterministic payloads and random cases every test can rebuild.
public struct TestBytes: RandomNumberGenerator {
    private var state: UInt64

    /// A generator seeded with `seed`.
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    /// The next 64 random bits (SplitMix64).
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` random bytes.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }
}

/// Where the `sluice` executable of this build is: beside the test bundle.
public enum SluiceExecutable {
    /// The path, e.g. `.build/debug/sluice`.
    public static var path: String { path(named: "sluice") }

    /// The path of another executable of this build, e.g. `.build/debug/SluiceSilenceProbe`.
    public static func path(named name: String) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        var directory = exe
        while let slash = directory.lastIndex(of: "/") {
            directory = String(directory[..<slash])
            let candidate = directory + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return name
    }
}
