#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluiceCore
import SluicePackets

/// A `setsockopt` for an `Int32` option, throwing an error that names it (`label`).
public func setOption(_ descriptor: Int32, _ level: Int32, _ name: Int32, _ value: Int32,
                      _ label: String) throws(SystemCallError) {
    var v = value
    _ = try systemCall(.socket, "setsockopt(\(label))") {
        setsockopt(descriptor, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }
}

/// Sets the options every Sluice UDP socket needs before `bind`, whichever port drives it
/// (`UDPSocketPort` in SluiceSockets, the io_uring port in SluiceURing): `SO_REUSEPORT`, dual-stack and
/// local-address reporting for a wildcard (`IP_PKTINFO`/`IPV6_RECVPKTINFO`), `UDP_GRO`, and the buffer sizes.
///
/// - Parameters:
///   - descriptor: the socket.
///   - family: `AF_INET` or `AF_INET6`, as the socket was made.
///   - listen: the address it will bind; `[::]` makes an IPv6 socket dual-stack.
///   - reusePort: `SO_REUSEPORT`, so workers share the address.
///   - receiveOffload: `UDP_GRO`.
///   - socketBufferBytes: `SO_RCVBUF`/`SO_SNDBUF`, forced past the sysctl caps when privileged; `nil` keeps the default.
public func configureDatagramSocket(_ descriptor: Int32, family: Int32, listen: IPEndpoint, reusePort: Bool,
                                     receiveOffload: Bool, socketBufferBytes: Int?) throws(SystemCallError) {
    if reusePort { try setOption(descriptor, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT") }
    // A socket bound to one address receives only datagrams sent to it (no broadcast, no
    // multicast), so only a wildcard needs each datagram's local address reported.
    let wildcard = listen.address == .v4(.any) || listen.address == .v6(.any)
    if family == AF_INET6 {
        try setIPv6Only(descriptor, listen: listen)
        if wildcard {
            // Also reports IPv4 datagrams on a dual-stack socket, as IPv4-mapped destinations.
            try setOption(descriptor, Int32(IPPROTO_IPV6), IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO")
            // A dual-stack socket's IPv4 datagrams also get IP_PKTINFO, after IPV6_PKTINFO: its
            // ipi_spec_dst is the address to answer a subnet broadcast from.
            try setOption(descriptor, Int32(IPPROTO_IP), IP_PKTINFO, 1, "IP_PKTINFO")
        }
    } else if wildcard {
        try setOption(descriptor, Int32(IPPROTO_IP), IP_PKTINFO, 1, "IP_PKTINFO")
    }
    if receiveOffload {
        try setOption(descriptor, Int32(IPPROTO_UDP), sluice_UDP_GRO, 1, "UDP_GRO")
    }
    if let bytes = socketBufferBytes {
        let size = Int32(clamping: bytes)
        // The FORCE variants pass the sysctl caps when privileged; fall back to the capped ones.
        if (try? setOption(descriptor, SOL_SOCKET, SO_RCVBUFFORCE, size, "SO_RCVBUFFORCE")) == nil {
            try setOption(descriptor, SOL_SOCKET, SO_RCVBUF, size, "SO_RCVBUF")
        }
        if (try? setOption(descriptor, SOL_SOCKET, SO_SNDBUFFORCE, size, "SO_SNDBUFFORCE")) == nil {
            try setOption(descriptor, SOL_SOCKET, SO_SNDBUF, size, "SO_SNDBUF")
        }
    }
}

/// Fails as a plain `bind` would when another UDP socket already holds `listen`.
///
/// Workers bind with `SO_REUSEPORT`, and the kernel lets any socket of the same user that also
/// set it join their group: a second server started on the same port would silently take a share
/// of the first one's traffic. A socket bound without the option, then closed, finds out first
/// (a socket that binds between that close and the first worker's bind still joins: the check
/// narrows the window, the kernel offers no way to close it). Port 0 asks for a free port, so
/// there is nothing to check.
public func requireFreeDatagramAddress(_ listen: IPEndpoint) throws(SystemCallError) {
    guard listen.port != 0 else { return }
    let family = listen.address.family
    let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SystemCallError(.socket, operation: "socket(UDP)", errno: errno) }
    defer { close(fd) }
    if family == AF_INET6 { try setIPv6Only(fd, listen: listen) }
    let bound = SocketAddress.with(listen, family: family) { bind(fd, $0, $1) }
    guard bound == 0 else { throw SystemCallError(.socket, operation: "bind(\(listen))", errno: errno) }
}

/// `IPV6_V6ONLY` off for `[::]` (dual-stack), on for any other IPv6 address.
private func setIPv6Only(_ descriptor: Int32, listen: IPEndpoint) throws(SystemCallError) {
    let only: Int32 = listen.address == .v6(.any) ? 0 : 1
    try setOption(descriptor, Int32(IPPROTO_IPV6), IPV6_V6ONLY, only, "IPV6_V6ONLY")
}

/// Reads a socket's drops (``socketDrops(_:)``) now and then: once every `interval` calls of
/// ``sample(_:every:)``, so a port can ask on every receive without a syscall per batch.
public struct SocketDropSampler: Sendable {
    @usableFromInline var calls = 0

    /// A sampler that reads at the first call's `interval`-th.
    public init() {}

    /// The socket's drops when this call is the `interval`-th since the last read, else `nil`.
    @inlinable
    public mutating func sample(_ descriptor: Int32, every interval: Int = 256) -> UInt64? {
        calls &+= 1
        guard calls >= interval else { return nil }
        calls = 0
        return socketDrops(descriptor)
    }
}

/// Packets the kernel dropped at `descriptor` (a full receive buffer, a filter): the socket's
/// `SK_MEMINFO_DROPS` from `SO_MEMINFO`; 0 when the kernel does not say.
public func socketDrops(_ descriptor: Int32) -> UInt64 {
    // SO_MEMINFO (55) and SK_MEMINFO_DROPS (8), from linux/sock_diag.h: newer than some headers.
    var memory = [UInt32](repeating: 0, count: 9)
    var length = socklen_t(memory.count * MemoryLayout<UInt32>.size)
    guard getsockopt(descriptor, SOL_SOCKET, 55, &memory, &length) == 0,
          length >= socklen_t(9 * MemoryLayout<UInt32>.size) else { return 0 }
    return UInt64(memory[8])
}

/// Whether `target`'s host says nothing listens there: one empty datagram from a connected
/// socket, answered within `timeout` by ICMP port unreachable (`ECONNREFUSED`). For saying
/// why a run got no replies; `false` when nothing (or anything else) comes back.
public func portUnreachable(_ target: IPEndpoint, timeout: Duration = .milliseconds(300)) -> Bool {
    let family = target.address.family
    let descriptor = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    guard SocketAddress.with(target, family: family, { connect(descriptor, $0, $1) }) == 0,
          send(descriptor, nil, 0, 0) == 0 else { return false }
    var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
    guard poll(&ready, 1, Int32(clamping: timeout.nanosecondsClamped / 1_000_000)) == 1 else { return false }
    var byte: UInt8 = 0
    return recv(descriptor, &byte, 1, Int32(MSG_DONTWAIT)) < 0 && errno == ECONNREFUSED
}
