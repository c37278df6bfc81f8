#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceCore
import SluiceDNS
import SluicePackets
import SluiceTestSupport
import Testing

/// The stub resolver, sans I/O: what it sends, what it accepts, when it retries, what it keeps.
@Suite struct DNSResolverTests {
    static let servers = [IPEndpoint("198.18.53.1:53")!, IPEndpoint("198.18.53.2:53")!]

    static func configuration() -> DNSResolverConfiguration {
        var configuration = DNSResolverConfiguration(resolvConf: """
            # a comment
            nameserver 198.18.53.1
            nameserver 198.18.53.2
            search corp.test example.test
            options ndots:2 timeout:1 attempts:2
            """, hosts: "198.18.53.9 printer.corp.test printer # the printer\n::1 localhost6")
        configuration.timeout = .seconds(1)
        return configuration
    }

    /// A response to `transmit` with `code` and `answers` (and `soa` in authority for negatives).
    static func response(to transmit: DNSResolver.Transmit, code: DNSResponseCode = .noError, answers: [DNSRecord] = [],
                         soaTTL: UInt32? = nil, truncated: Bool = false) throws -> [UInt8] {
        var message = try DNSMessage.decode(transmit.message)
        message.header.flags |= DNSHeader.response | (truncated ? DNSHeader.truncated : 0) | code.rawValue
        message.answers = answers
        if let soaTTL {
            message.authority = [DNSRecord(name: DNSName("example.test.")!, type: .soa, ttl: soaTTL, data: .soa(
                primary: DNSName("ns.example.test.")!, mailbox: DNSName("h.example.test.")!, serial: 1, refresh: 1, retry: 1,
                expire: 1, minimum: 60))]
        }
        return message.encode()
    }

    static func next(_ resolver: inout DNSResolver) throws -> DNSResolver.Transmit {
        let transmit = resolver.pollTransmit()
        return try #require(transmit)
    }

    @Test func resolvConfAndHostsAreReadAsGlibcReadsThem() {
        let configuration = Self.configuration()
        #expect(configuration.servers == Self.servers && configuration.dots == 2 && configuration.attempts == 2)
        #expect(configuration.search == [DNSName("corp.test.")!, DNSName("example.test.")!])
        #expect(configuration.candidates("www") == [DNSName("www.corp.test.")!, DNSName("www.example.test.")!, DNSName("www.")!])
        #expect(configuration.candidates("a.b.c") == [DNSName("a.b.c.")!, DNSName("a.b.c.corp.test.")!, DNSName("a.b.c.example.test.")!])
        #expect(configuration.candidates("abs.") == [DNSName("abs.")!])
        #expect(configuration.hosts[DNSName("printer.")!] == [IPAddress("198.18.53.9")!])
    }

    /// Found by `make fuzz` (fuzz-resolver-configuration): an option of only colons trapped.
    @Test(arguments: ["options ::", "options :", "options : ndots:3", "options ndots: timeout:x attempts"])
    func malformedOptionsAreSkipped(line: String) {
        let configuration = DNSResolverConfiguration(resolvConf: "nameserver 198.18.0.53\n" + line + "\n")
        #expect(configuration.servers == [IPEndpoint("198.18.0.53:53")!])
        #expect(configuration.dots == (line.contains("ndots:3") ? 3 : 1))
    }

