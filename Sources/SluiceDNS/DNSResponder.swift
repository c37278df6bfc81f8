import SluiceCore
import SluicePackets

/// What a ``DNSResponder`` has answered, by response code, and what it dropped.
public struct DNSResponderCounters: Equatable, Sendable {
    /// Queries answered.
    public var responses: UInt64 = 0
    /// Responses by code: NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, NOTAUTH, BADVERS.
    public var byCode = [UInt64](repeating: 0, count: 8)
    /// Responses cut short with TC for the client's size limit.
    public var truncated: UInt64 = 0
    /// Responses copied from the answers already worked out (`DNSAnswerCache`).
    public var cached: UInt64 = 0
    /// Responses over the rate limit sent truncated and empty.
    public var slipped: UInt64 = 0
    /// Responses over the rate limit not sent.
    public var rateLimitedDrops: UInt64 = 0
    /// Messages not answered: shorter than a header, or responses themselves (rate limiting
    /// counts its own).
    public var dropped: UInt64 = 0

    /// Zero counts.
    public init() {}

    static func slot(_ code: DNSResponseCode) -> Int {
        switch code {
        case .notAuthorized: 6
        case .badVersion: 7
        default: min(Int(code.rawValue), 5)
        }
    }

    /// Responses with `code`.
    public func count(_ code: DNSResponseCode) -> UInt64 { byCode[Self.slot(code)] }

    /// Adds another responder's counts to these.
    public mutating func add(_ other: DNSResponderCounters) {
        responses &+= other.responses
        for index in byCode.indices { byCode[index] &+= other.byCode[index] }
        truncated &+= other.truncated
        cached &+= other.cached
        slipped &+= other.slipped
        rateLimitedDrops &+= other.rateLimitedDrops
        dropped &+= other.dropped
    }

