import SluiceCore
import SluiceDNS
import SluicePackets
import SluiceTestSupport
import Testing

/// Response rate limiting per client prefix and answer, slipping to TC as Knot does.
@Suite struct DNSRateLimiterTests {
    let authority: DNSAuthority

    init() throws {
        let text = try #require(readTextFile(DNSCodecTests.fixtures + "/example.test.zone"))
        authority = DNSAuthority(zones: [try DNSZone(origin: DNSName("example.test.")!, text: text)])
    }

    func ask(_ responder: inout DNSResponder, _ name: String, from client: String, at now: Instant, edns: Bool = false) throws -> DNSMessage? {
        var query = DNSMessage()
        query.header.id = 9
        query.questions = [DNSQuestion(name: DNSName(name)!, type: .a)]
        if edns { query.edns = DNSEDNS(payloadSize: 1232) }
        let bytes = query.encode()
        var buffer = bytes + [UInt8](repeating: 0, count: 2048)
        let length = buffer.withUnsafeMutableBytes {
            responder.respond($0.baseAddress!, length: bytes.count, capacity: $0.count, client: IPAddress(client)!, now: now)
        }
        return try length.map { try DNSMessage.decode(Array(buffer[..<$0])) }
    }

    @Test func answersOverTheLimitSlipToTruncatedAndRefill() throws {
        var responder = DNSResponder(authority: authority)
        responder.rateLimiter = DNSRateLimiter(responsesPerSecond: 10)
        let start = Instant(nanoseconds: 5_000_000_000)
        var full = 0
        var slipped = 0
        // A new bucket holds four seconds' worth, as Knot's: 40 answers, then slips.
        for _ in 0..<60 {
            let reply = try #require(try ask(&responder, "www.example.test.", from: "198.18.9.7", at: start, edns: true))
            if reply.header.isTruncated {
                #expect(reply.answers.isEmpty && reply.authority.isEmpty && reply.edns != nil && reply.questions.count == 1)
                slipped += 1
            } else {
                #expect(reply.answers.count == 3)
                full += 1
            }
        }
        #expect(full == 40 && slipped == 20)
        // Another /24 is another client; the same /24 is the same one.
        #expect(try ask(&responder, "www.example.test.", from: "198.18.10.7", at: start)?.header.isTruncated == false)
        #expect(try ask(&responder, "www.example.test.", from: "198.18.9.200", at: start)?.header.isTruncated == true)
        // Another answer is another bucket; a tenth of a second later one more token is there.
        #expect(try ask(&responder, "host.deep.example.test.", from: "198.18.9.7", at: start)?.header.isTruncated == false)
        #expect(try ask(&responder, "www.example.test.", from: "198.18.9.7", at: start + .milliseconds(100))?.header.isTruncated == false)
        #expect(responder.counters.slipped == 21)
    }

    /// Copies share one table, as Knot's workers share theirs: a server's workers (each with its
    /// copy) count against one limit, not one limit each.
    @Test func copiesShareTheirBuckets() {
        let limiter = DNSRateLimiter(responsesPerSecond: 5)
        let copy = limiter
        let key = DNSRateLimiter.key(client: IPAddress("198.18.9.7")!, answer: 42)
        let now = Instant(nanoseconds: 9_000_000_000)
        let sent = (0..<30).filter { (($0 % 2 == 0 ? limiter : copy).admit(key, now: now)) == .send }.count
        #expect(sent == 20, "four seconds' worth in all")
        // A millisecond refills five thousandths: two hundred milliseconds one whole answer.
        #expect(copy.admit(key, now: now + .milliseconds(199)) != .send)
        #expect(limiter.admit(key, now: now + .milliseconds(400)) == .send)
    }

    /// Workers on other threads take exactly what the bucket holds between them, however their
    /// updates interleave, and a worker whose clock read is a little behind another's refills nothing.
    @Test func threadsTakeExactlyWhatTheBucketHolds() async {
        let limiter = DNSRateLimiter(responsesPerSecond: 1000)
        let key = DNSRateLimiter.key(client: IPAddress("2001:2::7")!, answer: 7)
        let earlier = Instant(nanoseconds: 2_999_000_000)
        let now = Instant(nanoseconds: 3_000_000_000)
        #expect(limiter.admit(key, now: earlier) == .send)
        let sent = await withTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    // Half the workers read a clock a millisecond behind the others.
                    let at = worker % 2 == 0 ? now : earlier
                    return (0..<5000).filter { _ in limiter.admit(key, now: at) == .send }.count
                }
            }
            return await group.reduce(0, +)
        }
        // What the full bucket had left (3999), and the one millisecond's worth the later clock refills.
        #expect(sent == 4000)
    }

    /// As Knot keys its buckets: the name, not the type (A and AAAA of one name share one), but
    /// an empty answer (NODATA) apart from a full one.
    @Test func typesOfOneNameShareABucket() throws {
        var responder = DNSResponder(authority: authority)
        responder.rateLimiter = DNSRateLimiter(responsesPerSecond: 5)
        let start = Instant(nanoseconds: 5_000_000_000)
        func ask(_ type: DNSRecordType) throws -> Bool {
            var query = DNSMessage()
            query.questions = [DNSQuestion(name: DNSName("www.example.test.")!, type: type)]
            let bytes = query.encode()
            var buffer = bytes + [UInt8](repeating: 0, count: 2048)
            let length = buffer.withUnsafeMutableBytes {
                responder.respond($0.baseAddress!, length: bytes.count, capacity: $0.count, client: IPAddress("198.18.9.7")!, now: start)
            }
            return try length.map { try DNSMessage.decode(Array(buffer[..<$0])).header.isTruncated } == false
        }
        var full = 0
        for type in Array(repeating: DNSRecordType.a, count: 15) + Array(repeating: .mx, count: 15) where try ask(type) { full += 1 }
        #expect(full == 20, "one bucket of 20 for www's A and MX")
    }

    @Test func randomNamesUnderOneZoneAreOneAnswerAndSlipZeroDrops() throws {
        var responder = DNSResponder(authority: authority)
        responder.rateLimiter = DNSRateLimiter(responsesPerSecond: 5, slip: 0)
        let start = Instant(nanoseconds: 5_000_000_000)
        var answered = 0
        for index in 0..<65 {
            if let reply = try ask(&responder, "random\(index).example.test.", from: "2001:2::1", at: start) {
                #expect(reply.responseCode == .nameError)
                answered += 1
            }
        }
        #expect(answered == 20 && responder.counters.rateLimitedDrops == 45)
        #expect(responder.counters.responses == 20 && responder.counters.count(.nameError) == 20, "dropped answers are no responses")
        // Random names under a wildcard are one answer too.
        let other = "2001:2:1::1"
        var synthesized = 0
        for index in 0..<30 where try ask(&responder, "r\(index).wild.example.test.", from: other, at: start) != nil { synthesized += 1 }
        #expect(synthesized == 20)
    }
}
