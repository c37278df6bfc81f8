#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluiceDNS
import SluicePackets
import SluiceSystem
import Synchronization

/// The stub resolver (`DNSResolver`) over kernel sockets: each resolution has a UDP socket
/// of its own (the kernel picks a random source port) and a TCP connection when an answer
/// was truncated; the cache is shared.
///
/// ```swift
/// let resolver = try DNSStubResolver.system()          // /etc/resolv.conf and /etc/hosts
/// let answer = try await resolver.resolve("example.org", .aaaa)
/// print(answer.records.map(\.dataText))
/// ```
public final class DNSStubResolver: Sendable {
    let state: Mutex<DNSResolver>

    /// A resolver for `configuration`.
    public init(configuration: DNSResolverConfiguration) {
        state = Mutex(DNSResolver(configuration: configuration))
    }

    /// A resolver configured as the system's: `/etc/resolv.conf` and `/etc/hosts`.
    public static func system() -> DNSStubResolver {
        DNSStubResolver(configuration: DNSResolverConfiguration(resolvConf: TextFile.read("/etc/resolv.conf") ?? "",
                                                                hosts: TextFile.read("/etc/hosts") ?? ""))
    }

    /// Resolves `type` records of `name` without blocking the caller: the exchange runs on a thread of its own.
    public func resolve(_ name: String, _ type: DNSRecordType) async throws(DNSResolverError) -> DNSResolution {
        let result: Result<DNSResolution, DNSResolverError> = await withCheckedContinuation { continuation in
            do {
                try WorkerThread(name: "sluice-resolve") {
                    continuation.resume(returning: Result { () throws(DNSResolverError) in try self.resolveBlocking(name, type) })
                }.detach()
            } catch {
                continuation.resume(returning: .failure(.timedOut(DNSName(name + ".") ?? .root)))
            }
        }
        return try result.get()
    }

    /// Resolves `type` records of `name` on the calling thread, blocking until done (at most
    /// the configured timeout times servers and attempts).
    public func resolveBlocking(_ name: String, _ type: DNSRecordType) throws(DNSResolverError) -> DNSResolution {
        let clock = MonotonicTimeSource()
        let query = state.withLock { $0.resolve(name, type, now: clock.now()) }
        // One connected socket per server, so an ICMP port unreachable comes back as ECONNREFUSED.
        var sockets: [IPEndpoint: Int32] = [:]
        defer { sockets.values.forEach { _ = close($0) } }
        func take(_ exchange: Exchange, from server: IPEndpoint, overTCP: Bool) {
            switch exchange {
            case .reply(let bytes): state.withLock { $0.handleResponse(bytes, from: server, overTCP: overTCP, now: clock.now()) }
            case .refused: state.withLock { $0.handleUnreachable(server, overTCP: overTCP, now: clock.now()) }
            // Over TCP the exchange is over (a connection closed before the reply was whole): on to
            // the next server now. Over UDP a stray error says nothing; the timeout decides.
            case .failed: if overTCP { state.withLock { $0.handleFailure(server, overTCP: true, now: clock.now()) } }
            }
        }
        while true {
            if let result = state.withLock({ $0.takeResult(query) }) { return try result.get() }
            while let transmit = state.withLock({ $0.pollTransmit(for: query) }) {
                let server = transmit.server
                if transmit.overTCP {
                    let timeout = state.withLock { $0.configuration.timeout } * 2
                    take(Self.exchangeOverTCP(transmit.message, with: server, timeout: timeout), from: server, overTCP: true)
                    continue
                }
                // A socket that cannot be had leaves the query to time out and go to the next server.
                guard let descriptor = sockets[server] ?? Self.connectUDP(to: server) else { continue }
                sockets[server] = descriptor
                let sent = transmit.message.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
                if sent < 0 && errno == ECONNREFUSED { take(.refused, from: server, overTCP: false) }
            }
            if let result = state.withLock({ $0.takeResult(query) }) { return try result.get() }
            let deadline = state.withLock { $0.pollTimeout() } ?? clock.now() + .milliseconds(100)
            let wait = max(1, min(100, (deadline - clock.now()).nanosecondsClamped / 1_000_000))
            let servers = Array(sockets.keys)
            var ready = servers.map { pollfd(fd: sockets[$0]!, events: Int16(POLLIN), revents: 0) }
            if poll(&ready, nfds_t(ready.count), Int32(wait)) > 0 {
                for (server, entry) in zip(servers, ready) where entry.revents & Int16(POLLIN | POLLERR) != 0 {
                    take(Self.receive(entry.fd), from: server, overTCP: false)
                }
            }
            let now = clock.now()
            state.withLock { resolver in
                if let due = resolver.pollTimeout(), due <= now { resolver.handleTimeout(now: now) }
            }
        }
    }

    /// What one exchange with a server came to.
    enum Exchange {
        case reply([UInt8])
        /// The server's host said no one listens there (ICMP port unreachable, TCP reset).
        case refused
        /// Nothing usable: a timeout, or an error that says nothing about the server.
        case failed
    }

    static func connectUDP(to server: IPEndpoint) -> Int32? {
        let family = server.address.family
        let descriptor = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        guard SocketAddress.with(server, family: family, { connect(descriptor, $0, $1) }) == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    static func receive(_ descriptor: Int32) -> Exchange {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count < 0 { return errno == ECONNREFUSED ? .refused : .failed }
        return count > 0 ? .reply(Array(buffer[..<count])) : .failed
    }

    /// One length-prefixed exchange over TCP (RFC 7766).
    static func exchangeOverTCP(_ message: [UInt8], with server: IPEndpoint, timeout: Duration) -> Exchange {
        let family = server.address.family
        let descriptor = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return .failed }
        defer { close(descriptor) }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        func failure() -> Exchange { errno == ECONNREFUSED || errno == ECONNRESET ? .refused : .failed }
        guard SocketAddress.with(server, family: family, { connect(descriptor, $0, $1) }) == 0 else { return failure() }
        let framed = [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
        guard framed.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == framed.count else { return failure() }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while received.count < 2 || received.count < 2 + (Int(received[0]) << 8 | Int(received[1])) {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return count < 0 ? failure() : .failed }
            received += chunk[..<count]
        }
        return .reply(Array(received[2..<(2 + (Int(received[0]) << 8 | Int(received[1])))]))
    }
}
