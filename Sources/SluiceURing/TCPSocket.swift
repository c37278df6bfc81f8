#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceURing
import SluiceCore
import SluicePackets
import SluiceSystem

/// The few synchronous socket calls a ``TCPEngine`` makes when it opens something (socket, bind,
/// listen); everything per byte goes through the ring.
enum TCPSocket {
    /// A non-inheritable TCP socket of `family`.
    static func make(family: Int32) throws(SystemCallError) -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(.tcp, operation: "socket(\(family == AF_INET6 ? "AF_INET6" : "AF_INET"), SOCK_STREAM)", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// A listening socket bound to `endpoint` (`[::]` is dual-stack).
    static func listen(on endpoint: IPEndpoint, backlog: Int32) throws(SystemCallError) -> Int32 {
        let fd = try make(family: endpoint.address.family)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if endpoint.address.family == AF_INET6 {
            var zero: Int32 = 0
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
        }
        let bound = SocketAddress.with(endpoint, family: endpoint.address.family) { bind(fd, $0, $1) }
        guard bound == 0 else {
            let error = errno
            Glibc.close(fd)
            throw SystemCallError(.tcp, operation: "bind(\(endpoint))", errno: error,
                                  hint: error == EACCES && endpoint.port < 1024 ? Capability.requirement([.netBindService], for: "a port below 1024") : nil)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let error = errno
            Glibc.close(fd)
            throw SystemCallError(.tcp, operation: "listen(\(endpoint))", errno: error)
        }
        return fd
    }

    /// Writes `endpoint` as a `sockaddr_in` or `sockaddr_in6` (the latter fits either).
    static func store(_ endpoint: IPEndpoint, into storage: inout sockaddr_in6) {
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            DatagramHeader.store(endpoint, sockaddrAt: raw.baseAddress!, mapIPv4: false)
        }
    }

    /// The `sockaddr` length for `endpoint`'s family.
    static func length(of endpoint: IPEndpoint) -> socklen_t {
        socklen_t(endpoint.address.family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
    }
}
