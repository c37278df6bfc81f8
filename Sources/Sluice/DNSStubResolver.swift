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
/// let resolver = DNSStubResolver.system()              // /etc/resolv.conf and /etc/hosts
/// let answer = try await resolver.resolve("example.org", .aaaa)
/// print(answer.records.map(\.dataText))
/// ```
public final class DNSStubResolver: Sendable {
    let state: Mutex<DNSResolver>

    /// A resolver for `configuration`.
    public init(configuration: DNSResolverConfiguration) {
        state = Mutex(DNSResolver(configuration: configuration))
    }

    /// A resolver configured as the system's: `/etc/resolv.conf` and `/etc/hosts`, with
    /// `LOCALDOMAIN` and `RES_OPTIONS` from the environment (`DNSResolverConfiguration.system()`).
    public static func system() -> DNSStubResolver {
        DNSStubResolver(configuration: .system())
    }

    /// Resolves `type` records of `name` without blocking the caller: the exchange runs on a thread of its own.
    public func resolve(_ name: String, _ type: DNSRecordType) async throws(DNSResolverError) -> DNSResolution {
        let result: Result<DNSResolution, DNSResolverError> = await withCheckedContinuation { continuation in
            do {
                try WorkerThread(name: "sluice-resolve") {
                    continuation.resume(returning: Result { () throws(DNSResolverError) in try self.resolveBlocking(name, type) })
                }.detach()
            } catch {
                continuation.resume(returning: .failure(.exchangeFailed(DNSName(name + ".") ?? .root,
                                                                        "no thread could be started for the resolution: \(error)")))
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
        let zones = state.withLock { $0.configuration.serverZones }
        func take(_ exchange: Exchange, from server: IPEndpoint, overTCP: Bool) {
            switch exchange {
            case .reply(let bytes): state.withLock { $0.handleResponse(bytes, from: server, overTCP: overTCP, now: clock.now()) }
            case .refused(let reason): state.withLock { $0.handleUnreachable(server, overTCP: overTCP, reason: reason, now: clock.now()) }
            // Over TCP the exchange is over (a connection closed before the reply was whole): on to
            // the next server now. Over UDP a stray error says nothing; the timeout decides.
            case .failed(let reason):
                if overTCP { state.withLock { $0.handleFailure(server, overTCP: true, reason: reason, now: clock.now()) } }
            case .unroutable(let reason): state.withLock { $0.handleFailure(server, overTCP: overTCP, reason: reason, now: clock.now()) }
            }
        }
        while true {
            if let result = state.withLock({ $0.takeResult(query) }) { return try result.get() }
            while let transmit = state.withLock({ $0.pollTransmit(for: query) }) {
                let server = transmit.server
                let zone = zones[server].map { Self.interfaceIndex($0) }
                if zone == 0 {
                    take(.unroutable("no interface \(zones[server]!) for the zone of \(server)"), from: server, overTCP: transmit.overTCP)
                    continue
                }
                if transmit.overTCP {
                    let timeout = state.withLock { $0.configuration.timeout } * 2
                    take(Self.exchangeOverTCP(transmit.message, with: server, scopeID: zone ?? 0, timeout: timeout), from: server, overTCP: true)
                    // One reply per TCP exchange: one to another query leaves this one to move on.
                    let id = UInt16(transmit.message[0]) << 8 | UInt16(transmit.message[1])
                    state.withLock { $0.handleExchangeEnded(server, messageID: id, now: clock.now()) }
                    continue
                }
                let descriptor: Int32
                if let open = sockets[server] {
                    descriptor = open
                } else {
                    switch Self.connectUDP(to: server, scopeID: zone ?? 0) {
                    case .success(let opened): descriptor = opened
                    case .failure(let error):
                        take(.unroutable("cannot send to \(server): \(error)"), from: server, overTCP: false)
                        continue
                    }
                }
                sockets[server] = descriptor
                let sent = transmit.message.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
                if sent < 0 {
                    if errno == ECONNREFUSED {
                        take(.refused(nil), from: server, overTCP: false)
                    } else if errno != EAGAIN && errno != EINTR {
                        take(.unroutable("cannot send to \(server): \(SystemCallError.describe(errno: errno))"), from: server, overTCP: false)
                    }
                }
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
        /// The server's host said no one listens there (ICMP port unreachable, TCP reset), and
        /// why, when there is more to say.
        case refused(String?)
        /// Nothing usable: a timeout, or an error that says nothing about the server; why, if known.
        case failed(String?)
        /// The server cannot be reached from here at all (no route, no such interface): on to the next now.
        case unroutable(String)
    }

    /// The index of the interface a zone names (a name, or an index in digits); 0 when there is none.
    static func interfaceIndex(_ zone: String) -> UInt32 {
        if let index = UInt32(zone) { return index }
        return if_nametoindex(zone)
    }

    /// A UDP socket connected to `server`, or what went wrong.
    static func connectUDP(to server: IPEndpoint, scopeID: UInt32) -> Result<Int32, SystemCallError> {
        let family = server.address.family
        let descriptor = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { return .failure(SystemCallError(.port, operation: "socket", errno: errno, hint: "")) }
        guard SocketAddress.with(server, family: family, scopeID: scopeID, { connect(descriptor, $0, $1) }) == 0 else {
            let error = errno
            close(descriptor)
            return .failure(SystemCallError(.port, operation: "connect", errno: error, hint: ""))
        }
        return .success(descriptor)
    }

    static func receive(_ descriptor: Int32) -> Exchange {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count < 0 { return errno == ECONNREFUSED ? .refused(nil) : .failed(nil) }
        return count > 0 ? .reply(Array(buffer[..<count])) : .failed(nil)
    }

    /// One length-prefixed exchange over TCP (RFC 7766), whole within `timeout`: a server that
    /// sends its reply a byte at a time does not hold it longer.
    static func exchangeOverTCP(_ message: [UInt8], with server: IPEndpoint, scopeID: UInt32, timeout: Duration) -> Exchange {
        let deadline = MonotonicTimeSource().now() + timeout
        let family = server.address.family
        let descriptor = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return .failed(nil) }
        defer { close(descriptor) }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let after = "after a truncated answer over UDP"
        func failure(_ doing: String) -> Exchange {
            let error = errno
            if error == ECONNREFUSED || error == ECONNRESET { return .refused("TCP to \(server) \(doing) \(after): \(SystemCallError.describe(errno: error))") }
            return .failed("TCP to \(server) \(doing) \(after): \(SystemCallError.describe(errno: error))")
        }
        guard SocketAddress.with(server, family: family, scopeID: scopeID, { connect(descriptor, $0, $1) }) == 0 else {
            return failure("failed to connect")
        }
        let framed = [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
        guard framed.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == framed.count else {
            return failure("failed to send")
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while received.count < 2 || received.count < 2 + (Int(received[0]) << 8 | Int(received[1])) {
            let left = (deadline - MonotonicTimeSource().now()).nanosecondsClamped / 1_000_000
            var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard left > 0, poll(&ready, 1, Int32(min(left, 60_000))) > 0 else {
                return .failed("the reply over TCP from \(server) was not whole within \(timeout) \(after)")
            }
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard count > 0 else {
                return count < 0 ? failure("failed to receive") : .failed("TCP to \(server) closed before the reply was whole \(after)")
            }
            received += chunk[..<count]
        }
        return .reply(Array(received[2..<(2 + (Int(received[0]) << 8 | Int(received[1])))]))
    }
}

extension DNSResolverConfiguration {
    /// The system's configuration, as glibc's resolver reads it: `/etc/resolv.conf` and
    /// `/etc/hosts`, then `LOCALDOMAIN` and `RES_OPTIONS` from the environment.
    public static func system() -> DNSResolverConfiguration {
        var configuration = DNSResolverConfiguration(resolvConf: TextFile.read("/etc/resolv.conf") ?? "",
                                                     hosts: TextFile.read("/etc/hosts") ?? "")
        var environment: [String: String] = [:]
        for name in ["LOCALDOMAIN", "RES_OPTIONS"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        configuration.apply(environment: environment)
        return configuration
    }
}
