#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CSluiceSystem
import Dispatch
import Sluice
import SluiceSystem
import SluiceTLS
import SluiceURing
import Synchronization

struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls",
        abstract: "TLS 1.3 and 1.2: OpenSSL's handshake, Sluice's record layer (or kTLS where the kernel has it), io_uring TCP.",
        subcommands: [TLSServe.self, TLSConnect.self, TLSSelftest.self])
}

/// Versions, ciphers and ALPN, shared by `serve` and `connect`.
struct TLSProtocolOptions: ParsableArguments {
    @Option(help: "Oldest version: 1.2 or 1.3.")
    var minVersion: String = "1.2"

    @Option(help: "Newest version: 1.2 or 1.3.")
    var maxVersion: String = "1.3"

    @Option(help: "AEADs in order of preference, comma-separated: aes128gcm, aes256gcm, chacha20.")
    var ciphers: String = "aes128gcm,aes256gcm,chacha20"

    @Option(help: "ALPN protocols in order of preference, comma-separated.")
    var alpn: String?

    func version(_ text: String, _ flag: String) throws -> TLSVersion {
        switch text {
        case "1.2": .tls12
        case "1.3": .tls13
        default: throw ValidationError("\(flag) must be 1.2 or 1.3")
        }
    }

    func aeads() throws -> [TLSAEAD] {
        try ciphers.split(separator: ",").map { name in
            switch name {
            case "aes128gcm": .aes128GCM
            case "aes256gcm": .aes256GCM
            case "chacha20": .chacha20Poly1305
            default: throw ValidationError("unknown cipher \(name): use aes128gcm, aes256gcm, chacha20")
            }
        }
    }

    func validate() throws {
        guard try version(minVersion, "--min-version").rawValue <= version(maxVersion, "--max-version").rawValue else {
            throw ValidationError("--min-version is above --max-version")
        }
        guard try !aeads().isEmpty else { throw ValidationError("--ciphers names no cipher") }
        if let alpn, alpn.split(separator: ",", omittingEmptySubsequences: false).contains(where: { !(1...255).contains($0.utf8.count) }) {
            throw ValidationError("--alpn: each protocol name is 1 to 255 bytes")
        }
    }

    /// KeyUpdate is TLS 1.3's: `--key-update-after` with `--max-version 1.2` would do nothing.
    func checkKeyUpdate(_ keyUpdateAfter: Int?) throws {
        if let keyUpdateAfter, keyUpdateAfter < 0 { throw ValidationError("--key-update-after must be 0 or more bytes") }
        if keyUpdateAfter != nil, try version(maxVersion, "--max-version") == .tls12 {
            throw ValidationError("--key-update-after needs TLS 1.3 (TLS 1.2 has no KeyUpdate); --max-version is 1.2")
        }
    }

    func apply(to configuration: inout TLSConfiguration) throws {
        configuration.minimumVersion = try version(minVersion, "--min-version")
        configuration.maximumVersion = try version(maxVersion, "--max-version")
        configuration.tls13AEADs = try aeads()
        configuration.tls12AEADs = try aeads()
        configuration.applicationProtocols = alpn.map { $0.split(separator: ",").map(String.init) } ?? []
    }
}

/// The line that says where records are sealed, printed once.
func recordPathLine() -> String {
    let support = KernelTLS.probe()
    if let unavailable = support.unavailable {
        return "TLS records in user space (Sluice's record layer): kTLS unavailable, \(unavailable)"
    }
    return "TLS records in user space (Sluice's record layer); \(support) (the kTLS data path is not wired to the io_uring engine yet)"
}

