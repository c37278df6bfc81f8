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
        var sockets: [Int32: Int32] = [:]
        defer { sockets.values.forEach { _ = close($0) } }
        while true {
            if let result = state.withLock({ $0.takeResult(query) }) { return try result.get() }
            while let transmit = state.withLock({ $0.pollTransmit(for: query) }) {
                if transmit.overTCP {
                    if let reply = Self.exchangeOverTCP(transmit.message, with: transmit.server,
                                                        timeout: state.withLock { $0.configuration.timeout } * 2) {
                        state.withLock { $0.handleResponse(reply, from: transmit.server, overTCP: true, now: clock.now()) }
                    }
                    continue
                }
                let family = transmit.server.address.family
                // A socket that cannot be had leaves the query to time out and go to the next server.
                guard let descriptor = sockets[family] ?? Self.openUDP(family: family) else { continue }
                sockets[family] = descriptor
                _ = SocketAddress.with(transmit.server, family: family) { address, length in
                    transmit.message.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, 0, address, length) }
                }
            }
            if let result = state.withLock({ $0.takeResult(query) }) { return try result.get() }
            let deadline = state.withLock { $0.pollTimeout() } ?? clock.now() + .milliseconds(100)
            let wait = max(1, min(100, (deadline - clock.now()).nanosecondsClamped / 1_000_000))
            var ready = sockets.values.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if poll(&ready, nfds_t(ready.count), Int32(wait)) > 0 {
                for entry in ready where entry.revents & Int16(POLLIN) != 0 {
                    guard let (bytes, from) = Self.receive(entry.fd) else { continue }
                    state.withLock { $0.handleResponse(bytes, from: from, overTCP: false, now: clock.now()) }
                }
            }
            let now = clock.now()
            state.withLock { resolver in
                if let due = resolver.pollTimeout(), due <= now { resolver.handleTimeout(now: now) }
            }
        }
    }

    static func openUDP(family: Int32) -> Int32? {
        let descriptor = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        return descriptor >= 0 ? descriptor : nil
    }

    static func receive(_ descriptor: Int32) -> ([UInt8], IPEndpoint)? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let count = buffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(descriptor, raw.baseAddress, raw.count, 0, $0, &length) }
            }
        }
        guard count > 0 else { return nil }
        let from = withUnsafeBytes(of: &storage) { SocketAddress.endpoint(from: $0.baseAddress!) }
        return (Array(buffer[..<count]), from)
    }

    /// One length-prefixed exchange over TCP (RFC 7766), or `nil` when it fails or times out.
    static func exchangeOverTCP(_ message: [UInt8], with server: IPEndpoint, timeout: Duration) -> [UInt8]? {
        let family = server.address.family
        let descriptor = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        guard SocketAddress.with(server, family: family, { connect(descriptor, $0, $1) }) == 0 else { return nil }
        let framed = [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
        guard framed.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == framed.count else { return nil }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while received.count < 2 || received.count < 2 + (Int(received[0]) << 8 | Int(received[1])) {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            received += chunk[..<count]
        }
        return Array(received[2..<(2 + (Int(received[0]) << 8 | Int(received[1])))])
    }
}