    @Test func hostsComeFirstAndTheSearchListSkipsNXDOMAIN() throws {
        var resolver = DNSResolver(configuration: Self.configuration())
        let now = Instant(nanoseconds: 1_000_000_000)
        let printer = resolver.resolve("printer", .a, now: now)
        let fromHosts = resolver.takeResult(printer)
        #expect(fromHosts.map { try? $0.get().source } == .hosts)
        let query = resolver.resolve("www", .a, now: now)
        var transmit = try Self.next(&resolver)
        #expect(try DNSMessage.decode(transmit.message).questions.first?.name == DNSName("www.corp.test.")!)
        resolver.handleResponse(try Self.response(to: transmit, code: .nameError, soaTTL: 300), from: transmit.server, overTCP: false, now: now)
        transmit = try Self.next(&resolver)
        #expect(try DNSMessage.decode(transmit.message).questions.first?.name == DNSName("www.example.test.")!)
        let answer = DNSRecord(name: DNSName("www.example.test.")!, type: .a, ttl: 120, data: .a(IPv4Address(198, 18, 5, 80)))
        resolver.handleResponse(try Self.response(to: transmit, answers: [answer]), from: transmit.server, overTCP: false, now: now)
        let result = resolver.takeResult(query)
        let resolution = try #require(result).get()
        #expect(resolution.records == [answer] && resolution.name == DNSName("www.example.test.")!)
        // Both answers are kept: the next time, no message at all, until the TTLs run out.
        let again = resolver.resolve("www", .a, now: now + .seconds(50))
        let nothingSent = resolver.pollTransmit() == nil
        let cached = resolver.takeResult(again)
        #expect(nothingSent)
        #expect(try cached?.get().source == .cache)
        _ = resolver.resolve("www", .a, now: now + .seconds(121))
        let sent = resolver.pollTransmit() != nil
        #expect(sent, "the positive answer expired; the negative one (60 s) too")
    }

    /// As glibc's "files" reads hosts(5): the name as given only (no search list), and only an
    /// address of the family asked answers; otherwise DNS is asked.
    @Test func hostsAnswerTheNameAsGivenWithTheFamilyAsked() throws {
        var resolver = DNSResolver(configuration: Self.configuration())
        let now = Instant(nanoseconds: 1_000_000_000)
        let asGiven = resolver.takeResult(resolver.resolve("printer.corp.test", .a, now: now))
        #expect(try asGiven?.get().source == .hosts)
        for (name, type) in [("printer.corp", DNSRecordType.a), ("localhost6", .a)] {
            let query = resolver.resolve(name, type, now: now)
            #expect(resolver.takeResult(query) == nil, "\(name) \(type) goes to DNS")
            #expect(resolver.pollTransmit() != nil)
        }
        #expect(resolver.takeResult(resolver.resolve("", .a, now: now)) == .failure(.badName("")))
    }

    /// `LOCALDOMAIN` and `RES_OPTIONS` win over resolv.conf; a server may name its zone.
    @Test func theEnvironmentAndZonesAreReadAsGlibcReadsThem() {
        var configuration = DNSResolverConfiguration(resolvConf: "nameserver fe80::53%eth9\nnameserver 198.18.0.1%eth0\nnameserver 2001:2::53%eth0\nsearch a.test\n")
        let linkLocal = IPEndpoint("[fe80::53]:53")!
        // A zone after a global address is dropped, as glibc's resolver drops it.
        #expect(configuration.servers == [linkLocal, IPEndpoint("[2001:2::53]:53")!] && configuration.serverZones == [linkLocal: "eth9"])
        configuration.apply(environment: ["LOCALDOMAIN": "b.test c.test", "RES_OPTIONS": "ndots:3 timeout:1 attempts:1 rotate"])
        #expect(configuration.search == [DNSName("b.test.")!, DNSName("c.test.")!])
        #expect(configuration.dots == 3 && configuration.timeout == .seconds(1) && configuration.attempts == 1 && configuration.rotates)
    }

    /// What the short output prints: the chain from the name and the records it ends at, not
    /// an answer record another owner was given (RFC 2181 section 5.4.1).
    @Test func onlyTheChainFromTheNameIsTheAnswer() {
        let name = DNSName("www.bank.test.")!
        let alias = DNSRecord(name: name, type: .cname, ttl: 60, data: .name(DNSName("host.bank.test.")!))
        let address = DNSRecord(name: DNSName("host.bank.test.")!, type: .a, ttl: 60, data: .a(IPv4Address(198, 18, 6, 1)))
        let stray = DNSRecord(name: DNSName("evil.test.")!, type: .a, ttl: 60, data: .a(IPv4Address(198, 18, 6, 6)))
        let resolution = DNSResolution(name: name, type: .a, responseCode: .noError, answers: [stray, alias, address], authority: [],
                                       source: .cache)
        #expect(resolution.chainAnswers == [alias, address] && resolution.records == [address])
        let strayOnly = DNSResolution(name: name, type: .a, responseCode: .noError, answers: [stray], authority: [], source: .cache)
        #expect(strayOnly.chainAnswers.isEmpty)
        let any = DNSResolution(name: DNSName("host.bank.test.")!, type: .any, responseCode: .noError, answers: [address, stray],
                                authority: [], source: .cache)
        #expect(any.records == [address])
    }