struct TLSServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve TLS on the io_uring TCP engine: echo, the bench sink protocol, or a file.")

    @Option(help: "The certificate chain (PEM, leaf first).")
    var cert: String

    @Option(help: "The private key (PEM).")
    var key: String

    @Option(help: "Address and port to listen on: 127.0.0.1:4433, [::]:4433, port 0 for any.")
    var listen: IPEndpoint

    @Option(help: "Ask each client for a certificate that verifies against the CA certificates in this PEM file (mutual TLS).")
    var clientCa: String?

    @Option(help: "With --client-ca: refuse a client without a certificate (required, the default), or serve it (requested).")
    var clientCert: ClientCertificateDemand?

    @Flag(help: "Send every byte back (the default).")
    var echo = false

    @Flag(help: "The tlsbench sink protocol: an 8-byte little-endian length, that many bytes, one byte back.")
    var sink = false

    @Flag(help: "The tlsbench echo protocol: an 8-byte little-endian length, then every byte back.")
    var benchEcho = false

    @Option(help: "Send this file to each client, then close_notify.")
    var file: String?

    @OptionGroup var protocolOptions: TLSProtocolOptions

    @Option(parsing: .unconditional, help: "TLS 1.3 session tickets per full handshake (0: no resumption, TLS 1.2 included).")
    var tickets: Int = 2

    @Option(parsing: .unconditional, help: "Send a KeyUpdate (asking for the peer's) once a connection has received this many bytes.")
    var keyUpdateAfter: Int?

    @Option(parsing: .unconditional, help: "Most connections at once; at the limit, those still in their handshake are closed to make room (the idlest, idle a quarter second at least), or with none, those idle longest (a sixteenth of --idle-timeout at least): silent clients can neither lock the others out nor close established connections.")
    var maxConnections: Int = 256

    @Option(parsing: .unconditional, help: "Seconds a client has to finish its handshake; then its connection is aborted.")
    var handshakeTimeout: Double = 10

    @Option(parsing: .unconditional, help: "Close a connection that moves no data either way for this many seconds (0: never); a client that stops reading holds its frames until then.")
    var idleTimeout: Double = 60

    @Option(parsing: .unconditional, help: "Frames of 64 KiB in the server's pool, for receiving and for sealed records: its memory (512: 32 MiB).")
    var frames: Int = TLSServer.engineConfiguration().frameCount

    @Option(help: "Ring mode: \(RingMode.allCases.map(\.rawValue).joined(separator: ", ")).")
    var ringMode: RingMode = .coop

    @Option(parsing: .unconditional, help: "Records of at least this many bytes go out with SEND_ZC (0: never; on loopback the kernel copies them anyway).")
    var zeroCopyThreshold: Int = 0

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, with setns().")
    var netns: String?

    @Option(parsing: .unconditional, help: "Stop by itself after this many seconds (default: run until SIGINT/SIGTERM).")
    var duration: Double?

    @OptionGroup var report: ReportOptions

    @OptionGroup var privileges: PrivilegeOptions

    func validate() throws {
        try checkStreamAddress(listen, "--listen")
        if let duration { try checkSeconds(duration, "--duration", in: 0.001...31_536_000) }
        guard [echo, sink, benchEcho, file != nil].filter({ $0 }).count <= 1 else {
            throw ValidationError("give one of --echo, --sink, --bench-echo, --file")
        }
        if clientCert != nil, clientCa == nil {
            throw ValidationError("--client-cert says what to do with client certificates; give the CAs to check them against with --client-ca")
        }
        guard (0...16).contains(tickets) else { throw ValidationError("--tickets must be 0 to 16") }
        try protocolOptions.checkKeyUpdate(keyUpdateAfter)
        guard (1..<65536).contains(maxConnections) else { throw ValidationError("--max-connections must be 1 to 65535") }
        guard zeroCopyThreshold >= 0 else { throw ValidationError("--zero-copy-threshold must be 0 or more") }
        try checkSeconds(handshakeTimeout, "--handshake-timeout", in: 0.01...3600)
        try checkSeconds(idleTimeout, "--idle-timeout", in: 0.01...31_536_000, orNever: true)
        let receiveBuffers = Int(TLSServer.engineConfiguration().receiveBuffers)
        guard (2 * receiveBuffers...65536).contains(frames) else {
            throw ValidationError("--frames must be \(2 * receiveBuffers) to 65536 (\(receiveBuffers) of them are receive buffers)")
        }
    }

    func run() throws {
        sluice_line_buffer_stdout()
        if let netns { try NetworkNamespace.enter(netns) }
        var tlsConfiguration = TLSConfiguration.server(certificateChainFile: cert, privateKeyFile: key)
        try protocolOptions.apply(to: &tlsConfiguration)
        tlsConfiguration.ticketsPerHandshake = tickets
        if let clientCa {
            tlsConfiguration.clientCertificates = clientCert == .requested
                ? .requested(trustedCertificates: clientCa) : .required(trustedCertificates: clientCa)
        }
        let context: TLSContext
        do { context = try TLSContext(tlsConfiguration) } catch {
            writeToStandardError("sluice tls serve: \(error)\n")
            throw ExitCode(1)
        }
        if let problem = context.certificateProblem {
            writeToStandardError("sluice tls serve: warning: \(problem): clients that verify it will refuse the handshake\n")
        }
        let mode: TLSServeMode
        if let file {
            guard let bytes = TextFile.bytes(file) else {
                writeToStandardError("sluice tls serve: cannot read \(file): \(RegularFile.problem(file) ?? "a read failed")\n")
                throw ExitCode(1)
            }
            mode = .file(bytes)
        } else {
            mode = sink ? .sink : benchEcho ? .benchEcho : .echo
        }
        var configuration = TLSServer.engineConfiguration(TCPEngineConfiguration(mode: ringMode.mode))
        configuration.zeroCopyThreshold = zeroCopyThreshold > 0 ? zeroCopyThreshold : nil
        configuration.logger = .terminal
        configuration.maximumConnections = maxConnections + 1
        configuration.frameCount = frames
        configuration.idleTimeout = idleTimeout > 0 ? Duration(checkedSeconds: idleTimeout) : nil
        let say = report.say
        let dropper = DropOnReady(privileges, command: "tls serve")
        let modeName = sink ? "sink" : benchEcho ? "bench echo" : file != nil ? "file" : "echo"
        do {
            try report.runStreamServer("tls serve", mode: "tls \(modeName), user-space records, \(ringMode.rawValue) ring") { metrics in
                let result = try TLSServer.run(
                    listen: listen, context: context, mode: mode, keyUpdateAfter: keyUpdateAfter,
                    handshakeTimeout: .nanoseconds(Int64(handshakeTimeout * 1e9)), configuration: configuration,
                    metrics: metrics, ready: { endpoint in
                        // Once listening: a start that fails says only why.
                        say("sluice tls serve: \(recordPathLine())")
                        say("sluice tls serve: listening on \(endpoint)")
                        dropper.drop(say: say)
                    },
                    shouldStop: dropper.stopping(stopCondition(
                        duration: duration,
                        hangup: "sluice tls serve: SIGHUP received; the certificate, key and client CAs are read once, at start: restart to load new ones",
                        say: say)))
                try dropper.check()
                return StreamServerOutcome(endpoint: result.endpoint, seconds: result.seconds, framesBalanced: result.frames.isBalanced,
                                           text: "\(result)", status: result.frames.isBalanced ? 0 : 3)
            }
        } catch let error as SystemCallError {
            writeToStandardError("sluice tls serve: \(error.terminalDescription)\n")
            throw ExitCode(1)
        }
    }
}

