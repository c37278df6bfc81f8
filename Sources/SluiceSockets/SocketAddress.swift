#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets
import SluiceUDP

/// Converts between ``IPEndpoint`` and the kernel's `sockaddr` forms (shared with SluiceURing's sockets).
package enum SocketAddress {
    /// Calls `body` with `endpoint` as a `sockaddr` (IPv4 mapped into IPv6 when `family` is `AF_INET6`).
    package static func with<R>(_ endpoint: IPEndpoint, family: Int32,
                                _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var storage = sockaddr_storage()
        return withUnsafeMutableBytes(of: &storage) { raw in
            DatagramHeader.store(endpoint, sockaddrAt: raw.baseAddress!, mapIPv4: family == AF_INET6)
            let length = family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
            return body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(length))
        }
    }

    /// The endpoint in a `sockaddr` the kernel filled.
    static func endpoint(from raw: UnsafeRawPointer) -> IPEndpoint {
        DatagramHeader(frameStart: UnsafeMutableRawPointer(mutating: raw)).peer
    }

    /// The address a socket is bound to.
    package static func localEndpoint(of descriptor: Int32) -> IPEndpoint? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) == 0 }
        }
        guard ok else { return nil }
        return withUnsafeBytes(of: &storage) { endpoint(from: $0.baseAddress!) }
    }
}

/// A socket call that failed: which one, its errno, and what to do.
public struct SocketError: SystemCallError, Equatable, Sendable {
    /// The call, e.g. `"bind(198.18.0.1:53)"`.
    public var operation: String
    /// Its errno.
    public var errno: Int32

    /// Creates an error.
    public init(operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// What the user can do about it, when there is something to say.
    public var hint: String {
        switch errno {
        case EADDRINUSE: "another socket holds this address and port; pick another port or stop that process"
        case EACCES, EPERM: "ports below 1024 and raw sockets need CAP_NET_BIND_SERVICE / CAP_NET_ADMIN; run as root"
        case EADDRNOTAVAIL: "the address is not configured on any interface here; use 0.0.0.0 or [::] or add the address"
        case EAFNOSUPPORT: "this kernel has no support for the address family (IPv6 disabled?)"
        case EMFILE, ENFILE: "too many open files; raise the limit (ulimit -n)"
        default: ""
        }
    }
}
