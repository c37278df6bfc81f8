@testable import SluiceDNS
import SluiceTestSupport
import Testing

/// Malformed messages get FORMERR or a counted drop, never a crash or a hang.
@Suite struct DNSBadInputTests {
    let authority: DNSAuthority

    init() throws {
        let text = try #require(readTextFile(DNSCodecTests.fixtures + "/example.test.zone"))
        authority = DNSAuthority(zones: [try DNSZone(origin: DNSName("example.test.")!, text: text)])
    }

    /// The response to `query`, or `nil` when it was dropped.
    func respond(_ query: [UInt8], responder: inout DNSResponder) -> [UInt8]? {
        var buffer = query + [UInt8](repeating: 0, count: max(0, 65535 - query.count))
        let length = buffer.withUnsafeMutableBytes { responder.respond($0.baseAddress!, length: query.count, capacity: $0.count) }
        return length.map { Array(buffer[..<$0]) }
    }

    static let header: [UInt8] = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
    static let question: [UInt8] = [3] + Array("www".utf8) + [7] + Array("example".utf8) + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
    static let opt: [UInt8] = [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]

    func expectFormatError(_ query: [UInt8], _ why: Comment) throws {
        var responder = DNSResponder(authority: authority)
        let response = try #require(respond(query, responder: &responder), why)
        let message = try DNSMessage.decode(response)
        #expect(message.responseCode == .formatError, why)
        #expect(message.header.id == 0x1234 && message.header.isResponse, why)
    }