/// Writes all of `bytes` to a descriptor; false when it fails.
func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    var at = 0
    while at < bytes.count {
        let n = write(descriptor, bytes.baseAddress! + at, bytes.count - at)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return false }
        at += n
    }
    return true
}

/// What `tls serve --client-cert` asks of a client.
enum ClientCertificateDemand: String, ExpressibleByArgument, CaseIterable {
    case required, requested
}

struct TLSConnect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Connect over TLS: standard input goes to the server, what it sends goes to standard output.",
        discussion: "At the end of standard input, close_notify is sent; the command ends at the server's close_notify (or when it closes). One summary line goes to standard error.")

    @Argument(help: "The server: HOST:PORT, ADDRESS:PORT or [IPv6]:PORT.")
    var server: String

    @Option(help: "The server name to send (SNI) and to check the certificate against (default: HOST when it is a name).")
    var sni: String?

    @Option(help: "Trust only the CA certificates in this PEM file (default: the system's trust store).")
    var ca: String?

    @Flag(help: "Do not verify the server's certificate (encrypted, not authenticated).")
    var insecure = false

    @Option(help: "The certificate chain (PEM, leaf first) to send a server that asks for a client certificate.")
    var cert: String?

    @Option(help: "The private key (PEM) of --cert.")
    var key: String?

    @OptionGroup var protocolOptions: TLSProtocolOptions

    @Option(help: "Offer the session saved in this file (PEM, by --session-out) for resumption: only to a server its certificate names, verified against the same --ca (or system store), while that certificate is valid; otherwise a full handshake, said in one line.")
    var sessionIn: String?

    @Option(help: "Save the last session the server offered to this file (PEM).")
    var sessionOut: String?

    @Option(parsing: .unconditional, help: "Send a KeyUpdate (asking for the server's) after sending this many bytes.")
    var keyUpdateAfter: Int?

    @Flag(help: "Keep reading after the end of standard input until the server closes; send close_notify then.")
    var waitForServer = false

    @Option(parsing: .unconditional, help: "Seconds the TCP connect, then the handshake, may take before the connection is given up.")
    var handshakeTimeout: Double = 10

    @Option(parsing: .unconditional, help: "After close_notify, seconds the server may go without sending or closing before the connection is closed (0: no limit).")
    var closeTimeout: Double = 10

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, with setns().")
    var netns: String?

    func validate() throws {
        try checkSeconds(handshakeTimeout, "--handshake-timeout", in: 0.01...3600)
        if closeTimeout != 0 { try checkSeconds(closeTimeout, "--close-timeout", in: 0.01...86400) }
        try protocolOptions.checkKeyUpdate(keyUpdateAfter)
        guard let (_, port) = Self.hostAndPort(server) else {
            throw ValidationError("bad server \(server): give HOST:PORT, ADDRESS:PORT or [IPv6]:PORT")
        }
        guard port != 0 else { throw ValidationError("bad server \(server): port 0 is no port to connect to") }
        // The kernel takes a connect to 0.0.0.0 or :: as one to this host: say it, as udp-client does.
        if let endpoint = IPEndpoint(server), endpoint.address == endpoint.address.unspecified || endpoint.address.isMulticastOrBroadcast {
            throw ValidationError("bad server \(server): connect to one host's unicast address, not \(endpoint.address)")
        }
        guard (cert == nil) == (key == nil) else {
            throw ValidationError("a client certificate needs both --cert and --key")
        }
        if insecure, ca != nil {
            throw ValidationError("--insecure checks no certificate, so --ca would be ignored: give one of them")
        }
        if let sni, !Self.isHostName(sni) {
            let rule = "labels of 1 to 63 letters, digits, hyphens or underscores, joined by dots, 253 bytes at most"
            throw ValidationError(IPAddress(sni) != nil || sni.split(separator: ".").last?.allSatisfy(\.isNumber) == true
                ? "--sni must be a host name, not an address (an address is sent no SNI): \(rule)"
                : !sni.utf8.allSatisfy({ $0 < 0x80 }) ? "--sni takes a name as DNS carries it: give an internationalized name in its A-label form (xn--…)"
                : "--sni must be a host name: \(rule)")
        }
    }

    /// Whether `name` is a DNS host name as SNI carries it (RFC 6066 section 3; a trailing dot
    /// is dropped before it is sent).
    static func isHostName(_ name: String) -> Bool {
        let bare = name.hasSuffix(".") ? name.dropLast() : Substring(name)
        guard (1...253).contains(bare.utf8.count) else { return false }
        let labels = bare.split(separator: ".", omittingEmptySubsequences: false)
        // An all-digit last label reads as an IPv4 address (127.0.0.1, 2130706433), which SNI
        // must not carry (RFC 6066 section 3; RFC 1123 2.1 keeps top-level labels alphabetic).
        guard let last = labels.last, !last.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return false }
        return labels.allSatisfy { label in
            (1...63).contains(label.utf8.count)
                && label.utf8.allSatisfy { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A || (0x30...0x39).contains($0) }
        }
    }

    /// The host (a name or an address) and the port of HOST:PORT or [IPv6]:PORT.
    static func hostAndPort(_ text: String) -> (host: String, port: UInt16)? {
        if let endpoint = IPEndpoint(text) { return (endpoint.address.description, endpoint.port) }
        guard let colon = text.lastIndex(of: ":"), case let digits = text[text.index(after: colon)...],
              digits.allSatisfy({ ("0"..."9").contains($0) }), let port = UInt16(digits) else { return nil }
        let host = String(text[..<colon])
        return host.isEmpty || host.contains(":") ? nil : (host, port)
    }

    /// The endpoints of HOST:PORT: the address, or the name's addresses in the order the system's
    /// resolver (getaddrinfo) gives them; empty when there are none.
    static func resolve(_ text: String) -> [IPEndpoint] {
        if let endpoint = IPEndpoint(text) { return [endpoint] }
        guard let (host, port) = hostAndPort(text) else { return [] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &results) == 0 else { return [] }
        defer { freeaddrinfo(results) }
        var endpoints: [IPEndpoint] = []
        var entry = results
        while let current = entry {
            if let address = current.pointee.ai_addr, current.pointee.ai_family == AF_INET || current.pointee.ai_family == AF_INET6 {
                var endpoint = SocketAddress.endpoint(from: address)
                endpoint.port = port
                if !endpoints.contains(endpoint) { endpoints.append(endpoint) }
            }
            entry = current.pointee.ai_next
        }
        return endpoints
    }

    func run() throws {
        if let netns { try NetworkNamespace.enter(netns) }
        let endpoints = Self.resolve(server)
        guard !endpoints.isEmpty, let (host, _) = Self.hostAndPort(server) else {
            writeToStandardError("sluice tls connect: cannot resolve \(server)\n")
            throw ExitCode(1)
        }
        // As s_client: a name given as the host is the server name unless --sni says otherwise;
        // an address in any form getaddrinfo takes (127.1, 2130706433) is no name: no SNI, and the
        // certificate must name the address it resolved to.
        let serverName = sni ?? (Self.isHostName(host) ? host : nil)
        if insecure { writeToStandardError("sluice tls connect: --insecure: the server's certificate will not be verified\n") }
        var configuration = TLSConfiguration.client(
            peerVerification: insecure ? .none : ca.map { .trustedCertificates(path: $0) } ?? .systemTrustStore)
        try protocolOptions.apply(to: &configuration)
        configuration.certificateChainFile = cert
        configuration.privateKeyFile = key
        var saved: TLSSession?
        if let sessionIn {
            guard let bytes = TextFile.bytes(sessionIn) else {
                writeToStandardError("sluice tls connect: cannot read \(sessionIn): \(RegularFile.problem(sessionIn) ?? "a read failed")\n")
                throw ExitCode(1)
            }
            do { saved = try TLSSession(pem: String(decoding: bytes, as: UTF8.self)) } catch {
                writeToStandardError("sluice tls connect: \(error)\n")
                throw ExitCode(1)
            }
        }
        let context: TLSContext
        do { context = try TLSContext(configuration) } catch {
            writeToStandardError("sluice tls connect: \(error)\n")
            throw ExitCode(1)
        }
        // The engine would not offer it either; said here so a full handshake is no surprise.
        if let sessionIn, let reason = saved?.reasonNotToOffer(context: context, serverName: serverName,
                                                               address: endpoints[0].address.description) {
            writeToStandardError("sluice tls connect: not resuming: the session in \(sessionIn): \(reason)\n")
            saved = nil
        }
        let session = saved
        let loop = try TLSConnectRun.makeLoop()
        defer { loop.shutdown() }
        let outcome = TLSConnectRun.blocking {
            await TLSConnectRun(servers: endpoints, serverName: serverName, context: context, session: session,
                                keyUpdateAfter: keyUpdateAfter, waitForServer: waitForServer, sessionOut: sessionOut,
                                timeout: .nanoseconds(Int64(handshakeTimeout * 1e9)),
                                closeTimeout: closeTimeout > 0 ? .nanoseconds(Int64(closeTimeout * 1e9)) : nil).run(loop: loop)
        }
        writeToStandardError(outcome.summary + (insecure ? "; the server's certificate was not verified (--insecure)" : "") + "\n")
        if !outcome.succeeded { throw ExitCode(1) }
    }
}

