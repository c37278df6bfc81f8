#if canImport(Glibc)
import Glibc
#endif
import SluicePackets

/// A plain kernel TCP client socket: the independent peer that Sluice's TCP engine is tested
/// against. Closed when released: keep it referenced for as long as the connection must stay up.
public final class KernelTCPSocket {
    /// The descriptor (blocking unless ``setNonBlocking()`` was called).
    public let descriptor: Int32

    /// Connects to `endpoint`, blocking until the handshake is done (a listener's backlog
    /// completes it before the server accepts), or for at most `timeout` seconds when given.
    /// `receiveBufferBytes` sets `SO_RCVBUF` before the handshake, so the window it offers is small
    /// from the start.
    ///
    /// - Throws: ``KernelSocketError`` naming the call that failed (`EINPROGRESS` past the timeout).
    public init(connectingTo endpoint: IPEndpoint, timeout: Int? = nil, receiveBufferBytes: Int32? = nil) throws(KernelSocketError) {
        let family = endpoint.address.family
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw KernelSocketError(call: "socket", errno: errno) }
        if var size = receiveBufferBytes {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        if let timeout {
            // connect(2) waits no longer than the send timeout.
            var limit = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        }
        let connected = KernelSocketAddress.with(endpoint, family: family) { Glibc.connect(fd, $0, $1) }
        guard connected == 0 else {
            let error = errno
            close(fd)
            throw KernelSocketError(call: "connect(\(endpoint))", errno: error)
        }
        // Only now: a class whose properties are all set runs its deinit (closing) when init throws.
        descriptor = fd
    }

    deinit { close(descriptor) }

    /// Makes a blocking `recv` give up with `EAGAIN` after `seconds`.
    public func setReceiveTimeout(seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Makes `send` and `recv` return `EAGAIN` instead of blocking.
    public func setNonBlocking() {
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
    }
}

/// A socket call of a test helper failed.
public struct KernelSocketError: Error, CustomStringConvertible {
    /// The call, e.g. `"connect(127.0.0.1:7000)"`.
    public var call: String
    /// Its errno.
    public var errno: Int32

    public var description: String { "\(call): errno \(errno)" }
}