    /// A TCP reply to another query ends that exchange: the attempt moves on at once, and the
    /// failure says why (not "in time").
    @Test func aTCPReplyToAnotherQueryMovesOnAndSaysSo() throws {
        var configuration = Self.configuration()
        configuration.servers = [Self.servers[0]]
        configuration.attempts = 1
        var resolver = DNSResolver(configuration: configuration)
        let now = Instant(nanoseconds: 1_000_000_000)
        let query = resolver.resolve("www.example.test.", .a, now: now)
        let udp = try Self.next(&resolver)
        resolver.handleResponse(try Self.response(to: udp, truncated: true), from: udp.server, overTCP: false, now: now)
        let tcp = try Self.next(&resolver)
        var other = try DNSMessage.decode(tcp.message)
        other.header.id &+= 1
        other.header.flags |= DNSHeader.response
        resolver.handleResponse(other.encode(), from: tcp.server, overTCP: true, now: now)
        resolver.handleExchangeEnded(tcp.server, messageID: try DNSMessage.decode(tcp.message).header.id, now: now)
        let taken = resolver.takeResult(query)
        let result = try #require(taken)
        #expect(result == .failure(.exchangeFailed(DNSName("www.example.test.")!,
                                                   "the reply over TCP from 198.18.53.1:53 answered another query (its ID or question differ)")))
    }

    @Test func onlyAMatchingResponseCountsAndTruncationGoesToTCP() throws {
        var resolver = DNSResolver(configuration: Self.configuration())
        let now = Instant(nanoseconds: 1_000_000_000)
        let query = resolver.resolve("host.example.test.", .aaaa, now: now)
        let transmit = try Self.next(&resolver)
        let good = try Self.response(to: transmit, truncated: true)
        var wrongID = good
        wrongID[0] ^= 0xFF
        resolver.handleResponse(wrongID, from: transmit.server, overTCP: false, now: now)
        resolver.handleResponse(good, from: Self.servers[1], overTCP: false, now: now)
        var otherQuestion = try DNSMessage.decode(good)
        otherQuestion.questions[0].type = .a
        resolver.handleResponse(otherQuestion.encode(), from: transmit.server, overTCP: false, now: now)
        let quiet = resolver.pollTransmit() == nil && resolver.takeResult(query) == nil
        #expect(quiet, "none of those was the answer")
        resolver.handleResponse(good, from: transmit.server, overTCP: false, now: now)
        let overTCP = try Self.next(&resolver)
        #expect(overTCP.overTCP && overTCP.server == transmit.server)
        resolver.handleResponse(try Self.response(to: overTCP), from: overTCP.server, overTCP: true, now: now)
        let final = resolver.takeResult(query)
        #expect(try final?.get().source == .server(transmit.server, overTCP: true))
    }

    @Test func failuresAndSilenceMoveToTheNextServerThenGiveUp() throws {
        var resolver = DNSResolver(configuration: Self.configuration())
        var now = Instant(nanoseconds: 1_000_000_000)
        let query = resolver.resolve("host.example.test.", .a, now: now)
        let first = try Self.next(&resolver)
        #expect(first.server == Self.servers[0])
        resolver.handleResponse(try Self.response(to: first, code: .serverFailure), from: first.server, overTCP: false, now: now)
        let second = try Self.next(&resolver)
        #expect(second.server == Self.servers[1])
        #expect(resolver.pollTimeout() == now + .seconds(1))
        for _ in 0..<2 {
            now = now + .seconds(1)
            resolver.handleTimeout(now: now)
            let resent = resolver.pollTransmit() != nil
            #expect(resent, "the next server, the next round")
        }
        now = now + .seconds(1)
        resolver.handleTimeout(now: now)
        let failure = resolver.takeResult(query)
        #expect(failure == .failure(.failed(DNSName("host.example.test.")!, .serverFailure)))
    }

    /// A reply with the query's ID that cannot be read is ignored (a spoofer's or a broken
    /// server's), as glibc ignores it, but the failure then says so instead of "no answer in time";
    /// over TCP the exchange is over, and the next server is asked at once.
    @Test func unreadableRepliesAreIgnoredAndNamedInTheFailure() throws {
        var resolver = DNSResolver(configuration: Self.configuration())
        var now = Instant(nanoseconds: 1_000_000_000)
        let name = DNSName("host.example.test.")!
        let query = resolver.resolve("host.example.test.", .a, now: now)
        let first = try Self.next(&resolver)
        let broken = Array(try Self.response(to: first).prefix(14))
        resolver.handleResponse(broken, from: first.server, overTCP: false, now: now)
        let quiet = resolver.pollTransmit() == nil && resolver.takeResult(query) == nil
        #expect(quiet, "a broken reply is no answer")
        for _ in 0..<3 {
            now = now + .seconds(1)
            resolver.handleTimeout(now: now)
            _ = try Self.next(&resolver)
        }
        now = now + .seconds(1)
        resolver.handleTimeout(now: now)
        #expect(resolver.takeResult(query) == .failure(.malformedReply(name)))
        #expect("\(DNSResolverError.malformedReply(name))".contains("could not be read"))

        let other = resolver.resolve("host.example.test.", .aaaa, now: now)
        let udp = try Self.next(&resolver)
        resolver.handleResponse(try Self.response(to: udp, truncated: true), from: udp.server, overTCP: false, now: now)
        let tcp = try Self.next(&resolver)
        #expect(tcp.overTCP)
        resolver.handleResponse(Array(try Self.response(to: tcp).prefix(20)), from: tcp.server, overTCP: true, now: now)
        let next = try Self.next(&resolver)
        #expect(next.server == Self.servers[1] && !next.overTCP, "on to the next server without waiting")
        #expect(resolver.takeResult(other) == nil)
        // A silent server is still a timeout.
        let silent = resolver.resolve("silent.example.test.", .a, now: now)
        for _ in 0..<3 {
            now = now + .seconds(1)
            resolver.handleTimeout(now: now)
            while resolver.pollTransmit() != nil {}
        }
        now = now + .seconds(1)
        resolver.handleTimeout(now: now)
        #expect(resolver.takeResult(silent) == .failure(.timedOut(DNSName("silent.example.test.")!)))
    }

    @Test func aRefusedServerIsSkippedAtOnceAndReported() throws {
        var resolver = DNSResolver(configuration: Self.configuration())
        let now = Instant(nanoseconds: 1_000_000_000)
        let query = resolver.resolve("host.example.test.", .a, now: now)
        // Every send is refused: each goes on to the next server without waiting for the timeout.
        var sends = 0
        while let transmit = resolver.pollTransmit() {
            sends += 1
            resolver.handleUnreachable(transmit.server, overTCP: false, now: now)
        }
        #expect(sends == 4, "two servers, two attempts each")
        #expect(resolver.takeResult(query) == .failure(.unreachable(DNSName("host.example.test.")!)))
        // A refusal on the TCP leg of one query leaves the UDP attempts of others alone.
        let other = resolver.resolve("other.example.test.", .a, now: now)
        let transmit = try Self.next(&resolver)
        resolver.handleUnreachable(transmit.server, overTCP: true, now: now)
        #expect(resolver.takeResult(other) == nil && resolver.pollTransmit() == nil)
    }

    /// As glibc's res_search: the name as given, tried first (it has ndots dots, 2 here), goes on down
    /// the search list whatever its failure (here REFUSED from both servers); later in the list a
    /// refusal ends it. With no nameserver line, the local server.
    @Test func theNameAsGivenFailingGoesOnDownTheSearchList() throws {
        var resolver = DNSResolver(configuration: Self.configuration())
        let now = Instant(nanoseconds: 1_000_000_000)
        let query = resolver.resolve("a.b.c", .a, now: now)
        var asked: [DNSName] = []
        while let transmit = resolver.pollTransmit() {
            let name = try #require(try DNSMessage.decode(transmit.message).questions.first?.name)
            asked.append(name)
            resolver.handleResponse(try Self.response(to: transmit, code: .refused), from: transmit.server, overTCP: false, now: now)
        }
        #expect(asked == Array(repeating: DNSName("a.b.c.")!, count: 4) + Array(repeating: DNSName("a.b.c.corp.test.")!, count: 4),
                "\(asked)")
        #expect(resolver.takeResult(query) == .failure(.failed(DNSName("a.b.c.corp.test.")!, .refused)))
        #expect(DNSResolverConfiguration(resolvConf: "search example.test\n").servers == [IPEndpoint("127.0.0.1:53")!])
    }

    /// RFC 3492 section 7.1's samples and the names kdig writes: non-ASCII labels, lower-cased,
    /// become xn-- and their Punycode; ASCII labels stay as they are.
    @Test func internationalizedNamesAreAskedInTheirASCIIForm() throws {
        #expect(DNSPunycode.asciiName("bücher.example.test") == "xn--bcher-kva.example.test")
        #expect(DNSPunycode.asciiName("MÜNCHEN.de.") == "xn--mnchen-3ya.de.")
        #expect(DNSPunycode.asciiName("例え.テスト") == "xn--r8jz45g.xn--zckzah")
        #expect(DNSPunycode.asciiName("ليهمابتكلموشعربي") == "xn--mgbcah9ar9a4efegftvvn")
        #expect(DNSPunycode.asciiName("www.example.test") == "www.example.test")
        // What kdig (libidn2, IDNA2008) refuses: a symbol, punctuation (RFC 3492's sample ends in
        // an Arabic question mark), an A-label that is no Punycode or hides a symbol.
        for refused in ["☃.example.test", "ليهمابتكلموشعربي؟", "xn--zz.example.test", "xn--n3h.example.test"] {
            #expect(DNSPunycode.asciiName(refused) == nil, "\(refused)")
        }
        #expect(DNSPunycode.asciiName("xn--bcher-kva.example.test") == "xn--bcher-kva.example.test")
        // Every label encoded decodes back as valid: the A-label passes as it is.
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array(0x3B1...0x3C9) + Array(0x430...0x44F) + Array(0x4E00...0x4E40) + Array(0x61...0x7A) + [0x2D, 0x30, 0x39]
        for _ in 0..<300 {
            let scalars = (0..<Int.random(in: 1...12, using: &generator)).map { _ in Unicode.Scalar(alphabet.randomElement(using: &generator)!)! }
            let label = "é" + String(String.UnicodeScalarView(scalars))
            let encoded = try #require(DNSPunycode.asciiName(label), "\(label)")
            #expect(DNSPunycode.asciiName(encoded) == encoded, "\(label) as \(encoded)")
        }
        var resolver = DNSResolver(configuration: Self.configuration())
        _ = resolver.resolve("bücher.example.test.", .a, now: Instant(nanoseconds: 1))
        let transmit = try Self.next(&resolver)
        #expect(try DNSMessage.decode(transmit.message).questions.first?.name == DNSName("xn--bcher-kva.example.test.")!)
    }

    /// A server that knows no EDNS and answers FORMERR without the question (RFC 6891 section 7)
    /// is asked again without it; a TCP exchange that ends without a reply moves on at once.
    @Test func aFormatErrorToEDNSIsRetriedWithoutIt() throws {
        var resolver = DNSResolver(configuration: Self.configuration())
        let now = Instant(nanoseconds: 1_000_000_000)
        let query = resolver.resolve("host.example.test.", .a, now: now)
        let first = try Self.next(&resolver)
        let sent = try DNSMessage.decode(first.message)
        #expect(sent.edns != nil)
        var formatError = DNSMessage()
        formatError.header.id = try DNSMessage.decode(first.message).header.id
        formatError.header.flags = DNSHeader.response | DNSResponseCode.formatError.rawValue
        resolver.handleResponse(formatError.encode(), from: first.server, overTCP: false, now: now)
        let again = try Self.next(&resolver)
        let resent = try DNSMessage.decode(again.message)
        #expect(again.server == first.server && resent.edns == nil)
        resolver.handleResponse(try Self.response(to: again, truncated: true), from: again.server, overTCP: false, now: now)
        let overTCP = try Self.next(&resolver)
        #expect(overTCP.overTCP)
        resolver.handleFailure(overTCP.server, overTCP: true, now: now)
        let next = try Self.next(&resolver)
        #expect(next.server == Self.servers[1] && !next.overTCP, "the next server at once")
        #expect(resolver.takeResult(query) == nil)
    }
}