    func withCounts(question: UInt16 = 1, answer: UInt16 = 0, authority: UInt16 = 0, additional: UInt16 = 0) -> [UInt8] {
        [0x12, 0x34, 0x01, 0x00] + [question, answer, authority, additional].flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    @Test func aPointerLoopIsAFormatError() throws {
        // The name at 12 points at itself; then at a later place.
        try expectFormatError(Self.header + [0xC0, 12, 0, 1, 0, 1], "pointer to itself")
        try expectFormatError(Self.header + [1, 0x61, 0xC0, 14, 0, 1, 0, 1], "pointer forwards")
        #expect(throws: DNSError.badPointer) { try DNSMessage.decode(Self.header + [0xC0, 12, 0, 1, 0, 1]) }
    }

    @Test func aCompressedQuestionNameIsAFormatError() throws {
        // "www" then a pointer into the header: legal compression elsewhere, not in the question.
        try expectFormatError(Self.header + [3] + Array("www".utf8) + [0xC0, 4, 0, 1, 0, 1], "pointer in the question")
    }

    @Test func aPointerPastTheEndIsAFormatError() throws {
        try expectFormatError(Self.header + [1, 0x61, 0xFF, 0xFF, 0, 1, 0, 1], "pointer past the end")
        try expectFormatError(Self.header + [1, 0x61, 0xC0], "pointer cut short")
    }

    @Test func aLabelOver63IsAFormatError() throws {
        try expectFormatError(Self.header + [64] + [UInt8](repeating: 0x61, count: 64) + [0, 0, 1, 0, 1], "64-byte label")
        try expectFormatError(Self.header + [0x41, 0x61, 0, 0, 1, 0, 1], "reserved label kind 0x40")
        #expect(throws: DNSError.badLabel) { try DNSMessage.decode(Self.header + [0x80, 0, 0, 1, 0, 1]) }
    }

    @Test func aNameOver255IsAFormatError() throws {
        let name: [UInt8] = (0..<26).flatMap { _ -> [UInt8] in [9] + Array("abcdefghi".utf8) } + [0]
        try expectFormatError(Self.header + name + [0, 1, 0, 1], "260-byte name")
        #expect(throws: DNSError.nameTooLong) { try DNSMessage.decode(Self.header + name + [0, 1, 0, 1]) }
    }

    @Test func countsLargerThanTheMessageAreAFormatError() throws {
        try expectFormatError(withCounts(question: 2) + Self.question, "two questions, one present")
        try expectFormatError(withCounts(additional: 5) + Self.question, "additional records missing")
        try expectFormatError(withCounts(answer: 1) + Self.question, "an answer counted, not there")
        #expect(throws: DNSError.badCount) { try DNSMessage.decode(withCounts(answer: 65535) + Self.question) }
        try expectFormatError(withCounts(question: 0), "no question")
    }

    @Test func optInTheWrongPlaceOrTwiceIsAFormatError() throws {
        try expectFormatError(withCounts(additional: 2) + Self.question + Self.opt + Self.opt, "two OPT records")
        var named = Self.opt
        named[0] = 1
        named.insert(0x61, at: 1)
        named.insert(0, at: 2)
        try expectFormatError(withCounts(additional: 1) + Self.question + named, "OPT not at the root")
        #expect(throws: DNSError.badOPT) { try DNSMessage.decode(withCounts(answer: 1) + Self.question + Self.opt) }
        var responder = DNSResponder(authority: authority)
        let fine = try #require(respond(withCounts(additional: 1) + Self.question + Self.opt, responder: &responder))
        #expect(try DNSMessage.decode(fine).edns?.payloadSize == 1232)
    }

    @Test func emptyShortAndHugeMessagesAreDroppedOrAnswered() throws {
        var responder = DNSResponder(authority: authority)
        #expect(respond([], responder: &responder) == nil)
        #expect(respond(Array(Self.header.prefix(11)), responder: &responder) == nil)
        #expect(responder.counters.dropped == 2)
        // 65535 bytes: one question and a trailing mass of junk the counts do not cover: FORMERR,
        // as from Knot (bytes after the last record make the message malformed).
        let huge = Self.header + Self.question + [UInt8](repeating: 0xAB, count: 65535 - 12 - Self.question.count)
        let response = try DNSMessage.decode(try #require(respond(huge, responder: &responder)))
        #expect(response.responseCode == .formatError && response.questions.count == 1 && response.answers.isEmpty)
        // A response is never answered.
        var answer = Self.header + Self.question
        answer[2] |= 0x80
        #expect(respond(answer, responder: &responder) == nil)
        #expect(responder.counters.dropped == 3)
    }

    @Test func randomBytesNeverCrash() {
        var responder = DNSResponder(authority: authority)
        var random = TestBytes(seed: 53)
        for round in 0..<20_000 {
            var message = Self.header + Self.question + Self.opt
            // Flip a few bytes, or cut the message, or both.
            for _ in 0...(round % 4) { message[Int(random.next() % UInt64(message.count))] = UInt8(truncatingIfNeeded: random.next()) }
            if round % 3 == 0 { message = Array(message.prefix(Int(random.next() % UInt64(message.count + 1)))) }
            _ = respond(message, responder: &responder)
            _ = try? DNSMessage.decode(message)
        }
        #expect(responder.counters.responses + responder.counters.dropped == 20_000)
    }
}

/// Answers worked out once are copied the next time, in any case of the name, and are the same bytes.
@Suite struct DNSAnswerCacheTests {
    @Test func aRepeatedQuestionIsAnsweredFromTheCacheWithTheSameMeaning() throws {
        let text = try #require(readTextFile(DNSCodecTests.fixtures + "/example.test.zone"))
        var responder = DNSResponder(authority: DNSAuthority(zones: [try DNSZone(origin: DNSName("example.test.")!, text: text)]))
        func ask(_ name: String, _ type: DNSRecordType, edns: DNSEDNS? = nil, overTCP: Bool = false) throws -> DNSMessage {
            var query = DNSMessage()
            query.header.id = 7
            query.questions = [DNSQuestion(name: DNSName(name)!, type: type)]
            query.edns = edns
            var buffer = query.encode() + [UInt8](repeating: 0, count: 4096)
            let length = try #require(buffer.withUnsafeMutableBytes { responder.respond($0.baseAddress!, length: query.encode().count, capacity: $0.count,
                                                                                                overTCP: overTCP) })
            return try DNSMessage.decode(Array(buffer[..<length]))
        }
        for (name, type) in [("www.example.test.", DNSRecordType.a), ("nothing.example.test.", .a), ("example.test.", .mx),
                             ("x.wild.example.test.", .txt), ("foo.sub.example.test.", .a)] {
            let first = try ask(name, type)
            let again = try ask(name.uppercased(), type)
            // Names compress against the question, so they come back in its case: equal without case.
            #expect(again.answers == first.answers, "\(name)")
            #expect(again.authority == first.authority && again.additional == first.additional && again.header == first.header)
            #expect(again.questions.first?.name.description == name.uppercased(), "the query's case comes back")
            let withEDNS = try ask(name, type, edns: DNSEDNS(payloadSize: 1232))
            #expect(withEDNS.answers == first.answers && withEDNS.edns?.payloadSize == 1232)
        }
        #expect(responder.counters.cached == 10)
        // A truncated answer is never kept: the next client may take it whole.
        let small = try ask("big.example.test.", .txt)
        let large = try ask("big.example.test.", .txt, overTCP: true)
        #expect(small.header.isTruncated && !large.header.isTruncated && large.answers.count == 20)
    }

    /// The cache's key folds case eight bytes at a time exactly as `DNSWire.lower` does one byte
    /// at a time: every byte value at every place of a word, beside random ones.
    @Test func theCacheKeyFoldsCaseAsTheWireDoes() {
        var random = TestBytes(seed: 17)
        for value in 0...255 {
            for place in 0..<8 {
                var bytes = random.bytes(8)
                bytes[place] = UInt8(value)
                let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                let folded = bytes.map(DNSWire.lower).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                #expect(DNSAnswerCache.lowercased(word) == folded, "byte \(value) at \(place)")
            }
        }
        func key(_ text: String, _ type: UInt16 = 1) -> UInt64 {
            let bytes = Array(text.utf8)
            return bytes.withUnsafeBufferPointer { DNSAnswerCache.hash($0.baseAddress!, length: bytes.count, type: type) }
        }
        #expect(key("\u{4}HOST\u{4}DEEP\u{7}EXAMPLE\u{4}TEST") == key("\u{4}host\u{4}deep\u{7}example\u{4}test"))
        #expect(key("\u{4}host\u{4}deep\u{7}example\u{4}test") != key("\u{4}host\u{4}deep\u{7}example\u{4}tesu"))
        #expect(key("\u{4}host") != key("\u{4}host", 28))
    }
}