/// One `tls connect` run: the connection, standard input pumped in, output pumped out.
struct TLSConnectRun: Sendable {
    /// Tried in order until one takes the TCP connection.
    let servers: [IPEndpoint]
    let serverName: String?
    let context: TLSContext
    let session: TLSSession?
    let keyUpdateAfter: Int?
    let waitForServer: Bool
    let sessionOut: String?
    /// For the TCP connect, then for the handshake.
    let timeout: Duration
    /// How long the server may stay silent after our close_notify; `nil`: for ever.
    let closeTimeout: Duration?

    struct Outcome: Sendable {
        var summary: String
        var succeeded: Bool
    }

    static func makeLoop() throws -> TCPEventLoop {
        var configuration = TCPEngineConfiguration()
        configuration.logger = .terminal
        configuration.idleTimeout = nil
        return try TCPEventLoop(configuration: configuration)
    }

    /// Runs `body` on the concurrency pool and waits for it on this thread.
    static func blocking(_ body: @escaping @Sendable () async -> Outcome) -> Outcome {
        let done = DispatchSemaphore(value: 0)
        let box = OutcomeBox()
        Task {
            box.value = await body()
            done.signal()
        }
        done.wait()
        return box.value!
    }

    final class OutcomeBox: @unchecked Sendable {
        var value: Outcome?
    }