/// The resolver over real sockets against Knot DNS: A, AAAA, a CNAME chain, NXDOMAIN, and a
/// truncated answer retried over TCP; and the async edge.
@Suite(.serialized) struct DNSStubResolverTests {
    @Test func resolvesFromKnotOverUDPAndTCP() async throws {
        guard DNSAgainstKnotTests.knotAvailable() else { return }
        let namespace = try ScratchNamespace(prefix: "sldns")
        let knot = try DNSAgainstKnotTests.Knot(namespace: namespace.name, listen: "127.0.0.1@5301")
        var configuration = DNSResolverConfiguration()
        configuration.servers = [IPEndpoint("127.0.0.1:5301")!]
        configuration.search = [DNSName("example.test.")!]
        // Relative names go through the search list first (Knot refuses the bare ones, which ends a search).
        configuration.dots = 3
        let resolver = DNSStubResolver(configuration: configuration)
        let name = namespace.name
        let results = try withNetworkNamespace(name) { () throws -> [DNSResolution] in
            // Until Knot listens, its port refuses at once: wait for it (5 s at most), not a fixed time.
            for _ in 0..<50 {
                if case .failure(.unreachable) = Result(catching: { () throws(DNSResolverError) in
                    try DNSStubResolver(configuration: configuration).resolveBlocking("example.test.", .soa)
                }) { usleep(100_000) } else { break }
            }
            return try [("host.deep", DNSRecordType.a), ("host.deep", .aaaa), ("www", .a), ("nothing", .a), ("big", .txt)].map {
                try resolver.resolveBlocking($0.0, $0.1)
            }
        }
        #expect(results[0].records.map(\.dataText) == ["198.18.5.80"])
        #expect(results[1].records.map(\.dataText) == ["2001:2:5::80"])
        #expect(results[2].answers.map(\.type) == [.cname, .cname, .a] && results[2].records.map(\.dataText) == ["198.18.5.80"])
        #expect(results[3].responseCode == .nameError)
        #expect(results[4].records.count == 20 && results[4].source == .server(IPEndpoint("127.0.0.1:5301")!, overTCP: true))
        // Asked again: from the cache, through the async edge.
        let cached = try await resolver.resolve("www.example.test.", .a)
        #expect(cached.source == .cache && cached.records == results[2].records)
        withExtendedLifetime(knot) {}
    }

    /// A port no one listens on answers with ICMP port unreachable; the resolver reports the
    /// refusal from that (ECONNREFUSED on its connected socket) well before its 2 s timeout.
    @Test func aClosedPortIsReportedAsRefused() throws {
        let listener = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0,
                                  sin_addr: in_addr(s_addr: UInt32(0x7F00_0001).bigEndian), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        // A port that was just free: bound, read back, then closed.
        let port = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> UInt16 in
                _ = bind(listener, raw, length)
                _ = getsockname(listener, raw, &length)
                return UInt16(bigEndian: pointer.pointee.sin_port)
            }
        }
        close(listener)
        var configuration = DNSResolverConfiguration()
        configuration.servers = [IPEndpoint("127.0.0.1:\(port)")!]
        configuration.timeout = .seconds(2)
        let clock = MonotonicTimeSource()
        let started = clock.now()
        #expect(throws: DNSResolverError.unreachable(DNSName("example.test.")!)) {
            try DNSStubResolver(configuration: configuration).resolveBlocking("example.test.", .a)
        }
        #expect(clock.now() - started < .seconds(1))
    }
}