/// An answer too large for any DNS message (past 65,535 bytes over TCP) is SERVFAIL with no
/// records and no AA, as Knot answers it: a TC bit over TCP would leave the client nowhere to go.
@Suite struct DNSOversizedAnswerTests {
    @Test func anAnswerPastTheTCPLimitIsServerFailure() throws {
        let string = "\"" + String(repeating: "x", count: 250) + "\""
        var text = "$ORIGIN huge.test.\n$TTL 300\n@ SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 198.18.0.53\n"
        for index in 0..<300 { text += "big TXT \"\(index)\" \(string)\n" }
        var responder = DNSResponder(authority: DNSAuthority(zones: [try DNSZone(origin: DNSName("huge.test.")!, text: text)]))
        var query = DNSMessage()
        query.header.id = 9
        query.questions = [DNSQuestion(name: DNSName("big.huge.test.")!, type: .txt)]
        let encoded = query.encode()
        var buffer = encoded + [UInt8](repeating: 0, count: 70_000)
        let length = try #require(buffer.withUnsafeMutableBytes { responder.respond($0.baseAddress!, length: encoded.count, capacity: $0.count, overTCP: true) })
        let answer = try DNSMessage.decode(Array(buffer[..<length]))
        #expect(answer.responseCode == .serverFailure && !answer.header.isAuthoritative && !answer.header.isTruncated)
        #expect(answer.answers.isEmpty && answer.questions.count == 1)
    }
}
