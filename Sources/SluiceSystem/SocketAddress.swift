#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets

/// Converts between `IPEndpoint` and the kernel's `sockaddr_in`/`sockaddr_in6`.
public enum SocketAddress {
    /// Calls `body` with `endpoint` as a `sockaddr` (IPv4 mapped into IPv6 when `family` is `AF_INET6`).
    public static func with<R>(_ endpoint: IPEndpoint, family: Int32, scopeID: UInt32 = 0,
                                _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var storage = sockaddr_storage()
        return withUnsafeMutableBytes(of: &storage) { raw in
            DatagramHeader.store(endpoint, sockaddrAt: raw.baseAddress!, mapIPv4: family == AF_INET6)
            if family == AF_INET6, scopeID != 0 {
                raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self).pointee.sin6_scope_id = scopeID
            }
            let length = family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
            return body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(length))
        }
    }

    /// The endpoint in a `sockaddr` the kernel filled.
    public static func endpoint(from raw: UnsafeRawPointer) -> IPEndpoint {
        DatagramHeader(frameStart: UnsafeMutableRawPointer(mutating: raw)).peer
    }

    /// The address a socket is bound to.
    public static func localEndpoint(of descriptor: Int32) -> IPEndpoint? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) == 0 }
        }
        guard ok else { return nil }
        return withUnsafeBytes(of: &storage) { endpoint(from: $0.baseAddress!) }
    }
}

