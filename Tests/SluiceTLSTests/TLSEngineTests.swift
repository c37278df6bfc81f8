import CSluiceOpenSSL
import Foundation
import Testing
@testable import SluiceTLS

/// Two engines joined in memory: every byte one sends is handed to the other, records split at
/// odd places so the partial-record path runs as much as the in-place one.
struct EnginePair {
    let client: TLSEngine
    let server: TLSEngine
    var toClient: [UInt8] = []
    var toServer: [UInt8] = []
    var clientReceived: [UInt8] = []
    var serverReceived: [UInt8] = []
    var clientEvents: TLSEngine.Events = []
    var serverEvents: TLSEngine.Events = []
    var split = 7

    init(client: TLSEngine, server: TLSEngine) {
        self.client = client
        self.server = server
    }

    /// Moves bytes both ways until neither side has anything to send.
    mutating func pump() {
        for _ in 0..<1000 {
            toServer += client.outbound
            client.consumeOutbound(client.outbound.count)
            toClient += server.outbound
            server.consumeOutbound(server.outbound.count)
            if toServer.isEmpty && toClient.isEmpty { return }
            var received: [UInt8] = []
            while !toServer.isEmpty {
                var piece = Array(toServer.prefix(split))
                toServer.removeFirst(piece.count)
                serverEvents.formUnion(piece.withUnsafeMutableBytes { server.receive($0) { received += $0 } })
            }
            serverReceived += received
            received = []
            while !toClient.isEmpty {
                var piece = Array(toClient.prefix(split + 3))
                toClient.removeFirst(piece.count)
                clientEvents.formUnion(piece.withUnsafeMutableBytes { client.receive($0) { received += $0 } })
            }
            clientReceived += received
        }
        Issue.record("the engines never went quiet")
    }

    /// Seals `data` in records of at most `recordSize` content bytes into `engine`'s stream to its peer.
    mutating func send(_ data: [UInt8], from engine: TLSEngine, recordSize: Int = 16384) {
        // What the engine queued (a KeyUpdate) goes before anything sealed after it.
        if engine === client { toServer += engine.outbound } else { toClient += engine.outbound }
        engine.consumeOutbound(engine.outbound.count)
        var at = 0
        while at < data.count {
            let n = min(recordSize, data.count - at)
            var record = [UInt8](repeating: 0, count: n + engine.recordOverhead)
            let length = record.withUnsafeMutableBytes { out in
                data[at..<at + n].withUnsafeBytes { engine.seal($0, into: out.baseAddress!) }
            }
            #expect(length == n + engine.recordOverhead)
            if engine === client { toServer += record.prefix(length) } else { toClient += record.prefix(length) }
            at += n
        }
    }
}

/// A short stand-in for a byte string in test output: its length and FNV-1a hash.
func digest(_ bytes: [UInt8]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return "\(bytes.count) bytes, fnv \(String(hash, radix: 16))"
}

enum TLSFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path
    static let certificate = directory + "/server.pem"
    static let key = directory + "/server.key"
    static let authority = directory + "/ca.pem"
    /// A client's certificate and key, and the CA that signed it (another than the server's).
    static let clientCertificate = directory + "/client.pem"
    static let clientKey = directory + "/client.key"
    static let clientAuthority = directory + "/client-ca.pem"

    static func server(_ change: (inout TLSConfiguration) -> Void = { _ in }) throws -> TLSContext {
        var configuration = TLSConfiguration.server(certificateChainFile: certificate, privateKeyFile: key)
        change(&configuration)
        return try TLSContext(configuration)
    }

    static func client(_ change: (inout TLSConfiguration) -> Void = { _ in }) throws -> TLSContext {
        var configuration = TLSConfiguration.client(peerVerification: .trustedCertificates(path: authority))
        change(&configuration)
        return try TLSContext(configuration)
    }

    static func pattern(_ count: Int, seed: UInt8 = 0) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }
}

