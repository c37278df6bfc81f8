#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceDNS
import SluiceTestSupport
import Synchronization
import Testing

let dnsNamespaceCounter = Atomic<Int>(0)

/// `sluice dns serve` and Knot DNS serve the same zone file; the same queries go to both, and
/// the answers must agree section by section: rcode, flags, answer, authority, additional, EDNS.
@Suite(.serialized) struct DNSAgainstKnotTests {
    static let zoneFile = DNSCodecTests.fixtures + "/example.test.zone"

    /// Knot DNS on `listen` in `namespace`, with a directory of its own.
    final class Knot {
        let process: ChildProcess
        let directory: String

        init(namespace: String, listen: String, zones: [(domain: String, file: String)] = [("example.test", DNSAgainstKnotTests.zoneFile)]) throws {
            directory = "/tmp/sluice-knot-\(getpid())-\(dnsNamespaceCounter.add(1, ordering: .relaxed).newValue)"
            _ = try ChildProcess("/bin/mkdir", ["-p", directory + "/run", directory + "/db"]).waitForExit()
            let configuration = """
                server:
                    listen: \(listen)
                    rundir: \(directory)/run
                log:
                  - target: stderr
                    any: error
                database:
                    storage: \(directory)/db
                zone:
                """ + zones.map { zone in
                    """

                      - domain: \(zone.domain)
                        file: \(zone.file)
                        journal-content: none
                        semantic-checks: off
                    """
                }.joined()
            let file = fopen(directory + "/knot.conf", "w")
            fputs(configuration, file)
            fclose(file)
            process = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace, "/usr/sbin/knotd", "-c", directory + "/knot.conf"])
            // Ready once it answers: a query sent before it listens would meet a refused port.
            let endpoint = IPEndpoint(listen.replacing("@", with: ":"))!
            let socket = try withNetworkNamespace(namespace) { KernelUDPSocket(bind: IPEndpoint(address: endpoint.address, port: 0)) }
            let soa = DNSAgainstKnotTests.header(id: 1, flags: 0, counts: [1, 0, 0, 0]) + DNSAgainstKnotTests.question(zones[0].domain, 6)
            guard DNSAgainstKnotTests.firstAnswer(socket, endpoint, soa) != nil else {
                throw NotAnswering(output: process.text)
            }
        }

        /// Knot did not answer within 10 s; `output` is what it printed.
        struct NotAnswering: Error {
            let output: String
        }

        deinit {
            _ = process.stop()
            _ = try? ChildProcess("/bin/rm", ["-rf", directory]).waitForExit()
        }
    }


    /// Whether Knot DNS is here to compare with; prints the one skip line when it is not.
    static func knotAvailable(alsoNeeding tools: [String] = []) -> Bool {
        let missing = (["/usr/sbin/knotd"] + tools).filter { access($0, X_OK) != 0 }
        if !missing.isEmpty {
            print("skip: \(missing.joined(separator: ", ")) not installed; the README's test command installs Knot DNS and its tools")
        }
        return missing.isEmpty
    }

    /// The queries: every kind of answer the zone gives, over several EDNS settings and cases.
    static func queries() -> [DNSMessage] {
        let questions: [(String, DNSRecordType)] = [
            ("example.test.", .soa), ("example.test.", .ns), ("example.test.", .mx), ("example.test.", .caa), ("example.test.", .any),
            ("www.example.test.", .a), ("WwW.ExAmPlE.tEsT.", .aaaa), ("x.wild.example.test.", .a), ("a.b.wild.example.test.", .txt),
            ("x.wild.example.test.", .mx), ("cname.wild.example.test.", .a), ("nothing.example.test.", .a), ("deep.example.test.", .a),
            ("foo.sub.example.test.", .a), ("sub.example.test.", .ns), ("sub.example.test.", .ds), ("loop1.example.test.", .a),
            ("gone.example.test.", .a), ("out.example.test.", .a), ("esc\\.aped.example.test.", .a),
            ("generic.example.test.", DNSRecordType(rawValue: 65534)), ("_sip._udp.example.test.", .srv),
            ("1.5.18.198.example.test.", .ptr), ("big.example.test.", .txt), ("other.org.", .a), ("test.", .soa),
            ("esc.example.test.", .txt), ("esc.example.test.", .hinfo), ("esc.example.test.", .caa), ("long.example.test.", .txt),
            ("mxbig.example.test.", .mx), ("outside.example.org.", .a),
            ("naptr.example.test.", .naptr), ("rp.example.test.", .rp), ("uri.example.test.", .uri), ("cert.example.test.", .cert),
            ("eui.example.test.", .eui48), ("svc.example.test.", .svcb), ("svc.example.test.", .https), ("svc.example.test.", .any),
            ("svcalias.example.test.", .https), ("svcmail.example.test.", .svcb),
            ("svc.example.test.", .nsec3param), ("svc.example.test.", .rrsig), ("hashed.example.test.", .a),
            ("loc.example.test.", .loc), ("loc3.example.test.", .loc), ("example.test.", .zonemd), ("example.test.", .csync),
            ("www.example.test.", .rrsig), ("www.example.test.", .nsec), ("cname.wild.example.test.", .rrsig),
            ("ilnp.example.test.", .nid), ("ilnp.example.test.", .l32), ("ilnp.example.test.", .l64), ("ilnp.example.test.", .lp),
            ("ilnp.example.test.", .any), ("minfo.example.test.", .minfo), ("minfo.example.test.", .any),
            ("apl.example.test.", .apl), ("ipsec.example.test.", .ipseckey), ("ipsec.example.test.", .key), ("ipsec.example.test.", .any),
        ]
        var messages: [DNSMessage] = []
        for (index, (name, type)) in questions.enumerated() {
            for variant in 0..<3 {
                var message = DNSMessage()
                message.header.id = UInt16(index * 3 + variant)
                message.header.flags = variant == 1 ? DNSHeader.recursionDesired : 0
                message.questions = [DNSQuestion(name: DNSName(name)!, type: type)]
                switch variant {
                case 1: message.edns = DNSEDNS(payloadSize: 1232)
                case 2:
                    var edns = DNSEDNS(payloadSize: 4096)
                    edns.dnssecOK = true
                    message.edns = edns
                default: break
                }
                messages.append(message)
            }
        }
        var badVersion = messages[0]
        badVersion.edns = DNSEDNS(payloadSize: 1232)
        badVersion.edns?.version = 1
        var chaos = messages[0]
        chaos.questions[0].recordClass = 3
        var notify = messages[0]
        notify.header.flags = 4 << 11
        return messages + [badVersion, chaos, notify]
    }

    /// What must agree: everything but the ID, sections compared as sets (servers order records their own way).
    struct Comparable: Equatable, CustomStringConvertible {
        var flags: UInt16
        var code: DNSResponseCode
        var question: [String]
        var answer: [String]
        var authority: [String]
        var additional: [String]
        var edns: String

        init(_ message: DNSMessage) {
            flags = message.header.flags
            code = message.responseCode
            question = message.questions.map { "\($0.name) \($0.type) \($0.recordClass)" }
            answer = message.answers.map(\.description).sorted()
            authority = message.authority.map(\.description).sorted()
            additional = message.additional.map(\.description).sorted()
            edns = message.edns.map { "\($0.payloadSize) v\($0.version) do=\($0.dnssecOK) ext=\($0.extendedResponseCode)" } ?? "none"
        }

        var description: String {
            "flags \(String(flags, radix: 16)) \(code) q\(question) an\(answer) ns\(authority) ar\(additional) edns \(edns)"
        }
    }

    static func ask(_ socket: KernelUDPSocket, _ server: IPEndpoint, _ query: [UInt8]) throws -> DNSMessage {
        try DNSMessage.decode(exchange(socket, server, query))
    }

    static func exchange(_ socket: KernelUDPSocket, _ server: IPEndpoint, _ query: [UInt8]) throws -> [UInt8] {
        socket.send(query, to: server)
        return try #require(socket.receive(), "no answer from \(server)").bytes
    }

    /// Asks Knot and Sluice `query` and expects the same answer, byte for byte: the same records
    /// in the same order, names compressed as Knot compresses them. Returns both answers and
    /// whether they were the same.
    @discardableResult
    static func expectSameAnswer(_ socket: KernelUDPSocket, knot: IPEndpoint, sluice: IPEndpoint, _ query: [UInt8],
                                 _ what: @autoclosure () -> String) throws -> (knot: DNSMessage, sluice: DNSMessage, same: Bool) {
        let expected = try exchange(socket, knot, query)
        let actual = try exchange(socket, sluice, query)
        let (fromKnot, fromSluice) = (try DNSMessage.decode(expected), try DNSMessage.decode(actual))
        #expect(Comparable(fromKnot) == Comparable(fromSluice), "\(what()):\n  knot   \(Comparable(fromKnot))\n  sluice \(Comparable(fromSluice))")
        #expect(expected == actual, "\(what()): the records agree, the bytes do not:\n  knot   \(expected)\n  sluice \(actual)")
        return (fromKnot, fromSluice, expected == actual)
    }

    /// The first answer `server` gives to `query`, asked every 100 ms for up to 10 s: a server
    /// not listening yet has its port refused at once.
    static func firstAnswer(_ socket: KernelUDPSocket, _ server: IPEndpoint, _ query: [UInt8]) -> DNSMessage? {
        for _ in 0..<100 {
            socket.send(query, to: server)
            if let reply = socket.receive(), let message = try? DNSMessage.decode(reply.bytes) { return message }
            usleep(100_000)
        }
        return nil
    }

    /// Sends every query to both and compares; returns how many agreed.
    static func compare(knot: IPEndpoint, sluice: IPEndpoint, from socket: KernelUDPSocket) throws -> Int {
        var agreed = 0
        for query in queries() {
            let answers = try expectSameAnswer(socket, knot: knot, sluice: sluice, query.encode(),
                                               "\(query.questions[0].name) \(query.questions[0].type)")
            #expect(answers.sluice.header.id == query.header.id)
            if answers.same { agreed += 1 }
        }
        return agreed
    }

    /// One length-prefixed query over TCP, and its answer.
    static func askOverTCP(_ server: IPEndpoint, _ query: [UInt8]) throws -> DNSMessage {
        try pipeline([query], to: server)[0]
    }

    /// A TCP connection to `server`, reads timing out after 3 s; `receiveBufferBytes` sets its
    /// `SO_RCVBUF`.
    static func connectTCP(_ server: IPEndpoint, receiveBufferBytes: Int32? = nil) throws -> KernelTCPSocket {
        let connection = try KernelTCPSocket(connectingTo: server, receiveBufferBytes: receiveBufferBytes)
        connection.setReceiveTimeout(seconds: 3)
        return connection
    }

    /// `queries`, length-prefixed, in one write over one TCP connection, and their answers
    /// (`expecting` of them, one per query unless told).
    static func pipeline(_ queries: [[UInt8]], to server: IPEndpoint, expecting: Int? = nil) throws -> [DNSMessage] {
        try pipelineBytes(queries, to: server, expecting: expecting).map { try DNSMessage.decode($0) }
    }

    /// ``pipeline(_:to:expecting:)``'s answers as they came, over a connection whose `SO_RCVBUF`
    /// is `receiveBufferBytes` when given, shut down for writing after the queries with `endWriting`.
    static func pipelineBytes(_ queries: [[UInt8]], to server: IPEndpoint, expecting: Int? = nil,
                              receiveBufferBytes: Int32? = nil, endWriting: Bool = false) throws -> [[UInt8]] {
        let expected = expecting ?? queries.count
        let connection = try connectTCP(server, receiveBufferBytes: receiveBufferBytes)
        let descriptor = connection.descriptor
        let framed = queries.flatMap { [UInt8($0.count >> 8), UInt8($0.count & 0xFF)] + $0 }
        _ = framed.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
        if endWriting { shutdown(descriptor, Int32(SHUT_WR)) }
        var received: [UInt8] = []
        var answers: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while answers.count < expected {
            while received.count >= 2, received.count >= 2 + (Int(received[0]) << 8 | Int(received[1])) {
                let length = Int(received[0]) << 8 | Int(received[1])
                answers.append(Array(received[2..<(2 + length)]))
                received.removeFirst(2 + length)
            }
            guard answers.count < expected else { break }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw ChildProcessError(message: "\(answers.count) of \(expected) answers over TCP from \(server)") }
            received += buffer[..<count]
        }
        withExtendedLifetime(connection) {}
        return answers
    }

    func serve(_ namespace: String, _ arguments: [String]) throws -> ChildProcess {
        let server = try ChildProcess(sluice: ["dns", "serve", "--zone", Self.zoneFile, "--netns", namespace,
                                               "--duration", "120", "--stats-interval", "0"] + arguments)
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        return server
    }

    /// `--rrl-limit` is one limit for the whole server, as Knot's table is one for all its
    /// workers: queries spread over two workers (by their source ports) are answered four
    /// seconds' worth in all, not four seconds' worth each.
    @Test func theRateLimitIsOneForAllWorkers() throws {
        let namespace = try ScratchNamespace(prefix: "sldns")
        let server = try serve(namespace.name, ["--listen", "127.0.0.1:5302", "--workers", "2", "--rrl-limit", "5", "--rrl-slip", "0"])
        let sockets = try withNetworkNamespace(namespace.name) {
            (0..<16).map { _ in KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!, receiveTimeout: .milliseconds(200)) }
        }
        var query = DNSMessage()
        query.questions = [DNSQuestion(name: DNSName("www.example.test.")!, type: .a)]
        for round in 0..<5 {
            for socket in sockets {
                query.header.id = UInt16(round)
                socket.send(query.encode(), to: IPEndpoint("127.0.0.1:5302")!)
            }
        }
        var answered = 0
        for socket in sockets { while socket.receive() != nil { answered += 1 } }
        // 20 from the full bucket; what a second refills (5) at most while the 80 queries go out.
        #expect((20...25).contains(answered), "\(answered) answered")
        #expect(server.stop() == 0)
        let perWorker = server.text.split(separator: "\n").filter { $0.contains("worker") }
        #expect(server.text.contains("rrl_dropped="), "\(perWorker)\n\(server.text)")
    }

    /// Each zone loads on its own, as Knot's do: one whose file is broken at start answers
    /// SERVFAIL while the others are served. SIGHUP reloads them: a changed zone is served over
    /// UDP and TCP at once, a fixed one starts answering, and one that no longer loads keeps
    /// what it served, saying which line; SIGQUIT stops the server cleanly, summary and all.
    @Test func aHangupReloadsTheZonesAndABrokenOneIsKept() throws {
        let namespace = try ScratchNamespace(prefix: "sldns")
        let path = "/tmp/sluice-reload-\(getpid()).zone"
        let brokenPath = "/tmp/sluice-reload-broken-\(getpid()).zone"
        defer { unlink(path); unlink(brokenPath) }
        let broken = "$TTL 300\n@ IN SOA ns h 7 3600 600 86400 300\n@ IN NS ns\nns IN A 198.18.9.300\n"
        try broken.write(toFile: brokenPath, atomically: true, encoding: .utf8)
        let zone = """
            $ORIGIN reload.test.
            $TTL 300
            @ IN SOA ns.reload.test. h.reload.test. 1 3600 600 86400 300
            @ IN NS ns.reload.test.
            ns IN A 198.18.9.1
            old IN A 198.18.9.2

            """
        try zone.write(toFile: path, atomically: true, encoding: .utf8)
        let server = try ChildProcess(sluice: ["dns", "serve", "--zone", path, "--zone", "broken.reload.test=\(brokenPath)",
                                               "--netns", namespace.name, "--listen", "127.0.0.1:5302", "--duration", "120", "--stats-interval", "0"])
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        #expect(server.text.contains("\(brokenPath): zone file line 4") && server.text.contains("broken.reload.test. answered SERVFAIL until a reload loads it"),
                "\(server.text)")
        let socket = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        func ask(_ name: String, overTCP: Bool = false) throws -> DNSMessage? {
            var query = DNSMessage()
            query.header.id = UInt16.random(in: 0...UInt16.max)
            query.questions = [DNSQuestion(name: DNSName(name)!, type: .a)]
            query.edns = DNSEDNS()
            let bytes = query.encode()
            guard overTCP else {
                socket.send(bytes, to: IPEndpoint("127.0.0.1:5302")!)
                return try socket.receive().map { try DNSMessage.decode($0.bytes) }
            }
            let tcp = try withNetworkNamespace(namespace.name) { try KernelTCPSocket(connectingTo: IPEndpoint("127.0.0.1:5302")!) }
            let framed = [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes
            _ = framed.withUnsafeBytes { send(tcp.descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while received.count < 2 || received.count < 2 + (Int(received[0]) << 8 | Int(received[1])) {
                var ready = pollfd(fd: tcp.descriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&ready, 1, 5000) == 1 else { return nil }
                let count = recv(tcp.descriptor, &chunk, chunk.count, 0)
                guard count > 0 else { return nil }
                received += chunk[..<count]
            }
            return try DNSMessage.decode(Array(received[2...]))
        }
        #expect(try ask("new.reload.test.")?.responseCode == .nameError)
        for overTCP in [false, true] {
            let failed = try ask("ns.broken.reload.test.", overTCP: overTCP)
            #expect(failed?.responseCode == .serverFailure && failed?.header.isAuthoritative == false && failed?.edns != nil, "\(String(describing: failed))")
        }
        try (zone.replacingOccurrences(of: " 1 3600", with: " 2 3600") + "new IN A 198.18.9.3\n").write(toFile: path, atomically: true, encoding: .utf8)
        try broken.replacingOccurrences(of: ".300", with: ".30").write(toFile: brokenPath, atomically: true, encoding: .utf8)
        kill(server.pid, SIGHUP)
        #expect(server.waitForLine(containing: "zones reloaded (reload.test. serial 2, broken.reload.test. serial 7)") != nil, "\(server.text)")
        #expect(try ask("new.reload.test.")?.answers.map(\.dataText) == ["198.18.9.3"])
        #expect(try ask("new.reload.test.", overTCP: true)?.answers.map(\.dataText) == ["198.18.9.3"], "over TCP too")
        #expect(try ask("ns.broken.reload.test.")?.answers.map(\.dataText) == ["198.18.9.30"])
        // A zone file broken on its line 8: that zone keeps what it served, the other reloads.
        try (zone + "new IN A 198.18.9.3\nbad IN A 999.1.1.1\n").write(toFile: path, atomically: true, encoding: .utf8)
        try broken.replacingOccurrences(of: ".300", with: ".31").write(toFile: brokenPath, atomically: true, encoding: .utf8)
        kill(server.pid, SIGHUP)
        #expect(server.waitForLine(containing: "zones reloaded (broken.reload.test. serial 7); not reloaded: \(path): zone file line 8") != nil,
                "\(server.text)")
        #expect(server.text.contains("(reload.test. serial 2 still served)"), "\(server.text)")
        #expect(try ask("new.reload.test.")?.answers.map(\.dataText) == ["198.18.9.3"])
        #expect(try ask("ns.broken.reload.test.")?.answers.map(\.dataText) == ["198.18.9.31"])
        #expect(server.isRunning)
        #expect(server.stop(signal: SIGQUIT) == 0, "\(server.text)")
        #expect(server.text.contains("SIGQUIT received, stopping") && !server.text.contains("crashed"), "\(server.text)")
    }

    @Test(arguments: ["socket", "uring"])
    func answersAsKnotDoesOnLoopback(backend: String) throws {
        guard Self.knotAvailable() else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301")
        let server = try serve(namespace.name, ["--backend", backend, "--listen", "127.0.0.1:5302"])
        let socket = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        usleep(300_000)
        let total = Self.queries().count
        #expect(try Self.compare(knot: IPEndpoint("127.0.0.1:5301")!, sluice: IPEndpoint("127.0.0.1:5302")!, from: socket) == total)
        // What did not fit in UDP comes whole over TCP, from both.
        let big = Self.queries().first { $0.questions[0].name == DNSName("big.example.test.")! }!.encode()
        let (fromKnot, fromSluice) = try withNetworkNamespace(namespace.name) {
            (try Self.askOverTCP(IPEndpoint("127.0.0.1:5301")!, big), try Self.askOverTCP(IPEndpoint("127.0.0.1:5302")!, big))
        }
        #expect(Comparable(fromKnot) == Comparable(fromSluice) && fromSluice.answers.count == 20 && !fromSluice.header.isTruncated)
        // 300 queries pipelined in one write (RFC 7766): 300 answers, in order.
        let pipelined = try withNetworkNamespace(namespace.name) {
            try Self.pipeline((0..<300).map { index in
                var query = DNSMessage()
                query.header.id = UInt16(index)
                query.questions = [DNSQuestion(name: DNSName("www.example.test.")!, type: .a)]
                return query.encode()
            }, to: IPEndpoint("127.0.0.1:5302")!)
        }
        #expect(pipelined.map(\.header.id) == (0..<300).map(UInt16.init))
        #expect(pipelined.allSatisfy { $0.answers.count == 3 })
        // The same, then the client's end of writing, or a message too short to be DNS: every
        // answer before them still comes (they waited for frames), as from Knot.
        let queries = (0..<300).map { index in
            var query = DNSMessage()
            query.header.id = UInt16(index)
            query.questions = [DNSQuestion(name: DNSName("www.example.test.")!, type: .a)]
            return query.encode()
        }
        for endpoint in ["127.0.0.1:5301", "127.0.0.1:5302"] {
            let ended = try withNetworkNamespace(namespace.name) { try Self.pipelineBytes(queries, to: IPEndpoint(endpoint)!, endWriting: true) }
            #expect(ended.count == 300, "\(endpoint)")
        }
        let cut = try withNetworkNamespace(namespace.name) {
            try Self.pipelineBytes(queries.prefix(8) + [[1, 2, 3]], to: IPEndpoint("127.0.0.1:5302")!, expecting: 8)
        }
        #expect(cut.count == 8)
        #expect(server.stop() == 0)
        #expect(server.text.contains("truncated="), "\(server.text)")
        #expect(server.text.contains("tcp on 127.0.0.1:5302: 4 connections"), "\(server.text)")
        withExtendedLifetime(knot) {}
    }

    /// Pre-signed zones, as Knot 3.2 signed them (ECDSA P-256): one with NSEC, one with NSEC3
    /// (no salt, no extra iterations), one with a salted NSEC3 chain hashed four times and
    /// opt-out. Asked with DO, each answer must carry the same signatures and the same NSEC or
    /// NSEC3 proofs as Knot's: positive, CNAME chains, wildcards, NODATA, empty non-terminals,
    /// NXDOMAIN, referrals with and without DS, and answers cut short at 512 bytes.
    @Test func answersDNSSECQueriesAsKnotDoesFromSignedZones() throws {
        guard Self.knotAvailable() else { return }
        let zones = ["signed.test", "hashed.test", "salted.test"]
        let namespace = try ScratchNamespace(prefix: "sldns")
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301",
                            zones: zones.map { ($0, DNSCodecTests.fixtures + "/\($0).zone") })
        let server = try ChildProcess(sluice: ["dns", "serve", "--netns", namespace.name, "--listen", "127.0.0.1:5302",
                                               "--duration", "60", "--stats-interval", "0"]
                                          + zones.flatMap { ["--zone", "\($0).=" + DNSCodecTests.fixtures + "/\($0).zone"] })
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let socket = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        usleep(300_000)
        let questions: [(String, DNSRecordType)] = [
            ("www", .a), ("nothing", .a), ("www", .mx), ("x.wild", .a), ("x.wild", .mx), ("a.b.wild", .txt), ("chain", .a),
            ("chain", .mx), ("alias", .txt), ("out", .a), ("", .mx), ("", .any), ("", .dnskey), ("", .rrsig), ("", .ns),
            ("a.secure", .a), ("secure", .ds), ("a.insecure", .a), ("insecure", .ds), ("nx.insecure", .ds), ("b.deep", .a),
            ("x.y.b.deep", .a), ("deep", .a), ("www", .rrsig), ("www", .nsec), ("nothing", .rrsig), ("zzz", .a), ("a.zz", .a),
            ("_udp", .a), ("_sip._udp", .srv), ("*.wild", .a), ("wild", .a), ("ns.secure", .a), ("gone", .a),
            ("a.insecure2", .a), ("insecure2", .ds), ("alias", .nsec), ("alias", .rrsig), ("chain", .nsec),
        ]
        var queries: [DNSMessage] = []
        for zone in zones {
            for (index, (label, type)) in questions.enumerated() {
                var query = DNSMessage()
                query.header.id = UInt16(index)
                // CD on some: an authoritative server does not copy it, as Knot does not.
                query.header.flags = index % 3 == 1 ? DNSHeader.checkingDisabled : 0
                query.questions = [DNSQuestion(name: DNSName(label.isEmpty ? zone + "." : "\(label).\(zone).")!, type: type)]
                var edns = DNSEDNS(payloadSize: index % 5 == 4 ? 512 : 1232)
                edns.dnssecOK = true
                query.edns = edns
                queries.append(query)
                // The same without DO: no signatures, no proofs.
                if index % 4 == 0 {
                    query.edns?.dnssecOK = false
                    queries.append(query)
                }
            }
        }
        var signed = 0
        for query in queries {
            let actual = try Self.expectSameAnswer(socket, knot: IPEndpoint("127.0.0.1:5301")!, sluice: IPEndpoint("127.0.0.1:5302")!,
                                                   query.encode(), "\(query.questions[0].name) \(query.questions[0].type) do=\(query.edns!.dnssecOK)").sluice
            if actual.answers.contains(where: { $0.type == .rrsig }) || actual.authority.contains(where: { $0.type == .rrsig }) { signed += 1 }
        }
        // Not a comparison of two empty answers: most answers carry signatures.
        #expect(signed > queries.count / 2)
        #expect(server.stop() == 0)
        withExtendedLifetime(knot) {}
    }

    /// A validating resolver's own check: BIND's `delv`, given each zone's key as its trust
    /// anchor, fully validates what Sluice answers from the NSEC and NSEC3 zones: a set, a CNAME
    /// chain, a wildcard's answer, NXDOMAIN, NODATA, a wildcard's NODATA, an empty non-terminal;
    /// and, in an opt-out NSEC3 zone, what lies below empty non-terminals that have no NSEC3 of
    /// their own (an insecure delegation's missing DS, NXDOMAIN, NODATA), where the proof must
    /// stand on the closest provable encloser.
    @Test func delvValidatesTheAnswers() throws {
        guard Self.knotAvailable(alsoNeeding: ["/usr/bin/delv"]) else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let common = ["www A", "chain A", "x.wild A", "nothing A", "www MX", "x.wild MX", "b.deep A"]
        let zones: [(name: String, path: String, questions: [String])] = [
            ("signed.test", DNSCodecTests.fixtures + "/signed.test.zone", common),
            ("hashed.test", DNSCodecTests.fixtures + "/hashed.test.zone", common),
            ("sig3.test", DNSCodecTests.fixtures + "/dnssec/sig3.test.zone",
             ["x.ent2 DS", "q.ent2 A", "b.ent3 A", "q.b.ent3 A", "foo.wd DS", "nothing A"]),
            ("sig.test", DNSCodecTests.fixtures + "/dnssec/sig.test.zone", ["x.ent NSEC", "x.ent2 DS", "q.b.ent3 A"]),
        ]
        var anchors = "trust-anchors {\n"
        for (zone, path, _) in zones {
            let text = try #require(readTextFile(path))
            let line = try #require(text.split(separator: "\n").first { $0.contains("\tDNSKEY\t257 ") })
            let key = try #require(line.split(separator: " ").last)
            anchors += "  \(zone). static-key 257 3 13 \"\(key)\";\n"
        }
        anchors += "};\n"
        let anchorFile = "/tmp/sluice-anchors-\(getpid())-\(dnsNamespaceCounter.add(1, ordering: .relaxed).newValue).conf"
        let file = fopen(anchorFile, "w")
        fputs(anchors, file)
        fclose(file)
        defer { unlink(anchorFile) }
        let server = try ChildProcess(sluice: ["dns", "serve", "--netns", namespace.name, "--listen", "127.0.0.1:5302",
                                               "--duration", "60", "--stats-interval", "0"]
                                          + zones.flatMap { ["--zone", "\($0.name).=\($0.path)"] })
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        for (zone, _, questions) in zones {
            for question in questions {
                let parts = question.split(separator: " ").map(String.init)
                let delv = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "/usr/bin/delv", "@127.0.0.1", "-p", "5302",
                                                             "-a", anchorFile, "+root=\(zone)", "\(parts[0]).\(zone)", parts[1]])
                _ = delv.waitForExit(timeout: .seconds(20))
                #expect(delv.text.contains("fully validated"), "\(question) in \(zone): \(delv.text)")
            }
        }
        #expect(server.stop() == 0)
    }

    /// Eighteen more zones, most of them signed by Knot (Fixtures/dnssec: NSEC and NSEC3 twins with
    /// wildcard CNAME chains, wildcards below empty non-terminals and at the apex, a signed parent
    /// with NSEC and NSEC3 children, referrals with many name servers and their glue, forty TXT
    /// records, unsigned zones, three signatures over one set, DNAMEs signed and not: chained,
    /// looping, out of the zone, onto a wildcard; an NSEC and an opt-out NSEC3 twin with
    /// delegations below empty non-terminals, wildcard NS, and name servers a wildcard answers
    /// for; signed by ldns-signzone: two NSEC3 chains of which the NSEC3PARAM names one, and an
    /// NSEC chain beside an NSEC3 chain and its NSEC3PARAM) and 2010 questions about them (an NSEC3 chain's owner names among them, which a
    /// wildcard answers), with and without DO, at sizes from below 512 to 1232
    /// bytes: every answer as Knot's, TC and AA included.
    @Test func answersAsKnotDoesAcrossSignedZones() throws {
        guard Self.knotAvailable() else { return }
        let directory = DNSCodecTests.fixtures + "/dnssec"
        let zones = ["wc", "wc3", "par", "child.par", "child3.par", "plain", "dn", "dn3", "ch", "ch3", "rf", "rf3", "dname", "dsig",
                     "sig", "sig3", "two3", "mix"]
            .map { $0 + ".test" }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301", zones: zones.map { ($0, "\(directory)/\($0).zone") })
        let server = try ChildProcess(sluice: ["dns", "serve", "--netns", namespace.name, "--listen", "127.0.0.1:5302",
                                               "--duration", "120", "--stats-interval", "0"]
                                          + zones.flatMap { ["--zone", "\($0).=\(directory)/\($0).zone"] })
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let socket = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        usleep(300_000)
        let lines = try #require(readTextFile(directory + "/questions.txt")).split(separator: "\n")
        var agreed = 0
        for (index, line) in lines.enumerated() {
            // NAME TYPE DO SIZE
            let fields = line.split(separator: " ")
            var query = DNSMessage()
            query.header.id = UInt16(index & 0xFFFF)
            query.questions = [DNSQuestion(name: try #require(DNSName(fields[0] + ".")), type: try #require(DNSRecordType(fields[1])))]
            var edns = DNSEDNS(payloadSize: try #require(UInt16(fields[3])))
            edns.dnssecOK = fields[2] == "1"
            query.edns = edns
            if try Self.expectSameAnswer(socket, knot: IPEndpoint("127.0.0.1:5301")!, sluice: IPEndpoint("127.0.0.1:5302")!,
                                         query.encode(), String(line)).same {
                agreed += 1
            }
        }
        #expect(agreed == lines.count && lines.count >= 2010)
        #expect(server.stop() == 0)
        withExtendedLifetime(knot) {}
    }

    /// A parent and its child served together, a delegation with more glue than 700 bytes hold,
    /// and queries whose header, opcode or OPT record is off.
    static let parentZone = """
        $ORIGIN p.test.
        $TTL 3600
        @ SOA ns1.p.test. hostmaster.p.test. 1 7200 3600 1209600 300
        @ NS ns1
        ns1 A 198.18.9.1
        child NS ns1.child
        ns1.child A 198.18.9.2
        child DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
        c1 CNAME c2
        c2 CNAME c3
        c3 CNAME c4
        c4 CNAME c5
        c5 CNAME c6
        c6 CNAME c7
        c7 A 198.18.9.7
        @ MX 10 mx.wild
        *.wild A 198.18.9.99
        MiXeD CNAME TaRgEt.P.TeSt.
        TaRgEt A 198.18.9.8
        ttls 30 A 198.18.9.30
        ttls 10 A 198.18.9.10
        ttls 20 A 198.18.9.20
        *.wns NS ns.elsewhere.test.
        *.wns A 198.18.9.50

        """ + (10...23).map { n in
            "big NS nameserver-number-\(n).big\nnameserver-number-\(n).big A 198.18.9.\(n)\nnameserver-number-\(n).big AAAA 2001:2:9::\(n)\n"
        }.joined()
    static let childZone = """
        $ORIGIN child.p.test.
        $TTL 120
        @ SOA ns1 hostmaster 1 7200 3600 1209600 300
        @ NS ns1
        ns1 A 198.18.9.2
        @ DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==
        @ TLSA 3 1 1 0C72AC70B745AC19998811B131D662C9AC69DBDBE7CB23E5B514B56664C5D3D6
        """

    static func header(id: UInt16, flags: UInt16, counts: [UInt16]) -> [UInt8] {
        ([id, flags] + counts).flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    static func question(_ name: String, _ type: UInt16) -> [UInt8] {
        DNSName(name + ".")!.wire + [UInt8(type >> 8), UInt8(type & 0xFF), 0, 1]
    }

    /// An OPT record for 1232 bytes with `options` as its data, and `version`.
    static func opt(_ options: [UInt8] = [], version: UInt8 = 0) -> [UInt8] {
        [0, 0, 41, 0x04, 0xD0, 0, version, 0, 0, UInt8(options.count >> 8), UInt8(options.count & 0xFF)] + options
    }

    /// A TSIG record signing a query with the key `key.` (HMAC-SHA256), which no server here has.
    static func tsig(originalID: UInt16) -> [UInt8] {
        let data = DNSName("hmac-sha256.")!.wire + [0, 0, 0x6A, 0x10, 0x2C, 0x5C, 1, 44, 0, 32] + [UInt8](repeating: 0xAB, count: 32)
            + [UInt8(originalID >> 8), UInt8(originalID & 0xFF), 0, 0, 0, 0]
        return DNSName("key.")!.wire + [0, 250, 0, 255, 0, 0, 0, 0, UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
    }

    /// EDNS options and CHAOS queries, answered as Knot answers them with its defaults: NSID
    /// (RFC 5001), `id.server.` and `hostname.bind.` with the host's name; EXPIRE (RFC 7314) with
    /// the zone's SOA expire for every answer from a zone; cookies, padding, client subnet and
    /// unknown options passed over; `version.bind.` and `version.server.` with the version (Sluice
    /// told Knot's, so the bytes compare); every other CHAOS question, or class, refused.
    @Test func answersEDNSOptionsAndCHAOSAsKnotDoes() throws {
        guard Self.knotAvailable() else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301")
        let socket = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        let knotEndpoint = IPEndpoint("127.0.0.1:5301")!
        let versionQuery = Self.header(id: 1, flags: 0, counts: [1, 0, 0, 0]) + Self.question("version.bind", 16)[..<14] + [0, 16, 0, 3]
        let version = Self.firstAnswer(socket, knotEndpoint, versionQuery)?.answers.first?.data
        guard case .txt(let strings)? = version else {
            Issue.record("Knot gave no version: \(String(describing: version))")
            return
        }
        let server = try serve(namespace.name, ["--listen", "127.0.0.1:5302", "--server-version", String(decoding: strings.joined(), as: UTF8.self)])
        usleep(300_000)
        func query(_ name: String, _ type: UInt16, class queryClass: UInt16 = 1, options: [[UInt8]]? = [], id: UInt16) -> [UInt8] {
            let question = Self.question(name, type).dropLast(2) + [UInt8(queryClass >> 8), UInt8(queryClass & 0xFF)]
            return Self.header(id: id, flags: 0, counts: [1, 0, 0, options == nil ? 0 : 1]) + question
                + (options.map { Self.opt($0.joined().map { $0 }) } ?? [])
        }
        func option(_ code: UInt16, _ data: [UInt8] = []) -> [UInt8] {
            [UInt8(code >> 8), UInt8(code & 0xFF), UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
        }
        var cases: [(String, [UInt8])] = [
            ("NSID", query("www.example.test", 1, options: [option(3)], id: 2)),
            ("NSID with data", query("www.example.test", 1, options: [option(3, [1, 2])], id: 3)),
            ("NSID, refused", query("www.elsewhere.test", 1, options: [option(3)], id: 4)),
            ("NSID, NXDOMAIN", query("nothing.example.test", 1, options: [option(3)], id: 5)),
            ("NSID, BADVERS", Self.header(id: 6, flags: 0, counts: [1, 0, 0, 1]) + Self.question("example.test", 6) + Self.opt(option(3), version: 1)),
            ("EXPIRE, SOA", query("example.test", 6, options: [option(9)], id: 7)),
            ("EXPIRE, an address", query("www.example.test", 1, options: [option(9)], id: 8)),
            ("EXPIRE, NXDOMAIN", query("nothing.example.test", 1, options: [option(9)], id: 9)),
            ("EXPIRE, refused", query("www.elsewhere.test", 1, options: [option(9)], id: 10)),
            ("EXPIRE with data", query("www.example.test", 1, options: [option(9, [0, 0, 0, 5])], id: 11)),
            ("EXPIRE and NSID", query("www.example.test", 1, options: [option(9), option(3)], id: 12)),
            ("a client cookie", query("www.example.test", 1, options: [option(10, [1, 2, 3, 4, 5, 6, 7, 8])], id: 13)),
            ("a cookie cut short", query("www.example.test", 1, options: [option(10, [1, 2, 3])], id: 14)),
            ("padding", query("www.example.test", 1, options: [option(12, [UInt8](repeating: 0, count: 24))], id: 15)),
            ("client subnet", query("www.example.test", 1, options: [option(8, [0, 1, 24, 0, 198, 18, 1])], id: 16)),
            ("an unknown option", query("www.example.test", 1, options: [option(65001, [7])], id: 17)),
            ("TCP keepalive over UDP", query("www.example.test", 1, options: [option(11)], id: 18)),
        ]
        var id: UInt16 = 100
        for name in ["id.server", "hostname.bind", "version.server", "VERSION.bind", "authors.bind", "www.example.test"] {
            for (type, queryClass) in [(16, 3), (1, 3), (255, 3), (0, 3), (251, 3), (252, 3), (16, 4), (16, 255)] as [(UInt16, UInt16)] {
                for options in [nil, [], [option(3)]] as [[[UInt8]]?] {
                    id += 1
                    cases.append(("\(name) TYPE\(type) CLASS\(queryClass) \(options.map { "EDNS \($0.count)" } ?? "no EDNS")",
                                  query(name, type, class: queryClass, options: options, id: id)))
                }
            }
        }
        var withIdentity = 0
        for (what, bytes) in cases {
            let answers = try Self.expectSameAnswer(socket, knot: knotEndpoint, sluice: IPEndpoint("127.0.0.1:5302")!, bytes, what)
            if answers.sluice.edns?.options.count ?? 0 > 4 || answers.sluice.answers.first?.recordClass == 3 { withIdentity += 1 }
        }
        // Not two empty answers: the NSID, EXPIRE and CHAOS answers carry what they ask for.
        #expect(withIdentity >= 30, "\(withIdentity)")
        #expect(server.stop() == 0)
        withExtendedLifetime(knot) {}
    }

    /// Answers of 20 to 64 KiB over TCP, with hundreds of names past the 16 KiB a compression
    /// pointer reaches, and their truncated forms over UDP: byte for byte as Knot's.
    @Test func answersHugeSetsAsKnotDoes() throws {
        guard Self.knotAvailable() else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let file = "/tmp/sluice-huge-\(getpid())-\(dnsNamespaceCounter.add(1, ordering: .relaxed).newValue).zone"
        var zone = "$ORIGIN huge.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 198.18.3.1\n"
        for index in 0..<700 {
            let server = "mail-server-number-\(index).example-long-domain"
            zone += "@ MX \(index) \(server).huge.test.\n\(server) A 198.18.\(index / 250).\(index % 250 + 1)\n"
        }
        for index in 0..<300 {
            zone += "cut NS nameserver-\(index).elsewhere.huge.test.\nnameserver-\(index).elsewhere A 198.18.5.\(index % 250 + 1)\n"
            zone += "txt TXT \"\(String(repeating: "x", count: 200)) \(index)\"\n"
        }
        let handle = fopen(file, "w")
        fputs(zone, handle)
        fclose(handle)
        defer { unlink(file) }
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301", zones: [("huge.test", file)])
        let server = try ChildProcess(sluice: ["dns", "serve", "--zone", "huge.test.=\(file)", "--netns", namespace.name,
                                               "--listen", "127.0.0.1:5302", "--duration", "60", "--stats-interval", "0"])
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let socket = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        var sizes: [Int] = []
        for (index, (name, type)) in [("huge.test", UInt16(15)), ("x.cut.huge.test", 1), ("cut.huge.test", 2), ("txt.huge.test", 16),
                                       ("huge.test", 255)].enumerated() {
            let query = Self.header(id: UInt16(index), flags: 0, counts: [1, 0, 0, 1]) + Self.question(name, type) + Self.opt()
            try Self.expectSameAnswer(socket, knot: IPEndpoint("127.0.0.1:5301")!, sluice: IPEndpoint("127.0.0.1:5302")!, query, "\(name) \(type) over UDP")
            let (fromKnot, fromSluice) = try withNetworkNamespace(namespace.name) {
                (try Self.pipelineBytes([query], to: IPEndpoint("127.0.0.1:5301")!)[0], try Self.pipelineBytes([query], to: IPEndpoint("127.0.0.1:5302")!)[0])
            }
            #expect(fromKnot == fromSluice, "\(name) \(type) over TCP: \(fromKnot.count) and \(fromSluice.count) bytes")
            sizes.append(fromSluice.count)
        }
        #expect(sizes.filter { $0 > 20_000 }.count == 4, "\(sizes)")
        // A client with a 2 KiB receive buffer: Knot's 20 answers of 60 KB come in 0.1 s; zero-copy
        // sends (which the kernel charges to the receiver by whole pages) crawled at window probes.
        let txt = Self.header(id: 9, flags: 0, counts: [1, 0, 0, 0]) + Self.question("txt.huge.test", 16)
        let clock = ContinuousClock()
        for port in [5301, 5302] {
            let start = clock.now
            let answers = try withNetworkNamespace(namespace.name) {
                try Self.pipelineBytes(Array(repeating: txt, count: 20), to: IPEndpoint("127.0.0.1:\(port)")!, receiveBufferBytes: 2048)
            }
            #expect(answers.count == 20 && answers.allSatisfy { $0.count > 20_000 }, "port \(port): \(answers.map(\.count))")
            #expect(clock.now - start < .seconds(3), "port \(port): \(clock.now - start) for 20 answers to a small window")
        }
        #expect(server.stop() == 0)
        withExtendedLifetime(knot) {}
    }

    @Test func answersAsKnotDoesForAParentAndChildAndForOddQueries() throws {
        guard Self.knotAvailable() else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let directory = "/tmp/sluice-zones-\(getpid())-\(dnsNamespaceCounter.add(1, ordering: .relaxed).newValue)"
        _ = try ChildProcess("/bin/mkdir", ["-p", directory]).waitForExit()
        defer { _ = try? ChildProcess("/bin/rm", ["-rf", directory]).waitForExit() }
        for (name, text) in [("p.test", Self.parentZone), ("child.p.test", Self.childZone)] {
            let file = fopen("\(directory)/\(name).zone", "w")
            fputs(text, file)
            fclose(file)
        }
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301",
                            zones: [("p.test", "\(directory)/p.test.zone"), ("child.p.test", "\(directory)/child.p.test.zone")])
        let server = try ChildProcess(sluice: ["dns", "serve", "--zone", "\(directory)/p.test.zone", "--zone", "\(directory)/child.p.test.zone",
                                               "--netns", namespace.name, "--listen", "127.0.0.1:5302", "--duration", "60", "--stats-interval", "0"])
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let socket = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        usleep(300_000)
        let edns = [UInt16(0), 0, 1]
        let cases: [(String, [UInt8])] = [
            // DS lives on the parent's side of the cut (RFC 4035 3.1.4.1); the child answers its own apex.
            ("DS at the child's apex", Self.header(id: 1, flags: 0, counts: [1, 0, 0, 1]) + Self.question("child.p.test", 43) + Self.opt()),
            ("DNSKEY at the child's apex", Self.header(id: 2, flags: 0, counts: [1, 0, 0, 1]) + Self.question("child.p.test", 48) + Self.opt()),
            ("TLSA", Self.header(id: 3, flags: 0, counts: [1, 0, 0, 0]) + Self.question("child.p.test", 52)),
            ("SOA at the child's apex", Self.header(id: 4, flags: 0, counts: [1, 0, 0, 0]) + Self.question("child.p.test", 6)),
            ("QTYPE OPT", Self.header(id: 5, flags: 0, counts: [1, 0, 0, 0]) + Self.question("p.test", 41)),
            ("QTYPE 0", Self.header(id: 16, flags: 0, counts: [1, 0, 0, 0]) + Self.question("p.test", 0)),
            // Five CNAMEs and what the fifth leads to, never a sixth CNAME.
            ("six CNAMEs to an address", Self.header(id: 17, flags: 0, counts: [1, 0, 0, 0]) + Self.question("c1.p.test", 1)),
            ("five CNAMEs to an address", Self.header(id: 18, flags: 0, counts: [1, 0, 0, 0]) + Self.question("c2.p.test", 1)),
            ("MX to a name a wildcard covers", Self.header(id: 19, flags: 0, counts: [1, 0, 0, 0]) + Self.question("p.test", 15)),
            ("ANY, its one set an NS", Self.header(id: 20, flags: 0, counts: [1, 0, 0, 0]) + Self.question("p.test", 255)),
            ("names in mixed case in the zone", Self.header(id: 21, flags: 0, counts: [1, 0, 0, 0]) + Self.question("mixed.p.test", 1)),
            ("a record set given three TTLs", Self.header(id: 22, flags: 0, counts: [1, 0, 0, 0]) + Self.question("ttls.p.test", 1)),
            // A wildcard with NS is a cut: a referral as written, DS no data, as from Knot.
            ("a name a wildcard NS covers", Self.header(id: 33, flags: 0, counts: [1, 0, 0, 0]) + Self.question("z.wns.p.test", 1)),
            ("NS at a name a wildcard NS covers", Self.header(id: 34, flags: 0, counts: [1, 0, 0, 0]) + Self.question("a.z.wns.p.test", 2)),
            ("DS at a name a wildcard NS covers", Self.header(id: 35, flags: 0, counts: [1, 0, 0, 0]) + Self.question("z.wns.p.test", 43)),
            ("a query carrying an answer record", Self.header(id: 23, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 6)
                + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 9, 1]),
            // Malformed: an option past the OPT's data, a cut option header, bytes after the last record.
            ("an option past its OPT", Self.header(id: 6, flags: 0, counts: [1] + edns) + Self.question("p.test", 6) + Self.opt([0xFD, 0xE9, 0, 10, 1, 2])),
            ("three option bytes", Self.header(id: 7, flags: 0, counts: [1] + edns) + Self.question("p.test", 6) + Self.opt([0, 10, 0])),
            ("bytes after the question", Self.header(id: 8, flags: 0, counts: [1, 0, 0, 0]) + Self.question("p.test", 6) + [1, 2, 3]),
            ("an OPT not counted", Self.header(id: 9, flags: 0, counts: [1, 0, 0, 0]) + Self.question("p.test", 6) + Self.opt()),
            // A record whose data has not its type's shape, in any section: FORMERR, as Knot reads every record.
            ("an A of three bytes as the answer", Self.header(id: 36, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 3, 198, 18, 9]),
            ("an AAAA of four bytes as additional", Self.header(id: 37, flags: 0, counts: [1, 0, 0, 1]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]),
            ("an MX of one byte as the authority", Self.header(id: 38, flags: 0, counts: [1, 0, 1, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 1, 0]),
            ("an NS whose name runs past its data", Self.header(id: 39, flags: 0, counts: [1, 0, 1, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 2, 0, 1, 0, 0, 0, 60, 0, 3, 5, 0x61, 0x62]),
            // Knot counts a compressed name at its full length: a few bytes after one pass, seven after "p.test" do not.
            ("a CNAME with a byte past its compressed name", Self.header(id: 40, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 3, 0xC0, 12, 7]),
            ("a CNAME with seven bytes past its compressed name", Self.header(id: 44, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 9, 0xC0, 12, 7, 7, 7, 7, 7, 7, 7]),
            ("an MX with a byte past its written name", Self.header(id: 45, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 6, 0, 1, 1, 0x61, 0, 7]),
            ("an empty TXT", Self.header(id: 46, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 0]),
            ("an empty record of an unknown type", Self.header(id: 47, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0xFF, 0x00, 0, 1, 0, 0, 0, 60, 0, 0]),
            ("an empty A in class ANY", Self.header(id: 48, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 1, 0, 255, 0, 0, 0, 60, 0, 0]),
            ("a SIG(0) of four bytes", Self.header(id: 41, flags: 0, counts: [1, 0, 0, 1]) + Self.question("p.test", 1)
                + [0, 0, 24, 0, 255, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]),
            ("a well-formed SRV as additional", Self.header(id: 42, flags: 0, counts: [1, 0, 0, 1]) + Self.question("p.test", 1)
                + [0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, 8, 0, 1, 0, 2, 0, 53, 0xC0, 12]),
            ("a record of a type with no shape known", Self.header(id: 43, flags: 0, counts: [1, 0, 0, 1]) + Self.question("p.test", 1)
                + [0xC0, 12, 0xFF, 0x00, 0, 1, 0, 0, 0, 60, 0, 1, 9]),
            // No question: the opcode decides, and the reply still speaks EDNS.
            ("STATUS without a question", Self.header(id: 10, flags: 2 << 11, counts: [0, 0, 0, 0])),
            ("IQUERY without a question", Self.header(id: 11, flags: 1 << 11, counts: [0, 0, 0, 1]) + Self.opt()),
            ("a query without a question", Self.header(id: 12, flags: 0, counts: [0, 0, 0, 1]) + Self.opt()),
            ("EDNS 1 without a question", Self.header(id: 13, flags: 0, counts: [0, 0, 0, 1]) + Self.opt(version: 1)),
            ("UPDATE of a zone named by A", Self.header(id: 14, flags: 5 << 11, counts: [1, 0, 0, 0]) + Self.question("p.test", 1)),
            // Another opcode in CHAOS is not implemented; in a class with no zones, refused.
            ("NOTIFY in CHAOS", Self.header(id: 29, flags: 4 << 11, counts: [1, 0, 0, 0]) + Self.question("p.test", 6).dropLast(2) + [0, 3]),
            ("UPDATE in HESIOD", Self.header(id: 30, flags: 5 << 11, counts: [1, 0, 0, 0]) + Self.question("p.test", 6).dropLast(2) + [0, 4]),
            ("IQUERY in class NONE", Self.header(id: 31, flags: 1 << 11, counts: [1, 0, 0, 0]) + Self.question("p.test", 1).dropLast(2) + [0, 254]),
            ("NOTIFY in class ANY", Self.header(id: 32, flags: 4 << 11, counts: [1, 0, 0, 0]) + Self.question("p.test", 6).dropLast(2) + [0, 255]),
            // Signed with a key neither server has: NOTAUTH, BADKEY in an unsigned TSIG (RFC 8945 5.2); TSIG not last: FORMERR.
            ("a query signed with an unknown key", Self.header(id: 24, flags: 0, counts: [1, 0, 0, 1]) + Self.question("p.test", 1) + Self.tsig(originalID: 24)),
            ("EDNS and a TSIG", Self.header(id: 25, flags: 0, counts: [1, 0, 0, 2]) + Self.question("p.test", 1) + Self.opt() + Self.tsig(originalID: 25)),
            ("a TSIG before the OPT", Self.header(id: 26, flags: 0, counts: [1, 0, 0, 2]) + Self.question("p.test", 1) + Self.tsig(originalID: 26) + Self.opt()),
            // Anywhere but last in the additional section: FORMERR (RFC 8945 5.2), however the counts place it.
            ("a TSIG as the answer", Self.header(id: 27, flags: 0, counts: [1, 1, 0, 0]) + Self.question("p.test", 1) + Self.tsig(originalID: 27)),
            ("a TSIG as the authority", Self.header(id: 28, flags: 0, counts: [1, 0, 1, 0]) + Self.question("p.test", 1) + Self.tsig(originalID: 28)),
        ]
        for (what, query) in cases {
            try Self.expectSameAnswer(socket, knot: IPEndpoint("127.0.0.1:5301")!, sluice: IPEndpoint("127.0.0.1:5302")!, query, what)
        }
        // 28 glue records do not fit in 700 bytes: what fits goes, with TC (RFC 9471), as from Knot.
        let referral = Self.header(id: 15, flags: 0, counts: [1, 0, 0, 1]) + Self.question("x.big.p.test", 1)
            + [0, 0, 41, 0x02, 0xBC, 0, 0, 0, 0, 0, 0]
        let (fromKnot, fromSluice, _) = try Self.expectSameAnswer(socket, knot: IPEndpoint("127.0.0.1:5301")!,
                                                                  sluice: IPEndpoint("127.0.0.1:5302")!, referral, "a referral with too much glue")
        #expect(fromKnot.header.isTruncated && fromSluice.header.isTruncated, "knot \(Comparable(fromKnot)), sluice \(Comparable(fromSluice))")
        #expect(fromSluice.authority.count == 14 && !fromSluice.header.isAuthoritative)
        #expect(server.stop() == 0)
        withExtendedLifetime(knot) {}
    }

    /// Peers that begin a message and trickle the rest hold no connection past a second
    /// (RFC 7766 section 6.2.3), however often a byte comes; a whole query is answered meanwhile.
    @Test func aMessageNotWholeInTimeClosesItsConnection() throws {
        let namespace = try ScratchNamespace(prefix: "sldns")
        let server = try serve(namespace.name, ["--listen", "127.0.0.1:5302"])
        let endpoint = IPEndpoint("127.0.0.1:5302")!
        var message = DNSMessage()
        message.header.id = 7
        message.questions = [DNSQuestion(name: DNSName("www.example.test.")!, type: .a)]
        let query = message.encode()
        try withNetworkNamespace(namespace.name) {
            let connections = try (0..<20).map { _ in try Self.connectTCP(endpoint) }
            let slow = connections.map(\.descriptor)
            // A length of 64 and 10 bytes of it; then a byte every 400 ms, each short of the whole.
            for descriptor in slow { _ = ([0, 64] + query.prefix(10)).withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) } }
            for _ in 0..<3 {
                usleep(400_000)
                for descriptor in slow { _ = [UInt8(0)].withUnsafeBytes { send(descriptor, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) } }
            }
            #expect(try Self.askOverTCP(endpoint, query).answers.count == 3)
            // A response among pipelined queries is passed over, as Knot does; the queries after it are answered.
            var response = query
            response[2] |= 0x80
            #expect(try Self.pipeline([query, response, query], to: endpoint, expecting: 2).allSatisfy { $0.answers.count == 3 })
            // Closed by the server: the read ends (reset) instead of timing out.
            var buffer = [UInt8](repeating: 0, count: 16)
            let ended = slow.filter { descriptor in
                let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                return count == 0 || (count < 0 && errno != EAGAIN)
            }
            #expect(ended.count == 20)
            withExtendedLifetime(connections) {}
        }
        #expect(server.stop() == 0)
        #expect(server.text.contains("20 for a message not whole in time"), "\(server.text)")
    }

    /// Clients that pipeline queries and never read their answers: once their answers hold the
    /// frames, the server stops reading those connections (TCP pushes back on the clients)
    /// instead of taking every query into memory; another client is answered meanwhile.
    @Test func clientsThatPipelineAndNeverReadAreHeldBackByTCP() throws {
        let namespace = try ScratchNamespace(prefix: "sldns")
        let server = try serve(namespace.name, ["--listen", "127.0.0.1:5302"])
        let endpoint = IPEndpoint("127.0.0.1:5302")!
        var message = DNSMessage()
        message.header.id = 9
        message.questions = [DNSQuestion(name: DNSName("www.example.test.")!, type: .a)]
        let query = message.encode()
        let framed = [UInt8(query.count >> 8), UInt8(query.count & 0xFF)] + query
        let block = Array([[UInt8]](repeating: framed, count: 2000).joined())
        func residentBytes() -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(server.pid)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        let before = residentBytes()
        try withNetworkNamespace(namespace.name) {
            let greedy = try (0..<10).map { _ in try Self.connectTCP(endpoint, receiveBufferBytes: 4096) }
            for connection in greedy {
                _ = fcntl(connection.descriptor, F_SETFL, fcntl(connection.descriptor, F_GETFL) | O_NONBLOCK)
            }
            // Each sends until its socket stays full (or is reset) for half a second; 6 s at most.
            var sent = 0
            var quiet = [ContinuousClock.Instant?](repeating: nil, count: greedy.count)
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(6)
            while clock.now < deadline, quiet.contains(where: { $0.map { clock.now - $0 < .milliseconds(500) } ?? true }) {
                for (index, connection) in greedy.enumerated() {
                    let count = block.withUnsafeBytes { send(connection.descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if count > 0 {
                        sent += count
                        quiet[index] = nil
                    } else if quiet[index] == nil {
                        quiet[index] = clock.now
                    }
                }
                usleep(2_000)
            }
            let grown = residentBytes() - before
            // Held back, the server keeps a few frames' and 64 KiB's worth per connection, not what was sent.
            #expect(grown < 48 << 20, "the server grew by \(grown >> 20) MB taking \(sent >> 20) MB of queries nobody reads")
            #expect(try Self.askOverTCP(endpoint, query).answers.count == 3)
            withExtendedLifetime(greedy) {}
        }
        #expect(server.stop() == 0)
    }

    @Test func answersAsKnotDoesBehindATUNDevice() throws {
        guard Self.knotAvailable() else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301")
        let server = try serve(namespace.name, ["--backend", "tun", "--name", "sldns0", "--address", "198.18.7.1/24",
                                                "--listen", "198.18.7.2:53"])
        let socket = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("0.0.0.0:0")!) }
        usleep(300_000)
        #expect(try Self.compare(knot: IPEndpoint("127.0.0.1:5301")!, sluice: IPEndpoint("198.18.7.2:53")!, from: socket)
                == Self.queries().count)
        // Said at the start, where a client's retry over TCP would fail.
        #expect(server.text.contains("no DNS over TCP on 198.18.7.2:53: 198.18.7.2 is behind the tun device") && server.text.contains("UDP only"),
                "TCP needs a local address: \(server.text)")
        #expect(server.stop() == 0)
        withExtendedLifetime(knot) {}
    }

    @Test func answersAsKnotDoesOverAFXDP() throws {
        guard Self.knotAvailable() else { return }
        let topology = try TestTopology(.init(suffix: "dn\(getpid() % 100_000)"))
        defer { topology.destroy() }
        let serverAddress = "\(topology.serverIPv4)"
        let knot = try Knot(namespace: topology.serverNamespace, listen: "\(serverAddress)@5301")
        let server = try serve(topology.serverNamespace, ["--backend", "xdp", "--dev", topology.serverInterface,
                                                          "--listen", "\(serverAddress):5302"])
        let socket = try withNetworkNamespace(topology.clientNamespace) {
            KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0))
        }
        usleep(300_000)
        #expect(try Self.compare(knot: IPEndpoint("\(serverAddress):5301")!, sluice: IPEndpoint("\(serverAddress):5302")!,
                                 from: socket) == Self.queries().count)
        #expect(server.stop() == 0)
        withExtendedLifetime(knot) {}
    }

    /// What `tool` prints for `query` against `server` (port `port`), without the lines that
    /// name the server, the time or the ID.
    static func printed(_ tool: String, _ query: [String], server: String, port: Int, namespace: String) throws -> String {
        let arguments = tool == "kdig"
            ? ["@\(server)", "-p", "\(port)"] + query + ["+noall", "+answer", "+authority", "+additional", "+comments"]
            : ["@\(server)", "-p", "\(port)"] + query + ["+noall", "+answer", "+authority", "+additional", "+comments", "+nocookie"]
        let process = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace, tool == "kdig" ? "/usr/bin/kdig" : "/usr/bin/dig"] + arguments)
        _ = process.waitForExit(timeout: .seconds(20))
        return process.text.split(separator: "\n").filter { line in
            !line.hasPrefix(";; Received") && !line.hasPrefix(";; Time") && !line.hasPrefix(";; From") && !line.hasPrefix(";; Query time")
                && !line.hasPrefix(";; SERVER") && !line.hasPrefix(";; WHEN") && !line.hasPrefix(";; MSG SIZE") && !line.contains("Got answer")
        }.map { line in
            // The ID differs by design.
            line.replacing(/id: \d+/, with: "id")
        }.joined(separator: "\n")
    }

    @Test("sluice dns query prints what dig +short prints, for the types kept as wire bytes too, with @SERVER first or last")
    func dnsQueryPrintsAsDigShort() throws {
        guard Self.knotAvailable(alsoNeeding: ["/usr/bin/dig"]) else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301",
                            zones: [("example.test", Self.zoneFile), ("signed.test", DNSCodecTests.fixtures + "/signed.test.zone")])
        usleep(300_000)
        let queries = [["www.example.test", "A"], ["esc.example.test", "TXT"], ["esc.example.test", "HINFO"], ["naptr.example.test", "NAPTR"],
                       ["uri.example.test", "URI"], ["eui.example.test", "EUI48"], ["svc.example.test", "SVCB"], ["svc.example.test", "HTTPS"],
                       ["svc.example.test", "NSEC3PARAM"], ["example.test", "MX"], ["_443._tcp.www.example.test", "TLSA"],
                       ["ssh.example.test", "SSHFP"], ["pgp.example.test", "OPENPGPKEY"], ["signed.test", "DNSKEY"], ["signed.test", "CDS"],
                       ["signed.test", "CDNSKEY"], ["secure.signed.test", "DS"], ["signed.test", "RRSIG"], ["alias.signed.test", "NSEC"],
                       ["loc.example.test", "LOC"], ["loc3.example.test", "LOC"], ["example.test", "ZONEMD"], ["example.test", "CSYNC"]]
        for (index, query) in queries.enumerated() {
            let dig = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "/usr/bin/dig", "@127.0.0.1", "-p", "5301", "+short"] + query)
            _ = dig.waitForExit(timeout: .seconds(20))
            let server = "@127.0.0.1:5301"
            let ours = try ChildProcess(sluice: ["dns", "query", "--netns", namespace.name] + (index % 2 == 0 ? [server] + query : query + [server]))
            #expect(ours.waitForExit(timeout: .seconds(20)) == 0, "\(query): \(ours.text)")
            #expect(ours.text == dig.text, "\(query):\n\(dig.text)---\n\(ours.text)")
        }
        // dig's other forms: the type before the name, the class IN, the first @ counting.
        let dig = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "/usr/bin/dig", "@127.0.0.1", "-p", "5301", "+short",
                                                    "example.test", "MX"])
        _ = dig.waitForExit(timeout: .seconds(20))
        for form in [["MX", "example.test"], ["example.test", "IN", "MX"], ["IN", "MX", "example.test"]] {
            let ours = try ChildProcess(sluice: ["dns", "query", "--netns", namespace.name, "@127.0.0.1:5301"] + form + ["@198.18.0.9"])
            #expect(ours.waitForExit(timeout: .seconds(20)) == 0, "\(form): \(ours.text)")
            #expect(ours.text == dig.text, "\(form):\n\(dig.text)---\n\(ours.text)")
        }
        // dig's -p, with the server given bare.
        let ours = try ChildProcess(sluice: ["dns", "query", "--netns", namespace.name, "@127.0.0.1", "-p", "5301", "example.test", "MX"])
        #expect(ours.waitForExit(timeout: .seconds(20)) == 0, "\(ours.text)")
        #expect(ours.text == dig.text, "-p:\n\(dig.text)---\n\(ours.text)")
        withExtendedLifetime(knot) {}
    }

    @Test func digAndKdigPrintTheSameForBothServers() throws {
        guard Self.knotAvailable(alsoNeeding: ["/usr/bin/kdig", "/usr/bin/dig"]) else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let knot = try Knot(namespace: namespace.name, listen: "127.0.0.1@5301")
        let server = try serve(namespace.name, ["--listen", "127.0.0.1:5302"])
        usleep(300_000)
        let queries: [[String]] = [
            ["example.test", "SOA"], ["www.example.test", "A"], ["WwW.ExAmPlE.TeSt", "AAAA", "+edns"], ["x.wild.example.test", "A"],
            ["nothing.example.test", "A", "+dnssec"], ["foo.sub.example.test", "A"], ["example.test", "MX"], ["big.example.test", "TXT"],
            ["example.test", "ANY"], ["other.org", "A"], ["example.test", "SOA", "+edns=1"], ["gone.example.test", "A"],
            ["order.example.test", "A"], ["esc.example.test", "TXT"], ["naptr.example.test", "NAPTR"], ["svc.example.test", "HTTPS"],
        ]
        for tool in ["kdig", "dig"] {
            for query in queries {
                let fromKnot = try Self.printed(tool, query, server: "127.0.0.1", port: 5301, namespace: namespace.name)
                let fromSluice = try Self.printed(tool, query, server: "127.0.0.1", port: 5302, namespace: namespace.name)
                    .replacing("127.0.0.1#5302", with: "127.0.0.1#5301").replacing("127.0.0.1@5302", with: "127.0.0.1@5301")
                #expect(fromKnot == fromSluice, "\(tool) \(query.joined(separator: " ")):\n\(fromKnot)\n---\n\(fromSluice)")
            }
        }
        #expect(server.stop() == 0)
        withExtendedLifetime(knot) {}
    }
}