    /// The counts as name–value pairs.
    public var fields: [(String, UInt64)] {
        [("responses", responses)]
            + zip(["noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "notauth", "badvers"], byCode).map { ($0, $1) }
            + [("truncated", truncated), ("cached", cached), ("rrl_slipped", slipped),
               ("rrl_dropped", rateLimitedDrops), ("dropped", dropped)]
    }
}

/// How a DNS server names itself to clients that ask, as Knot's `nsid`, `identity` and
/// `version` settings do; an empty field tells nothing.
public struct DNSServerIdentity: Sendable, Equatable {
    /// The name server identifier (RFC 5001) for queries with an NSID option.
    public var nsid: [UInt8]
    /// The answer to a CHAOS-class TXT query for `id.server.` or `hostname.bind.` (REFUSED when empty).
    public var name: [UInt8]
    /// The answer to a CHAOS-class TXT query for `version.server.` or `version.bind.` (REFUSED when empty).
    public var version: [UInt8]

    /// An identity; nothing told by default.
    public init(nsid: [UInt8] = [], name: [UInt8] = [], version: [UInt8] = []) {
        self.nsid = nsid
        self.name = name
        self.version = version
    }
}

/// Answers DNS queries from a ``DNSAuthority`` in the query's own buffer: the header and
/// question stay where they are (in the query's case), the sections are written after them,
/// names compressed as Knot compresses them. One per worker.
///
/// Follows what authoritative servers do (Knot's answers are the reference): responses are
/// never answered; NOTIFY and UPDATE get NOTAUTH, other opcodes NOTIMP, question or not; zone
/// transfers NOTIMP over UDP (AXFR) or NOTAUTH; a query that is not one question, has records
/// its counts do not match, has bytes after its last record, or breaks the name or OPT rules gets
/// FORMERR (with OPT when the client's was sound); an EDNS version above 0 gets BADVERS; a name
/// in no zone gets REFUSED. Over UDP a response is held to 512 bytes, or to the client's EDNS
/// size (at most ``payloadSize``); a record set that does not fit in the answer or authority
/// section, or a referral's in-domain glue that does not fit, sets TC.
public struct DNSResponder {
    /// The zones.
    public private(set) var authority: DNSAuthority
    /// The UDP payload size this server advertises and sends up to (1232, as Knot and the DNS
    /// flag day of 2020 pick).
    public var payloadSize: UInt16 = 1232
    /// What it has done.
    public private(set) var counters = DNSResponderCounters()
    /// Where reloaded zones come from, if they can be; and the generation last taken.
    let source: DNSAuthoritySource?
    var generation = 0
    let buffers = Scratch()
    var cache = DNSAnswerCache()
    /// How the server names itself to clients that ask (NSID, CHAOS TXT); nothing by default.
    public var identity = DNSServerIdentity()
    /// Response rate limiting over UDP; `nil` (the default, as in Knot) for none.
    public var rateLimiter: DNSRateLimiter?
    /// The last response's shape, for rate limiting: where its question ends, the length of
    /// the OPT record it ends with (0 for none), and what it answers (the limiter's notion of
    /// "the same answer").
    var lastQuestionEnd = DNSWire.headerLength
    var lastOPTLength = 0
    var lastAnswerKey: UInt64 = 0
    /// The code ``count(_:)`` last counted: taken back when the rate limiter drops the answer.
    var lastResponseCode = DNSResponseCode.noError

    /// The buffer a query's name is read into, allocated once.
    final class Scratch {
        let name = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        deinit { name.deallocate() }
    }

    /// A responder for `authority`.
    public init(authority: DNSAuthority) {
        self.init(authority: authority, source: nil)
    }

    /// A responder for the zones `source` has, taking the newest it publishes (a reload) before
    /// the next query.
    public init(source: DNSAuthoritySource) {
        self.init(authority: source.authority, source: source)
    }

    private init(authority: DNSAuthority, source: DNSAuthoritySource?) {
        self.authority = authority
        self.source = source
        generation = source?.generation ?? 0
    }

    /// Answers from the zones `source` published last, forgetting what it cached from those before.
    mutating func takeNewest(from source: DNSAuthoritySource) {
        generation = source.generation
        authority = source.authority
        cache = DNSAnswerCache()
    }

    /// Answers the `length`-byte query at `message`, writing the response over it (up to
    /// `capacity` bytes). Returns the response's length, or `nil` to send nothing. `client` and
    /// `now` feed the ``rateLimiter`` over UDP.
    public mutating func respond(_ message: UnsafeMutableRawPointer, length: Int, capacity: Int, overTCP: Bool = false,
                                 client: IPAddress? = nil, now: Instant = .zero) -> Int? {
        if let source, source.generation != generation { takeNewest(from: source) }
        guard let end = answer(message, length: length, capacity: capacity, overTCP: overTCP) else { return nil }
        guard !overTCP, let client, let verdict = rateLimiter?.admit(DNSRateLimiter.key(client: client, answer: lastAnswerKey), now: now)
        else { return end }
        switch verdict {
        case .send:
            return end
        case .drop:
            // Never sent: not a response, nor one of its code.
            counters.rateLimitedDrops &+= 1
            counters.responses &-= 1
            counters.byCode[DNSResponderCounters.slot(lastResponseCode)] &-= 1
            return nil
        case .slip:
            // A bare truncated answer: the header and question, and the OPT record if there was one.
            counters.slipped &+= 1
            var shortEnd = lastQuestionEnd
            if lastOPTLength > 0 {
                if end - lastOPTLength != shortEnd {
                    (message + shortEnd).copyMemory(from: message + end - lastOPTLength, byteCount: lastOPTLength)
                }
                shortEnd += lastOPTLength
            }
            var header = DNSHeader(UnsafeRawBufferPointer(start: message, count: DNSWire.headerLength))
            header.flags |= DNSHeader.truncated
            header.answerCount = 0
            header.authorityCount = 0
            header.additionalCount = lastOPTLength > 0 ? 1 : 0
            header.store(message)
            return shortEnd
        }
    }

    mutating func answer(_ message: UnsafeMutableRawPointer, length: Int, capacity: Int, overTCP: Bool) -> Int? {
        guard length >= DNSWire.headerLength, capacity >= DNSWire.headerLength else {
            counters.dropped &+= 1
            return nil
        }
        let query = UnsafeRawBufferPointer(start: message, count: length)
        let header = DNSHeader(query)
        guard !header.isResponse else {
            counters.dropped &+= 1
            return nil
        }
        var reply = DNSHeader()
        reply.id = header.id
        // The opcode and RD are copied (RFC 1035); CD is not, as Knot leaves it out: an
        // authoritative answer checks nothing.
        reply.flags = DNSHeader.response | header.flags & (0x7800 | DNSHeader.recursionDesired)
        let limit = min(capacity, overTCP ? 65535 : 512)
        // One question, its name whole as Knot wants it (a pointer there could only point into
        // the header), or none: a FORMERR or NOTIMP that still answers the client's EDNS.
        var question: (end: Int, nameLength: Int)?
        if header.questionCount > 0 {
            guard header.questionCount == 1, let (nameEnd, nameLength) = try? DNSWire.readName(query, at: 12, into: buffers.name),
                  nameEnd == 12 + nameLength, nameEnd + 4 <= length
            else { return finish(message, header: reply, code: .formatError, questionEnd: nil, edns: nil, limit: limit) }
            question = (nameEnd + 4, nameLength)
        }
        let type = question.map { DNSRecordType(rawValue: DNSWire.u16(query, $0.end - 4)) }
        guard let edns = Self.readOPT(query, from: question?.end ?? DNSWire.headerLength, count: header.additionalCount,
                                      skipping: Int(header.answerCount) + Int(header.authorityCount))
        else { return finish(message, header: reply, code: .formatError, questionEnd: question?.end, edns: nil, limit: limit) }
        var sizeLimit = limit
        var responseEDNS: DNSEDNS?
        if let clientEDNS = edns.record {
            var ours = DNSEDNS(payloadSize: payloadSize)
            ours.dnssecOK = clientEDNS.dnssecOK
            if edns.asksNSID, !identity.nsid.isEmpty { ours.options = Self.option(3, identity.nsid) }
            responseEDNS = ours
            if !overTCP { sizeLimit = min(capacity, Int(max(512, min(clientEDNS.payloadSize, payloadSize)))) }
            guard clientEDNS.version == 0 else {
                return finish(message, header: reply, code: .badVersion, questionEnd: question?.end, edns: ours, limit: sizeLimit)
            }
        }
        // A signed query: no key is known here, so NOTAUTH with the error BADKEY, unsigned (RFC 8945 5.2, 5.3.2).
        if let tsig = edns.tsig {
            guard let signature = Self.unsignedBadKey(query, tsig: tsig) else {
                return finish(message, header: reply, code: .formatError, questionEnd: question?.end, edns: responseEDNS, limit: sizeLimit)
            }
            var end = finish(message, header: reply, code: .notAuthorized, questionEnd: question?.end, edns: responseEDNS, limit: sizeLimit)
            guard end + signature.count <= limit else { return end }
            (message + end).copyMemory(from: signature, byteCount: signature.count)
            end += signature.count
            var answered = DNSHeader(UnsafeRawBufferPointer(start: message, count: end))
            answered.additionalCount += 1
            answered.store(message)
            return end
        }
        // Other opcodes, as Knot answers them: NOTIFY, and UPDATE of a zone named by its SOA
        // (RFC 2136 section 3.1.1), are not allowed; without their question they are malformed;
        // the rest are not implemented, question or not. In CHAOS nothing but a query is
        // implemented, and a class with no zones here (not IN or ANY) is refused.
        let questionClass = question.map { DNSWire.u16(query, $0.end - 2) }
        guard header.opcode == 0 else {
            let code: DNSResponseCode = switch (header.opcode, questionClass ?? 1) {
            case (_, 3): .notImplemented
            case (_, let other) where other != 1 && other != 255: .refused
            case (4, _): type == nil ? .formatError : .notAuthorized
            case (5, _): type == .soa ? .notAuthorized : .formatError
            default: .notImplemented
            }
            return finish(message, header: reply, code: code, questionEnd: question?.end, edns: responseEDNS, limit: sizeLimit)
        }
        // A plain query has its question; records in its answer and authority sections (well
        // formed, as read above) are passed over, as Knot does.
        guard let (questionEnd, nameLength) = question, let type, let recordClass = questionClass else { return finish(message, header: reply, code: .formatError, questionEnd: question?.end, edns: responseEDNS, limit: sizeLimit) }
        if recordClass == 3 {
            // CHAOS has no zones to transfer, and TYPE0 is reserved: Knot answers NOTIMP.
            if type.rawValue == 0 || type == .axfr || type == .ixfr {
                return finish(message, header: reply, code: .notImplemented, questionEnd: questionEnd, edns: responseEDNS, limit: sizeLimit)
            }
            return chaos(message, header: reply, type: type, questionEnd: questionEnd, nameLength: nameLength, edns: responseEDNS,
                         limit: sizeLimit)
        }
        guard recordClass == 1 || recordClass == 255 else {
            return finish(message, header: reply, code: .refused, questionEnd: questionEnd, edns: responseEDNS, limit: sizeLimit)
        }
        // TYPE0 is reserved (RFC 6895 section 3.1): Knot answers NOTIMP.
        guard type.rawValue != 0 else {
            return finish(message, header: reply, code: .notImplemented, questionEnd: questionEnd, edns: responseEDNS, limit: sizeLimit)
        }
        // DO asks for a different answer from a signed zone: it is part of the cache's key.
        let dnssec = responseEDNS?.dnssecOK ?? false
        let key = DNSAnswerCache.hash(buffers.name, length: nameLength, type: type.rawValue) ^ (dnssec ? DNSAnswerCache.dnssecKey : 0)
        // A query for the zone's expire timer (RFC 7314) is answered the long way, which knows the zone.
        let asksExpire = edns.asksExpire && responseEDNS != nil
        if recordClass == 1, !asksExpire, let entry = cache.lookup(buffers.name, length: nameLength, type: type.rawValue, dnssec: dnssec, hash: key),
           let end = answerFromCache(entry, message, header: reply, questionEnd: questionEnd, edns: responseEDNS, limit: sizeLimit) {
            remember(questionEnd: questionEnd, optLength: Self.optLength(responseEDNS), answer: entry.pointee.limitKey)
            return end
        }
        let name = DNSName(validatedWire: Array(UnsafeBufferPointer(start: buffers.name, count: nameLength)))
        // Zone transfers are not served: AXFR over UDP does not exist, the rest is not allowed, as Knot
        // answers without a transfer ACL.
        if type == .axfr || type == .ixfr {
            let code: DNSResponseCode = type == .axfr && !overTCP ? .notImplemented : .notAuthorized
            return finish(message, header: reply, code: code, questionEnd: questionEnd, edns: responseEDNS, limit: sizeLimit)
        }
        guard let answer = authority.answer(name, type, dnssec: dnssec) else {
            // With EDNS, Knot says why: Extended DNS Error 20, not authoritative (RFC 8914).
            var refusal = responseEDNS
            refusal?.options += Self.option(15, [0, 20])
            return finish(message, header: reply, code: .refused, questionEnd: questionEnd, edns: refusal, limit: sizeLimit)
        }
        if answer.responseCode == .serverFailure {
            // A zone whose file did not load: Knot says why, Extended DNS Error 24 (invalid data).
            var failure = responseEDNS
            failure?.options += Self.option(15, [0, 24])
            return finish(message, header: reply, code: .serverFailure, questionEnd: questionEnd, edns: failure, limit: sizeLimit)
        }
        if answer.authoritative { reply.flags |= DNSHeader.authoritative }
        // A primary's expire timer is its SOA's expire (RFC 7314 section 3), as Knot sends it
        // for every answer from a zone.
        if asksExpire, let zone = authority.zone(for: name, type: type),
           case let .soa(_, _, _, _, _, expire, _) = zone.soa.data {
            responseEDNS?.options += Self.option(9, withUnsafeBytes(of: expire.bigEndian) { Array($0) })
        }
        var writer = DNSWriter(base: message, capacity: sizeLimit - Self.optLength(responseEDNS), count: questionEnd)
        writer.compressAgainstQuestion()
        var sets = DNSSetWriter()
        var counts: [UInt16] = [0, 0, 0]
        var truncated = false
        var glueCut = false
        // Everything written: the bytes can answer the same question again, whatever its size limit.
        var complete = true
        for (section, records) in [answer.answers, answer.authority, answer.additional].enumerated() where !truncated {
            // Record sets go whole or not at all.
            var setStart = writer.count
            var setCount = counts[section]
            var setIndex = 0
            var skipping = false
            for (index, record) in records.enumerated() {
                if index == 0 || !record.isInSet(of: records[index - 1]) {
                    setStart = writer.count
                    setCount = counts[section]
                    setIndex = index
                    skipping = false
                    sets.beginSet(record, section: section)
                }
                if skipping { continue }
                if sets.write(record, to: &writer) {
                    counts[section] += 1
                    continue
                }
                writer.rewind(to: setStart)
                sets.dropSet()
                counts[section] = setCount
                complete = false
                // RRSIGs close their section: in the additional section (where RFC 4035 section
                // 3.1 makes them optional), those that do not fit are left out without TC, as Knot does.
                if record.type == .rrsig && section == 2 { break }
                // Short of room in the answer or authority, the client should ask over TCP (RFC
                // 2181 section 9), and nothing more is written; an additional set is left out and
                // the next ones tried, as Knot fills the section, with TC when it was a referral's
                // in-domain glue (RFC 9471).
                truncated = section < 2
                if truncated { break }
                glueCut = glueCut || setIndex < answer.requiredAdditional
                skipping = true
            }
        }
        // Over TCP an answer past 65,535 bytes has nowhere to go: SERVFAIL, as Knot answers, not
        // a TC no client can act on.
        if truncated, overTCP {
            reply.flags &= ~DNSHeader.authoritative
            return finish(message, header: reply, code: .serverFailure, questionEnd: questionEnd, edns: responseEDNS, limit: sizeLimit)
        }
        if truncated || glueCut {
            reply.flags |= DNSHeader.truncated
            counters.truncated &+= 1
        }
        reply.questionCount = 1
        reply.answerCount = counts[0]
        reply.authorityCount = counts[1]
        reply.additionalCount = counts[2]
        let tailEnd = writer.count
        var end = tailEnd
        reply.flags |= answer.responseCode.rawValue & 0xF
        if let responseEDNS {
            var opt = DNSWriter(base: message, capacity: sizeLimit, count: end)
            if DNSMessage.writeOPT(responseEDNS, to: &opt) {
                end = opt.count
                reply.additionalCount += 1
            }
        }
        reply.store(message)
        count(answer.responseCode)
        // One answer to the rate limiter, classed as Knot's rrl module classes it: NXDOMAIN and
        // wildcard answers by zone (a flood of random names is one answer), the rest by the name
        // asked, whatever the type, apart for ANY, the DNSSEC types and empty answers.
        let limitKey: UInt64
        if answer.responseCode == .nameError || answer.synthesized {
            limitKey = DNSWire.hash(authority.zone(for: name)?.origin.wire ?? [0]) ^ (answer.synthesized ? 5 : 3)
        } else {
            let category: UInt64 = type == .any ? 0x40 : [.dnskey, .rrsig, .ds].contains(type) ? 0x80 : answer.answers.isEmpty ? 0x8 : 0x1
            limitKey = DNSAnswerCache.hash(buffers.name, length: nameLength, type: 0) ^ category << 56
        }
        remember(questionEnd: questionEnd, optLength: Self.optLength(responseEDNS), answer: limitKey)
        if complete, recordClass == 1 {
            cache.store(hash: key, type: type.rawValue, dnssec: dnssec, name: buffers.name, length: nameLength, limitKey: limitKey,
                        flags: reply.flags & (DNSHeader.authoritative | 0xF), counts: (counts[0], counts[1], counts[2]),
                        tail: UnsafeRawBufferPointer(start: message + questionEnd, count: tailEnd - questionEnd))
        }
        return end
    }

    /// A CHAOS-class query, as Knot answers it: TXT for the server's name or version (``identity``)
    /// by their customary names (not authoritative, TTL 0), REFUSED for everything else.
    mutating func chaos(_ message: UnsafeMutableRawPointer, header: DNSHeader, type: DNSRecordType, questionEnd: Int,
                        nameLength: Int, edns: DNSEDNS?, limit: Int) -> Int {
        let name = DNSName(validatedWire: Array(UnsafeBufferPointer(start: buffers.name, count: nameLength)))
        let text: [UInt8] = switch name.description.lowercased() {
        case "id.server.", "hostname.bind.": identity.name
        case "version.server.", "version.bind.": identity.version
        default: []
        }
        guard type == .txt, !text.isEmpty else {
            return finish(message, header: header, code: .refused, questionEnd: questionEnd, edns: edns, limit: limit)
        }
        let strings = stride(from: 0, to: text.count, by: 255).map { Array(text[$0..<min($0 + 255, text.count)]) }
        let record = DNSRecord(name: name, type: .txt, ttl: 0, data: .txt(strings), recordClass: 3)
        var writer = DNSWriter(base: message, capacity: limit - Self.optLength(edns), count: questionEnd)
        writer.compressAgainstQuestion()
        guard record.write(to: &writer) else {
            var truncated = header
            truncated.flags |= DNSHeader.truncated
            return finish(message, header: truncated, code: .noError, questionEnd: questionEnd, edns: edns, limit: limit)
        }
        var reply = header
        reply.answerCount = 1
        return finish(message, header: reply, code: .noError, questionEnd: questionEnd, edns: edns, limit: limit, end: writer.count)
    }

    /// Answers from the cache `entry` when it fits in `limit` with the OPT record; `nil` when it
    /// does not (the slow path truncates).
    mutating func answerFromCache(_ entry: UnsafeMutablePointer<DNSAnswerCache.Entry>, _ message: UnsafeMutableRawPointer,
                                  header: DNSHeader, questionEnd: Int, edns: DNSEDNS?, limit: Int) -> Int? {
        let tail = DNSAnswerCache.tail(entry)
        var end = questionEnd + tail.count
        guard end + Self.optLength(edns) <= limit else { return nil }
        (message + questionEnd).copyMemory(from: tail.baseAddress!, byteCount: tail.count)
        var reply = header
        reply.flags |= entry.pointee.flags
        reply.questionCount = 1
        reply.answerCount = entry.pointee.answerCount
        reply.authorityCount = entry.pointee.authorityCount
        reply.additionalCount = entry.pointee.additionalCount
        if let edns {
            Self.storeOPT(edns, at: message + end)
            end += Self.optLength(edns)
            reply.additionalCount += 1
        }
        reply.store(message)
        counters.cached &+= 1
        count(DNSResponseCode(rawValue: entry.pointee.flags & 0xF))
        return end
    }

    /// Writes the OPT record of `edns` (``optLength(_:)`` bytes) at `pointer`.
    static func storeOPT(_ edns: DNSEDNS, at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: UInt8(0), as: UInt8.self)
        pointer.storeBytes(of: DNSRecordType.opt.rawValue.bigEndian, toByteOffset: 1, as: UInt16.self)
        pointer.storeBytes(of: edns.payloadSize.bigEndian, toByteOffset: 3, as: UInt16.self)
        let ttl = UInt32(edns.extendedResponseCode) << 24 | UInt32(edns.version) << 16 | (edns.dnssecOK ? 0x8000 : 0)
        pointer.storeBytes(of: ttl.bigEndian, toByteOffset: 5, as: UInt32.self)
        pointer.storeBytes(of: UInt16(edns.options.count).bigEndian, toByteOffset: 9, as: UInt16.self)
        edns.options.withUnsafeBytes { if let bytes = $0.baseAddress { (pointer + 11).copyMemory(from: bytes, byteCount: $0.count) } }
    }

    /// The bytes the OPT record of `edns` takes: 11 and its options; 0 for none.
    static func optLength(_ edns: DNSEDNS?) -> Int { edns.map { 11 + $0.options.count } ?? 0 }

    /// An EDNS option: its code, its length and `data`.
    static func option(_ code: UInt16, _ data: [UInt8]) -> [UInt8] {
        [UInt8(code >> 8), UInt8(code & 0xFF), UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
    }

    mutating func count(_ code: DNSResponseCode) {
        counters.responses &+= 1
        counters.byCode[DNSResponderCounters.slot(code)] &+= 1
        lastResponseCode = code
    }

    /// A response with no records (or those the caller wrote up to `end`): `code`, the question
    /// when it was read, and OPT when asked for.
    mutating func finish(_ message: UnsafeMutableRawPointer, header: DNSHeader, code: DNSResponseCode, questionEnd: Int?,
                         edns: DNSEDNS?, limit: Int, end recordsEnd: Int? = nil) -> Int {
        var header = header
        header.flags |= code.rawValue & 0xF
        header.questionCount = questionEnd == nil ? 0 : 1
        var end = recordsEnd ?? questionEnd ?? DNSWire.headerLength
        let optStart = end
        if var edns {
            edns.extendedResponseCode = UInt8(code.rawValue >> 4)
            var writer = DNSWriter(base: message, capacity: limit, count: end)
            if DNSMessage.writeOPT(edns, to: &writer) {
                end = writer.count
                header.additionalCount += 1
            }
        }
        header.store(message)
        count(code)
        remember(questionEnd: questionEnd ?? DNSWire.headerLength, optLength: end - optStart, answer: UInt64(code.rawValue))
        return end
    }

    mutating func remember(questionEnd: Int, optLength: Int, answer: UInt64) {
        lastQuestionEnd = questionEnd
        lastOPTLength = optLength
        lastAnswerKey = answer
    }

    /// The TSIG record that answers a signed query for a key this server does not have: the
    /// query's key and algorithm names, time and fudge, no MAC, its original ID, error BADKEY
    /// (RFC 8945 sections 4.2, 5.3.2); `nil` when the query's TSIG is malformed.
    static func unsignedBadKey(_ query: UnsafeRawBufferPointer, tsig: Int) -> [UInt8]? {
        guard let (keyName, ownerEnd) = try? DNSWire.name(query, at: tsig), ownerEnd + 10 <= query.count,
              DNSWire.u16(query, ownerEnd + 2) == 255 else { return nil }
        let dataStart = ownerEnd + 10
        let dataEnd = dataStart + Int(DNSWire.u16(query, ownerEnd + 8))
        guard let (algorithm, algorithmEnd) = try? DNSWire.name(query, at: dataStart), algorithmEnd + 10 <= dataEnd else { return nil }
        let macEnd = algorithmEnd + 10 + Int(DNSWire.u16(query, algorithmEnd + 8))
        guard macEnd + 6 <= dataEnd, macEnd + 6 + Int(DNSWire.u16(query, macEnd + 4)) == dataEnd else { return nil }
        var data = algorithm.wire + Array(query[algorithmEnd..<algorithmEnd + 8]) + [0, 0] + Array(query[macEnd..<macEnd + 2])
        data += [0, 17, 0, 0]
        return keyName.wire + [0, 250, 0, 255, 0, 0, 0, 0, UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
    }

    /// The OPT record among `count` additional records from `offset`, after `skipping` records of
    /// the answer and authority sections: `record` nil when there is none; `nil` altogether when
    /// the records are malformed, bytes follow the last one, or OPT breaks its rules (RFC 6891:
    /// one, owned by the root, in the additional section, its options filling its data exactly),
    /// a record's data does not have its type's shape (``DNSRecordShape``, as Knot checks), or a
    /// TSIG record is not the last (RFC 8945 section 5.1). `tsig`: where a TSIG record starts;
    /// `asksNSID`, `asksExpire`: whether the OPT record carries those options.
    static func readOPT(_ query: UnsafeRawBufferPointer, from offset: Int, count: UInt16, skipping: Int = 0)
        -> (record: DNSEDNS?, tsig: Int?, asksNSID: Bool, asksExpire: Bool)? {
        var position = offset
        var found: DNSEDNS?
        var tsig: Int?
        var asksNSID = false
        var asksExpire = false
        for index in 0..<(skipping + Int(count)) {
            guard let (end, nameLength) = try? DNSWire.readName(query, at: position), end + 10 <= query.count else { return nil }
            let type = DNSRecordType(rawValue: DNSWire.u16(query, end))
            let length = Int(DNSWire.u16(query, end + 8))
            guard end + 10 + length <= query.count,
                  DNSRecordShape.isWellFormed(query, type: type.rawValue, recordClass: DNSWire.u16(query, end + 2),
                                              start: end + 10, length: length) else { return nil }
            if type.rawValue == 250 {
                guard index >= skipping, index == skipping + Int(count) - 1 else { return nil }
                tsig = position
            }
            if type == .opt {
                guard found == nil, nameLength == 1, index >= skipping else { return nil }
                var edns = DNSEDNS(payloadSize: DNSWire.u16(query, end + 2))
                let ttl = DNSWire.u32(query, end + 4)
                edns.extendedResponseCode = UInt8(ttl >> 24)
                edns.version = UInt8((ttl >> 16) & 0xFF)
                edns.dnssecOK = ttl & 0x8000 != 0
                found = edns
                var option = end + 10
                while option + 4 <= end + 10 + length {
                    switch DNSWire.u16(query, option) {
                    case 3: asksNSID = true
                    case 9: asksExpire = true
                    default: break
                    }
                    option += 4 + Int(DNSWire.u16(query, option + 2))
                }
                guard option == end + 10 + length else { return nil }
            }
            position = end + 10 + length
        }
        guard position == query.count else { return nil }
        return (found, tsig, asksNSID, asksExpire)
    }
}