@Suite("TLS engine, client and server in memory")
struct TLSEngineTests {
    /// OpenSSL says a missing file in three library lines ending in "system lib"; the error says
    /// it plainly, with the errno, and no advice about PEM that does not apply.
    @Test("a certificate, key or CA file that cannot be opened is said so, with the errno")
    func unreadableFilesAreSaidPlainly() throws {
        let missing = TLSFixtures.directory + "/no-such-file.pem"
        let cases: [(TLSConfiguration, String)] = [
            (.server(certificateChainFile: missing, privateKeyFile: TLSFixtures.key), "reading the certificate chain"),
            (.server(certificateChainFile: TLSFixtures.certificate, privateKeyFile: missing), "reading the private key"),
            (.client(peerVerification: .trustedCertificates(path: missing)), "reading the trusted certificates"),
        ]
        for (configuration, operation) in cases {
            let error = try #require(throws: TLSError.self) { try TLSContext(configuration) }
            #expect(error.description == "\(operation) \(missing) failed; cannot open it: No such file or directory (errno 2)",
                    "\(error)")
        }
    }

    static let versions: [(TLSVersion, TLSAEAD)] = [
        (.tls13, .aes128GCM), (.tls13, .aes256GCM), (.tls13, .chacha20Poly1305),
        (.tls12, .aes128GCM), (.tls12, .aes256GCM), (.tls12, .chacha20Poly1305),
    ]

    func handshake(_ version: TLSVersion, _ aead: TLSAEAD, serverContext: TLSContext? = nil, clientContext: TLSContext? = nil,
                   session: TLSSession? = nil) throws -> EnginePair {
        let server = try serverContext ?? TLSFixtures.server { $0.maximumVersion = version; $0.tls13AEADs = [aead]; $0.tls12AEADs = [aead] }
        let client = try clientContext ?? TLSFixtures.client { $0.maximumVersion = version; $0.tls13AEADs = [aead]; $0.tls12AEADs = [aead] }
        var pair = EnginePair(client: try TLSEngine(context: client, serverName: "sluice.test", session: session),
                              server: try TLSEngine(context: server))
        pair.clientEvents = pair.client.start()
        pair.pump()
        return pair
    }

    @Test("handshake, then data both ways with every version and AEAD", arguments: 0..<6)
    func dataBothWays(index: Int) throws {
        let (version, aead) = Self.versions[index]
        var pair = try handshake(version, aead)
        #expect(pair.client.state == .established, "\(String(describing: pair.client.error))")
        #expect(pair.server.state == .established, "\(String(describing: pair.server.error))")
        #expect(pair.client.negotiated?.version == version)
        #expect(pair.client.negotiated?.aead == aead)
        #expect(pair.server.negotiated?.serverName == "sluice.test")
        let up = TLSFixtures.pattern(100_000, seed: 1), down = TLSFixtures.pattern(70_001, seed: 2)
        pair.send(up, from: pair.client)
        pair.send(down, from: pair.server, recordSize: 1000)
        pair.pump()
        #expect(digest(pair.serverReceived) == digest(up))
        #expect(digest(pair.clientReceived) == digest(down))
        pair.client.close()
        pair.pump()
        #expect(pair.serverEvents.contains(.readClosed))
        pair.server.close()
        pair.pump()
        #expect(pair.client.state == .closed && pair.server.state == .closed)
        #expect(pair.client.error == nil && pair.server.error == nil)
    }

    @Test("KeyUpdate from either side, with and without a request for the peer's")
    func keyUpdate() throws {
        var pair = try handshake(.tls13, .aes128GCM)
        pair.client.updateKeys(requestPeerUpdate: true)
        pair.send(TLSFixtures.pattern(5000), from: pair.client)
        pair.pump()
        #expect(pair.server.counters.keyUpdatesReceived == 1)
        #expect(pair.server.counters.keyUpdatesSent == 1)
        #expect(pair.client.counters.keyUpdatesReceived == 1)
        pair.server.updateKeys(requestPeerUpdate: false)
        pair.send(TLSFixtures.pattern(3000), from: pair.server)
        pair.send(TLSFixtures.pattern(3000), from: pair.client)
        pair.pump()
        #expect(digest(pair.clientReceived) == digest(TLSFixtures.pattern(3000)))
        #expect(digest(pair.serverReceived) == digest(TLSFixtures.pattern(5000) + TLSFixtures.pattern(3000)))
        #expect(pair.client.counters.keyUpdatesReceived == 2)
        #expect(pair.client.state == .established && pair.server.state == .established)
    }

    @Test("requests for a KeyUpdate that come before our next application data get one KeyUpdate between them (RFC 8446 4.6.3)")
    func keyUpdateRequestsAreAnsweredOnce() throws {
        var pair = try handshake(.tls13, .aes128GCM)
        for _ in 0..<5 { pair.client.updateKeys(requestPeerUpdate: true) }
        pair.pump()
        #expect(pair.server.counters.keyUpdatesReceived == 5 && pair.server.counters.keyUpdatesSent == 1)
        pair.send(TLSFixtures.pattern(1000), from: pair.server)
        pair.client.updateKeys(requestPeerUpdate: true)
        pair.pump()
        #expect(pair.server.counters.keyUpdatesSent == 2, "after data, a new request gets its own")
        pair.send(TLSFixtures.pattern(2000), from: pair.server)
        pair.send(TLSFixtures.pattern(2000), from: pair.client)
        pair.pump()
        #expect(digest(pair.clientReceived) == digest(TLSFixtures.pattern(1000) + TLSFixtures.pattern(2000)))
        #expect(digest(pair.serverReceived) == digest(TLSFixtures.pattern(2000)))
        #expect(pair.client.error == nil && pair.server.error == nil)
    }

    @Test("a ticket from the first connection resumes the second (TLS 1.3), as does a TLS 1.2 session")
    func resumption() throws {
        for version in [TLSVersion.tls13, .tls12] {
            let server = try TLSFixtures.server { $0.maximumVersion = version }
            let client = try TLSFixtures.client { $0.maximumVersion = version }
            // The first connection is gone before the second starts, as a client's would be.
            let session = try { () throws -> TLSSession in
                var first = try handshake(version, .aes128GCM, serverContext: server, clientContext: client)
                first.send(TLSFixtures.pattern(10), from: first.server)
                first.pump()
                #expect(first.clientReceived == TLSFixtures.pattern(10))
                #expect(first.client.negotiated?.resumed == false)
                if version == .tls13 { #expect(first.client.counters.ticketsReceived == 2) }
                return try #require(first.client.resumableSessions.last, "\(version): no session")
            }()
            #expect(session.isResumable, "\(version)")
            let second = try handshake(version, .aes128GCM, serverContext: server, clientContext: client, session: session)
            #expect(second.client.negotiated?.resumed == true, "\(version)")
            #expect(second.server.negotiated?.resumed == true, "\(version)")
        }
    }

    @Test("a client offers a session only to a server its certificate names, verified against the same trusted certificates")
    func sessionsCarryTheirCertificate() throws {
        for version in [TLSVersion.tls13, .tls12] {
            let server = try TLSFixtures.server { $0.maximumVersion = version }
            let client = try TLSFixtures.client { $0.maximumVersion = version }
            let unverified = try TLSFixtures.client { $0.maximumVersion = version; $0.peerVerification = .none }
            func session(from context: TLSContext) throws -> TLSSession {
                var first = try handshake(version, .aes128GCM, serverContext: server, clientContext: context)
                first.send(TLSFixtures.pattern(10), from: first.server)
                first.pump()
                return try #require(first.client.resumableSessions.last, "\(version): no session")
            }
            let named = try session(from: client)
            #expect(named.certificateNames(serverName: "sluice.test.", address: nil))
            #expect(!named.certificateNames(serverName: "other.test", address: nil))
            #expect(named.certificateNames(serverName: nil, address: "127.0.0.1") && !named.certificateNames(serverName: nil, address: "127.0.0.2"))

            // To another name: not offered, so the full handshake checks the name and fails.
            var other = EnginePair(client: try TLSEngine(context: client, serverName: "other.test", session: named),
                                   server: try TLSEngine(context: server))
            other.clientEvents = other.client.start()
            other.pump()
            #expect(other.client.state == .closed && other.server.negotiated?.resumed != true, "\(version)")
            #expect(String(describing: other.client.error).contains("hostname mismatch"), "\(version): \(String(describing: other.client.error))")

            // Made by a client that checked nothing: not offered, so the full handshake verifies.
            let unchecked = try session(from: unverified)
            #expect(unchecked.reasonNotToOffer(context: client, serverName: "sluice.test", address: nil) == "it was made without verifying the server")
            let full = try handshake(version, .aes128GCM, serverContext: server, clientContext: client, session: unchecked)
            #expect(full.client.state == .established && full.client.negotiated?.resumed == false, "\(version)")

            // Another context trusting the same certificates takes it (as the next run of a client
            // would); one trusting another CA does not.
            let again = try TLSFixtures.client { $0.maximumVersion = version }
            #expect(named.reasonNotToOffer(context: again, serverName: "sluice.test", address: nil) == nil)
            let resumed = try handshake(version, .aes128GCM, serverContext: server, clientContext: again, session: named)
            #expect(resumed.client.negotiated?.resumed == true, "\(version)")
            let otherTrust = try TLSFixtures.client {
                $0.maximumVersion = version
                $0.peerVerification = .trustedCertificates(path: TLSFixtures.clientAuthority)
            }
            #expect(named.reasonNotToOffer(context: otherTrust, serverName: "sluice.test", address: nil)
                == "it was verified against other trusted certificates than this connection's")
            #expect(named.reasonNotToOffer(context: unverified, serverName: "sluice.test", address: nil)
                == "it was made by a connection that verified the server (this one does not)")
        }
    }

    @Test("NewSessionTickets each spread over several records (a server sending records of 512 bytes) are taken whole and resume")
    func ticketsAcrossRecords() throws {
        let server = try TLSFixtures.server { $0.maximumVersion = .tls13 }
        let client = try TLSFixtures.client { $0.maximumVersion = .tls13 }
        _ = SSL_CTX_ctrl(server.raw, SSL_CTRL_SET_MAX_SEND_FRAGMENT, 512, nil)
        // 2000 bytes of application data in each ticket: four records or more apiece.
        _ = SSL_CTX_set_session_ticket_cb(server.raw, { ssl, _ in
            let data = [UInt8](repeating: 0x5A, count: 2000)
            return SSL_SESSION_set1_ticket_appdata(SSL_get_session(ssl), data, data.count)
        }, nil, nil)
        var first = try handshake(.tls13, .aes128GCM, serverContext: server, clientContext: client)
        first.send(TLSFixtures.pattern(10), from: first.server)
        first.pump()
        #expect(first.clientReceived == TLSFixtures.pattern(10))
        #expect(first.client.counters.ticketsReceived == 2)
        let session = try #require(first.client.resumableSessions.last, "no session")
        let second = try handshake(.tls13, .aes128GCM, serverContext: server, clientContext: client, session: session)
        #expect(second.client.negotiated?.resumed == true)
    }

    @Test("a TLS 1.3 client takes tickets whenever they come: after data, beside a KeyUpdate; a malformed one is decode_error")
    func ticketsAtAnyTime() throws {
        let server = try TLSFixtures.server { $0.maximumVersion = .tls13; $0.ticketsPerHandshake = 0 }
        let pair = try handshake(.tls13, .aes128GCM, serverContext: server)
        // The server's side from here on is sealed by hand, with its keys where it left them.
        let sealer = try TLSRecordCipher(keys: #require(pair.server.offloadableKeys).write, sealing: true)
        var received: [UInt8] = []
        func deliver(_ type: TLSContentType, _ content: [UInt8]) -> TLSEngine.Events {
            var record: [UInt8] = []
            content.withUnsafeBytes { sealer.append(type, $0, to: &record) }
            return record.withUnsafeMutableBytes { pair.client.receive($0) { received += $0 } }
        }
        // lifetime, age_add, a 1-byte nonce, a 4-byte ticket, no extensions.
        let body: [UInt8] = [0, 0, 0x1C, 0x20, 1, 2, 3, 4, 1, 0, 0, 4, 9, 9, 9, 9, 0, 0]
        let ticket: [UInt8] = [4, 0, 0, UInt8(body.count)] + body
        _ = deliver(.applicationData, Array("x".utf8))
        _ = deliver(.handshake, ticket)
        #expect(pair.client.counters.ticketsReceived == 1 && pair.client.resumableSessions.count == 1)
        _ = deliver(.handshake, ticket + [24, 0, 0, 1, 0])
        sealer.rekey(sealer.keys.updated())
        _ = deliver(.applicationData, Array("y".utf8))
        #expect(received == Array("xy".utf8))
        #expect(pair.client.counters.ticketsReceived == 2 && pair.client.counters.keyUpdatesReceived == 1)
        // The ticket's length runs past the message: OpenSSL refuses it, the client ends with decode_error.
        var bad = ticket
        bad[15] = 9
        let events = deliver(.handshake, bad)
        #expect(events.contains(.failed) && pair.client.error?.sentAlert == .decodeError, "\(String(describing: pair.client.error))")
    }

    /// A server may send tickets without end, each up to 64 KiB: the client keeps the newest
    /// four (s_client keeps one), counting them all, and takes a ticket of the largest size the
    /// RFC allows, spread over records, as OpenSSL's s_client does.
    @Test("a TLS 1.3 client keeps the newest tickets only, and takes one of 2^16-1 bytes")
    func ticketsAreBoundedAndTheLargestIsTaken() throws {
        let server = try TLSFixtures.server { $0.maximumVersion = .tls13; $0.ticketsPerHandshake = 0 }
        let pair = try handshake(.tls13, .aes128GCM, serverContext: server)
        let sealer = try TLSRecordCipher(keys: #require(pair.server.offloadableKeys).write, sealing: true)
        func deliver(_ message: [UInt8]) -> TLSEngine.Events {
            var events: TLSEngine.Events = []
            for at in stride(from: 0, to: message.count, by: 16384) {
                var record: [UInt8] = []
                message[at..<min(at + 16384, message.count)].withUnsafeBytes { sealer.append(.handshake, $0, to: &record) }
                events.formUnion(record.withUnsafeMutableBytes { pair.client.receive($0) { _ in } })
            }
            return events
        }
        // lifetime, age_add, a 1-byte nonce, then the ticket, no extensions.
        func newSessionTicket(_ ticket: [UInt8], nonce: UInt8) -> [UInt8] {
            let body: [UInt8] = [0, 0, 0x1C, 0x20, 1, 2, 3, 4, 1, nonce, UInt8(ticket.count >> 8), UInt8(ticket.count & 0xFF)] + ticket + [0, 0]
            return [4, UInt8(body.count >> 16), UInt8(body.count >> 8 & 0xFF), UInt8(body.count & 0xFF)] + body
        }
        for n in 0..<10 { _ = deliver(newSessionTicket([UInt8](repeating: UInt8(n), count: 1000), nonce: UInt8(n))) }
        #expect(pair.client.counters.ticketsReceived == 10)
        #expect(pair.client.resumableSessions.count == 4)
        let events = deliver(newSessionTicket([UInt8](repeating: 7, count: 65535), nonce: 99))
        #expect(!events.contains(.failed), "\(String(describing: pair.client.error))")
        #expect(pair.client.counters.ticketsReceived == 11 && pair.client.state == .established)
    }

    @Test("a flipped bit is bad_record_mac and ends the connection; the peer reads the alert")
    func tampering() throws {
        for (version, aead) in [(TLSVersion.tls13, TLSAEAD.chacha20Poly1305), (.tls12, .aes256GCM)] {
            var pair = try handshake(version, aead)
            pair.send(TLSFixtures.pattern(300), from: pair.client)
            pair.toServer[pair.toServer.count - 20] ^= 0x10
            pair.pump()
            #expect(pair.server.state == .closed)
            #expect(pair.server.error?.sentAlert == .badRecordMAC)
            #expect(pair.serverReceived.isEmpty)
            #expect(pair.client.state == .closed)
            #expect(pair.client.error?.receivedAlert == .badRecordMAC)
        }
    }

    @Test("a record past 2^14 + 256 bytes is record_overflow before its body arrives")
    func overflow() throws {
        var pair = try handshake(.tls13, .aes128GCM)
        var header: [UInt8] = [23, 3, 3, 0x41, 0x01]
        _ = header.withUnsafeMutableBytes { pair.server.receive($0) { _ in } }
        #expect(pair.server.error?.sentAlert == .recordOverflow)
        pair.pump()
        #expect(pair.client.error?.receivedAlert == .recordOverflow)
    }

    /// Records after the handshake as RFC 8446 section 5 and 6.1 want them answered, as OpenSSL's
    /// server answers them: `build` seals onto the client's outbound bytes.
    func serverAnswer(to build: (TLSEngine) -> Void) throws -> (server: TLSEngine, received: [UInt8]) {
        var pair = try handshake(.tls13, .aes128GCM)
        build(pair.client)
        pair.send([], from: pair.client)
        pair.pump()
        return (pair.server, pair.serverReceived)
    }

    @Test("after a close_notify everything is ignored; a record inside a handshake message, an empty handshake record, a plaintext record, a bad KeyUpdate end the connection")
    func recordsOutOfPlace() throws {
        let ignored = try serverAnswer { client in
            client.sealControl(.alert, [1, TLSAlert.closeNotify.code])
            client.sealControl(.applicationData, Array("after the end".utf8))
        }
        #expect(ignored.server.isReadClosed && ignored.server.error == nil && ignored.received.isEmpty)
        // Four warnings, data, four more: data between them starts the count again, as OpenSSL counts.
        let spaced = try serverAnswer { client in
            for round in 0..<2 {
                for _ in 0..<4 { client.sealControl(.alert, [1, 90]) }
                client.sealControl(.applicationData, [UInt8(round)])
            }
        }
        #expect(spaced.server.error == nil && spaced.received == [0, 1], "\(String(describing: spaced.server.error))")
        let cases: [(String, (TLSEngine) -> Void, TLSAlert)] = [
            ("half a KeyUpdate, then data", { $0.sealControl(.handshake, [24, 0]); $0.sealControl(.applicationData, [1]) }, .unexpectedMessage),
            ("an empty handshake record", { $0.sealControl(.handshake, []) }, .unexpectedMessage),
            ("a KeyUpdate asking for 2", { $0.sealControl(.handshake, [24, 0, 0, 1, 2]) }, .illegalParameter),
            ("a KeyUpdate claiming 16 MiB", { $0.sealControl(.handshake, [24, 0xFF, 0xFF, 0xFF]) }, .decodeError),
            ("33 empty records", { client in for _ in 0..<33 { client.sealControl(.applicationData, []) } }, .unexpectedMessage),
            ("5 user_canceled warnings in a row", { client in for _ in 0..<5 { client.sealControl(.alert, [1, 90]) } }, .unexpectedMessage),
        ]
        for (what, build, alert) in cases {
            let answer = try serverAnswer(to: build)
            #expect(answer.server.error?.sentAlert == alert, "\(what): \(String(describing: answer.server.error))")
        }
        // A plaintext ChangeCipherSpec after a TLS 1.3 handshake: an unexpected record type, not a bad MAC.
        let pair = try handshake(.tls13, .aes128GCM)
        var changeCipherSpec: [UInt8] = [20, 3, 3, 0, 1, 1]
        _ = changeCipherSpec.withUnsafeMutableBytes { pair.server.receive($0) { _ in } }
        #expect(pair.server.error?.sentAlert == .unexpectedMessage)
    }

    @Test("a key of another certificate, an encrypted key, a missing or wrong file, a weak key: an error saying which, never a prompt or a crash")
    func unusableKeys() {
        let cases: [(certificate: String, key: String, operation: String, hint: String)] = [
            (TLSFixtures.certificate, TLSFixtures.directory + "/other.key", "private key", "another certificate"),
            (TLSFixtures.certificate, TLSFixtures.directory + "/encrypted.key", "private key", "the key is encrypted and no pass phrase is asked"),
            (TLSFixtures.certificate, TLSFixtures.directory + "/missing.key", "private key", "cannot open it"),
            (TLSFixtures.certificate, TLSFixtures.certificate, "private key", "unencrypted"),
            (TLSFixtures.key, TLSFixtures.key, "certificate chain", "leaf certificate first"),
            // RSA 1024: refused by OpenSSL's security level, which the hint names.
            (TLSFixtures.directory + "/weak.pem", TLSFixtures.directory + "/weak.key", "certificate chain", "security level"),
        ]
        for c in cases {
            #expect {
                _ = try TLSContext(.server(certificateChainFile: c.certificate, privateKeyFile: c.key))
            } throws: { error in
                guard let error = error as? TLSError else { return false }
                return error.operation.contains(c.operation) && error.hint.contains(c.hint)
            }
        }
    }

    @Test("an ALPN name of 0 or 256 bytes and an empty server name are errors, never a trap")
    func unusableNames() throws {
        for protocols in [[""], ["h2", String(repeating: "x", count: 256)]] {
            #expect(throws: TLSError.self) { _ = try TLSFixtures.client { $0.applicationProtocols = protocols } }
        }
        let client = try TLSFixtures.client()
        #expect(throws: TLSError.self) { _ = try TLSEngine(context: client, serverName: "") }
    }

    @Test("client certificates: required, each side learns whom it verified, and resumption keeps it; a client without one or with another CA's is refused; requested serves one without")
    func clientCertificates() throws {
        for version in [TLSVersion.tls13, .tls12] {
            let server = try TLSFixtures.server {
                $0.maximumVersion = version
                $0.clientCertificates = .required(trustedCertificates: TLSFixtures.clientAuthority)
            }
            let client = try TLSFixtures.client {
                $0.maximumVersion = version
                $0.certificateChainFile = TLSFixtures.clientCertificate
                $0.privateKeyFile = TLSFixtures.clientKey
            }
            var first = try handshake(version, .aes128GCM, serverContext: server, clientContext: client)
            first.send(TLSFixtures.pattern(10), from: first.client)
            first.send(TLSFixtures.pattern(10), from: first.server)
            first.pump()
            #expect(first.serverReceived == TLSFixtures.pattern(10) && first.clientReceived == TLSFixtures.pattern(10),
                    "\(version): \(String(describing: first.server.error))")
            #expect(first.server.negotiated?.peerCertificateSubject == "CN=sluice client", "\(version)")
            #expect(first.client.negotiated?.peerCertificateSubject == "CN=sluice.test", "\(version)")
            let session = try #require(first.client.resumableSessions.last, "\(version): no session")
            let second = try handshake(version, .aes128GCM, serverContext: server, clientContext: client, session: session)
            #expect(second.server.negotiated?.resumed == true, "\(version): \(String(describing: second.server.error))")
            #expect(second.server.negotiated?.peerCertificateSubject == "CN=sluice client", "\(version)")

            // TLS 1.3's refusal comes after the client's Finished, under the application keys.
            let without = try handshake(version, .aes128GCM, serverContext: server, clientContext: TLSFixtures.client { $0.maximumVersion = version })
            #expect(without.server.state == .closed && without.server.negotiated == nil, "\(version)")
            #expect(without.server.error?.hint == "the client sent no certificate, which this server requires", "\(String(describing: without.server.error))")
            #expect(without.client.state == .closed, "\(version)")
            #expect(without.client.error?.hint.contains("client certificate") == true, "\(version): \(String(describing: without.client.error))")
            // The alert the server sent is said whether or not it went encrypted (TLS 1.3: certificate_required).
            #expect(without.server.error?.sentAlert == (version == .tls13 ? .certificateRequired : .handshakeFailure),
                    "\(String(describing: without.server.error))")
            if version == .tls13 { #expect(without.client.error?.receivedAlert == .certificateRequired) }

            let stranger = try TLSFixtures.client {
                $0.maximumVersion = version
                $0.certificateChainFile = TLSFixtures.certificate
                $0.privateKeyFile = TLSFixtures.key
            }
            let refused = try handshake(version, .aes128GCM, serverContext: server, clientContext: stranger)
            #expect(refused.server.state == .closed && refused.server.negotiated == nil, "\(version)")
            #expect(refused.server.error?.hint.contains("the certificate did not verify") == true, "\(String(describing: refused.server.error))")
            #expect(refused.server.error?.sentAlert == TLSAlert(48), "\(String(describing: refused.server.error))")

            let lenient = try TLSFixtures.server {
                $0.maximumVersion = version
                $0.clientCertificates = .requested(trustedCertificates: TLSFixtures.clientAuthority)
            }
            let served = try handshake(version, .aes128GCM, serverContext: lenient)
            #expect(served.server.state == .established && served.server.negotiated?.peerCertificateSubject == nil, "\(version)")
        }
    }

    @Test("a client that does not trust the server's certificate fails with the reason")
    func untrusted() throws {
        let client = try TLSContext(.client(peerVerification: .systemTrustStore))
        let pair = try handshake(.tls13, .aes128GCM, clientContext: client)
        #expect(pair.client.state == .closed)
        let error = try #require(pair.client.error)
        #expect(error.hint.contains("certificate"), "\(error)")
        #expect(pair.server.error?.receivedAlert != nil)
    }

    @Test("a client that reached the server by address, with no name, checks the address against the certificate")
    func peerAddress() throws {
        let server = try TLSFixtures.server()
        let client = try TLSFixtures.client()
        for (address, accepted) in [("127.0.0.1", true), ("198.18.0.9", false)] {
            var pair = EnginePair(client: try TLSEngine(context: client, peerAddress: address), server: try TLSEngine(context: server))
            pair.clientEvents = pair.client.start()
            pair.pump()
            #expect((pair.client.state == .established) == accepted, "\(address): \(String(describing: pair.client.error))")
            if !accepted { #expect(pair.client.error?.hint.contains("IP address mismatch") == true, "\(String(describing: pair.client.error))") }
        }
    }

    @Test("ALPN: the server's most preferred protocol the client offers")
    func alpn() throws {
        let server = try TLSFixtures.server { $0.applicationProtocols = ["h2", "http/1.1"] }
        let client = try TLSFixtures.client { $0.applicationProtocols = ["http/1.1", "h2"] }
        let pair = try handshake(.tls13, .aes128GCM, serverContext: server, clientContext: client)
        #expect(pair.client.negotiated?.applicationProtocol == "h2")
        #expect(pair.server.negotiated?.applicationProtocol == "h2")
    }
}