    /// After our close_notify: what the server has sent since, and whether its silence closed the connection.
    final class CloseWatch: Sendable {
        let received = Atomic<Int>(0)
        let closedForSilence = Atomic<Bool>(false)

        /// Closes `connection` once nothing has come for `limit` (or returns when cancelled: the server closed).
        func closeWhenSilent(_ connection: TLSConnection, for limit: Duration) async {
            var seen = received.load(ordering: .relaxed)
            var quietSince = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                let now = received.load(ordering: .relaxed)
                if now != seen {
                    (seen, quietSince) = (now, .now)
                } else if ContinuousClock.now - quietSince >= limit, !Task.isCancelled {
                    closedForSilence.store(true, ordering: .relaxed)
                    await connection.abort()
                    return
                }
            }
        }
    }

    func run(loop: TCPEventLoop) async -> Outcome {
        let connection: TLSConnection
        do {
            connection = try await TLSConnection.connect(to: servers, on: loop, context: context, serverName: serverName, session: session,
                                                         timeout: timeout)
        } catch {
            return Outcome(summary: "sluice tls connect: \(error)", succeeded: false)
        }
        let negotiated = connection.negotiated
        let input = StandardInput.chunks()
        let watch = CloseWatch()
        // Standard input to the server: the bytes sent, and whether input ended. A send fails only
        // when the connection has: its reason comes from `inbound`.
        let sender = Task { () -> (Int, Bool) in
            var sent = 0
            var keyUpdated = false
            for await chunk in input {
                do { try await connection.send(chunk) } catch { return (sent, false) }
                sent += chunk.count
                if let keyUpdateAfter, !keyUpdated, sent >= keyUpdateAfter {
                    keyUpdated = true
                    try? await connection.updateKeys(requestPeerUpdate: true)
                }
            }
            if Task.isCancelled { return (sent, false) }
            if !waitForServer {
                await connection.close()
                if let closeTimeout { await watch.closeWhenSilent(connection, for: closeTimeout) }
            }
            return (sent, true)
        }
        var received = 0
        var failure: String?
        do {
            for try await plaintext in connection.inbound {
                received += plaintext.count
                watch.received.add(plaintext.count, ordering: .relaxed)
                guard plaintext.withUnsafeBytes({ writeAll(1, $0) }) else {
                    failure = "writing standard output failed"
                    break
                }
            }
        } catch {
            // A server silent past --close-timeout after our close_notify was closed on: no failure of ours.
            if !watch.closedForSilence.load(ordering: .relaxed) { failure = "\(error)" }
        }
        // The server's close ends the run, as it ends s_client's, whatever standard input still
        // holds; input it did not take then is no failure of ours.
        sender.cancel()
        await connection.close()
        let (sent, inputEnded) = await sender.value
        var saveFailure: String?
        if let sessionOut {
            if let last = await connection.resumableSessions.last {
                saveFailure = Self.save(last.pem, to: sessionOut)
            } else {
                saveFailure = "the server offered no session to save to \(sessionOut)"
            }
        }
        let counters = await connection.counters
        var summary = "sluice tls connect: \(negotiated.version) \(negotiated.cipherSuiteName)"
            + (negotiated.resumed ? ", resumed" : "") + (negotiated.applicationProtocol.map { ", ALPN \($0)" } ?? "")
            + "; sent \(sent) bytes, received \(received); KeyUpdates sent \(counters.keyUpdatesSent), received \(counters.keyUpdatesReceived)"
        if let failure { summary += "; \(failure)" }
        if watch.closedForSilence.load(ordering: .relaxed), let closeTimeout {
            summary += "; the server neither sent nor closed for \(closeTimeout) after close_notify: closed"
        }
        if failure == nil && !inputEnded && !waitForServer { summary += "; the server closed before standard input ended" }
        if let saveFailure { summary += "; \(saveFailure)" }
        if keyUpdateAfter != nil && negotiated.version == .tls12 { summary += "; no KeyUpdate in TLS 1.2: --key-update-after did nothing" }
        return Outcome(summary: summary, succeeded: failure == nil && saveFailure == nil)
    }

    /// Writes a session's PEM text to `path` (mode 0600); returns what went wrong, if anything.
    static func save(_ pem: String, to path: String) -> String? {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return "cannot write the session to \(path): " + describe(errno) }
        defer { close(descriptor) }
        let written = Array(pem.utf8).withUnsafeBytes { writeAll(descriptor, $0) }
        return written ? nil : "writing the session to \(path) failed: " + describe(errno)
    }

    static func describe(_ code: Int32) -> String { SystemCallError.describe(errno: code) }
}

/// Standard input as chunks, read on a thread of its own.
enum StandardInput {
    static func chunks() -> AsyncStream<[UInt8]> {
        AsyncStream(bufferingPolicy: .bufferingOldest(64)) { continuation in
            let thread = try? WorkerThread(name: "sluice-stdin") {
                var buffer = [UInt8](repeating: 0, count: 16384)
                while true {
                    let n = read(0, &buffer, buffer.count)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    while case .dropped = continuation.yield(Array(buffer[..<n])) { usleep(100) }
                }
                continuation.finish()
            }
            if let thread { thread.detach() } else { continuation.finish() }
        }
    }
}

struct TLSSelftest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Report whether the kernel offloads TLS (kTLS) and which ciphers, and check the user-space record layer.")

    func run() throws {
        sluice_line_buffer_stdout()
        print("OpenSSL: \(TLSSelfTest.openSSLVersion)")
        print(TLSSelfTest.kernel())
        print("user-space record layer:")
        let results = TLSSelfTest.recordLayer()
        for result in results { print("  \(result)") }
        if results.contains(where: { $0.failure != nil }) { throw ExitCode(1) }
    }
}