@Suite("TLS engine against garbage")
struct TLSEngineGarbageTests {
    /// A small deterministic generator, so a failure can be replayed.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 11
        }
        mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
    }

    @Test("random bytes in place of a ClientHello end the handshake with an error, never a trap")
    func randomHandshakeBytes() throws {
        var random = Generator(state: 0x5eed)
        let context = try TLSFixtures.server()
        for round in 0..<200 {
            let engine = try TLSEngine(context: context)
            var bytes = random.bytes(Int(random.next() % 600) + 3)
            if round % 2 == 0 { bytes[0] = 22; bytes[1] = 3; bytes[2] = 1 }   // a plausible record header
            _ = bytes.withUnsafeMutableBytes { engine.receive($0) { _ in Issue.record("plaintext from garbage") } }
            #expect(engine.state != .established)
        }
    }

    @Test("every single-byte change to a record stream after the handshake fails cleanly or is refused")
    func mutatedRecords() throws {
        var random = Generator(state: 0xbad)
        for (version, aead) in [(TLSVersion.tls13, TLSAEAD.aes128GCM), (.tls12, .chacha20Poly1305)] {
            for _ in 0..<40 {
                var pair = try TLSEngineTests().handshake(version, aead)
                pair.send(TLSFixtures.pattern(3000), from: pair.client, recordSize: 700)
                let at = Int(random.next() % UInt64(pair.toServer.count))
                pair.toServer[at] ^= UInt8(truncatingIfNeeded: random.next() | 1)
                pair.pump()
                // Refused at the changed record (or, for a longer length, still waiting for its
                // end): what was delivered is exactly what came before it.
                #expect(pair.server.state == .closed && pair.server.error != nil
                        || pair.server.state == .established && pair.serverEvents.isDisjoint(with: .failed),
                        "byte \(at) of \(pair.toServer.count)")
                #expect(pair.serverReceived.count < 3000)
                #expect(pair.serverReceived == Array(TLSFixtures.pattern(3000).prefix(pair.serverReceived.count)))
            }
        }
    }
}
