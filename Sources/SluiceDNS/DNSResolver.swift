import SluiceCore
import SluicePackets

/// What a resolution found.
public struct DNSResolution: Sendable, Equatable {
    /// The name that answered (the question after the search list).
    public var name: DNSName
    public var type: DNSRecordType
    /// NOERROR (with or without records) or NXDOMAIN.
    public var responseCode: DNSResponseCode
    /// The answer section: CNAMEs followed, then the records asked for.
    public var answers: [DNSRecord]
    /// The authority section (the SOA of a negative answer).
    public var authority: [DNSRecord]
    /// Where it came from: a server, the cache, or `hosts(5)`.
    public var source: Source

    public enum Source: Sendable, Equatable {
        case server(IPEndpoint, overTCP: Bool)
        case cache
        case hosts
    }

    /// A resolution of `type` records of `name`, from what `source` gave.
    public init(name: DNSName, type: DNSRecordType, responseCode: DNSResponseCode, answers: [DNSRecord], authority: [DNSRecord],
                source: Source) {
        self.name = name
        self.type = type
        self.responseCode = responseCode
        self.answers = answers
        self.authority = authority
        self.source = source
    }

    /// The records of the type asked for at the end of the CNAME chain from ``name`` (records
    /// of other owners in the answer section are not the answer).
    public var records: [DNSRecord] {
        let owner = cnameChain.last.flatMap { record -> DNSName? in if case .name(let target) = record.data { target } else { nil } } ?? name
        // ANY (RFC 8482 allows a server any subset) is answered by whatever the name has.
        return answers.filter { ($0.type == type || type == .any) && $0.name == owner }
    }

    /// The answer section as `dig +short` would print it for a stub's question: the CNAMEs on
    /// the chain from ``name``, then ``records``; records of other owners are left out, as
    /// glibc leaves them out (RFC 2181 section 5.4.1).
    public var chainAnswers: [DNSRecord] { cnameChain + records }

    /// The CNAMEs followed from ``name`` (16 at most), none when CNAME or ANY was asked.
    var cnameChain: [DNSRecord] {
        var owner = name
        var chain: [DNSRecord] = []
        for _ in 0..<16 where type != .cname && type != .any {
            guard let cname = answers.first(where: { $0.type == .cname && $0.name == owner }), case .name(let target) = cname.data
            else { break }
            chain.append(cname)
            owner = target
        }
        return chain
    }
}

/// Why a resolution failed.
public enum DNSResolverError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No server answered within the timeout, over every attempt.
    case timedOut(DNSName)
    /// No server could be reached: each refused the connection (ICMP port unreachable over UDP,
    /// a reset over TCP) or stayed silent, and at least one refused.
    case unreachable(DNSName)
    /// No usable answer came: what came back with a query's ID could not be read as a DNS
    /// response to it (a broken message, or another question), and was ignored.
    case malformedReply(DNSName)
    /// Every server answered with an error (SERVFAIL, REFUSED, …).
    case failed(DNSName, DNSResponseCode)
    /// The last exchange failed for the reason given: a network the host has no route to, a TCP
    /// connection closed or refused after a truncated answer, a TCP reply to another query.
    case exchangeFailed(DNSName, String)
    /// No server is configured.
    case noServers
    /// The name cannot be a domain name.
    case badName(String)

    public var description: String {
        switch self {
        case .timedOut(let name): "no answer for \(name) from any server in time"
        case .unreachable(let name): "no server could be reached for \(name): connection refused (is a name server listening there?)"
        case .malformedReply(let name):
            "no usable answer for \(name): the replies that came could not be read as answers to the query (malformed); tcpdump or kdig shows them"
        case .failed(let name, let code): "the servers answered \(code) for \(name)"
        case .exchangeFailed(let name, let reason): "no answer for \(name): \(reason)"
        case .noServers: "no name server is configured: give one (a nameserver line in resolv.conf, or DNSResolverConfiguration.servers)"
        case .badName(let text): "\(text) is not a domain name"
        }
    }
}

/// A stub resolver, sans I/O (as quinn-proto and the stages are): the caller sends what
/// ``pollTransmit()`` gives, feeds what arrives to ``handleResponse(_:from:overTCP:now:)``,
/// runs ``handleTimeout(now:)`` at ``pollTimeout()``, and takes results from ``pollResult()``.
///
/// `hosts(5)` first, then a TTL cache (negative answers too, RFC 2308), then the servers of
/// `resolv.conf(5)` in order (or from a random one), each attempt with a random ID (the caller's socket
/// gives the random source port); a response counts only with the ID, question and server of a
/// query in flight; TC is retried over TCP; SERVFAIL and REFUSED move to the next server, and a
/// FORMERR without the question (a server that knows no EDNS) is asked again without EDNS; as in
/// glibc, NXDOMAIN, NODATA and SERVFAIL from every server move to the next name of the search
/// list, as does any failure of the name as given when it comes first; a refusal or silence
/// later ends it, and the first NODATA (else NXDOMAIN) found is the answer when no name has records.
public struct DNSResolver {
    /// One resolution in progress.
    public struct QueryID: Hashable, Sendable {
        let value: Int
    }

    /// A message to send.
    public struct Transmit: Sendable {
        public var query: QueryID
        public var server: IPEndpoint
        /// The message (without the TCP length prefix).
        public var message: [UInt8]
        public var overTCP: Bool
    }

    struct Query {
        var id: QueryID
        var type: DNSRecordType
        var candidates: [DNSName]
        /// The first candidate is the name as given, with search domains after it.
        var asGivenFirst = false
        /// The current server answered FORMERR to EDNS: asked again without it.
        var withoutEDNS = false
        var candidate = 0
        /// Sends so far for this candidate (servers × attempts).
        var tries = 0
        var firstServer = 0
        var messageID: UInt16 = 0
        var server = IPEndpoint(address: .v4(.any), port: 0)
        var overTCP = false
        var deadline = Instant.zero
        var lastError: DNSResponseCode?
        /// A server refused the connection (no error answered since).
        var refused = false
        /// A reply with this attempt's ID came that could not be read, or asked another question.
        var malformed = false
        /// Why the last exchange failed, when more is known than silence.
        var failure: String?
        /// The first NXDOMAIN and the first NODATA of the search list: the answer when no later
        /// name has records (NODATA first, as glibc).
        var nameError: DNSResolution?
        var noData: DNSResolution?
    }

    struct CacheEntry {
        var resolution: DNSResolution
        var stored: Instant
        var expires: Instant
    }

    /// What it asks and how.
    public let configuration: DNSResolverConfiguration
    var queries: [Query] = []
    var outbox: [Transmit] = []
    var results: [(QueryID, Result<DNSResolution, DNSResolverError>)] = []
    var cache: [DNSQuestion: CacheEntry] = [:]
    var nextQuery = 0
    /// Entries the cache keeps at most.
    public static let cacheLimit = 4096

    /// A resolver for `configuration`.
    public init(configuration: DNSResolverConfiguration) {
        self.configuration = configuration
    }

    /// Starts resolving `type` records of `name`; the result comes from ``pollResult()``.
    @discardableResult
    public mutating func resolve(_ name: String, _ type: DNSRecordType, now: Instant) -> QueryID {
        let id = QueryID(value: nextQuery)
        nextQuery += 1
        // An internationalized name is asked in its ASCII form, as kdig asks it.
        let ascii = name.isEmpty ? nil : DNSPunycode.asciiName(name)
        let (candidates, asGivenFirst) = ascii.map { configuration.candidateList($0) } ?? ([], false)
        guard let ascii, !candidates.isEmpty else {
            results.append((id, .failure(.badName(name))))
            return id
        }
        // hosts(5) as glibc's "files" reads it: the name as given, no search list, and only when
        // it lists an address of the family asked (else DNS is asked).
        if type == .a || type == .aaaa, let asGiven = DNSName(ascii.hasSuffix(".") ? ascii : ascii + "."),
           let addresses = configuration.hosts[asGiven] {
            let records = addresses.compactMap { address -> DNSRecord? in
                switch (address, type) {
                case (.v4(let v4), .a): DNSRecord(name: asGiven, type: .a, ttl: 0, data: .a(v4))
                case (.v6(let v6), .aaaa): DNSRecord(name: asGiven, type: .aaaa, ttl: 0, data: .aaaa(v6))
                default: nil
                }
            }
            if !records.isEmpty {
                results.append((id, .success(DNSResolution(name: asGiven, type: type, responseCode: .noError, answers: records,
                                                          authority: [], source: .hosts))))
                return id
            }
        }
        var query = Query(id: id, type: type, candidates: candidates)
        query.asGivenFirst = asGivenFirst
        guard !configuration.servers.isEmpty else {
            results.append((id, .failure(.noServers)))
            return id
        }
        if configuration.rotates { query.firstServer = Int.random(in: 0..<configuration.servers.count) }
        return advance(&query, now: now)
    }

    /// Answers the current candidate from the cache, or sends it; moves on past cached NXDOMAINs.
    mutating func advance(_ query: inout Query, now: Instant) -> QueryID {
        while query.candidate < query.candidates.count {
            let question = DNSQuestion(name: query.candidates[query.candidate], type: query.type)
            guard let entry = cache[question], entry.expires > now else { break }
            var resolution = entry.resolution
            resolution.source = .cache
            // What is left of each TTL.
            let elapsed = UInt32(clamping: (now - entry.stored).nanosecondsClamped / 1_000_000_000)
            resolution.answers = resolution.answers.map { var record = $0; record.ttl -= min(record.ttl, elapsed); return record }
            resolution.authority = resolution.authority.map { var record = $0; record.ttl -= min(record.ttl, elapsed); return record }
            if resolution.responseCode == .nameError && query.candidate + 1 < query.candidates.count {
                if query.nameError == nil { query.nameError = resolution }
                query.candidate += 1
                continue
            }
            results.append((query.id, .success(resolution)))
            return query.id
        }
        send(&query, now: now, overTCP: false)
        queries.append(query)
        return query.id
    }

    mutating func send(_ query: inout Query, now: Instant, overTCP: Bool, sameServer: Bool = false) {
        let servers = configuration.servers
        if !sameServer {
            query.server = servers[(query.firstServer + query.tries) % servers.count]
            query.withoutEDNS = false
        }
        query.messageID = UInt16.random(in: 0...UInt16.max)
        query.overTCP = overTCP
        query.deadline = now + (overTCP ? configuration.timeout * 2 : configuration.timeout)
        var message = DNSMessage()
        message.header.id = query.messageID
        message.header.flags = DNSHeader.recursionDesired
        message.questions = [DNSQuestion(name: query.candidates[query.candidate], type: query.type)]
        if !query.withoutEDNS { message.edns = DNSEDNS(payloadSize: 1232) }
        outbox.append(Transmit(query: query.id, server: query.server, message: message.encode(), overTCP: overTCP))
    }

    /// The next message to send, if any.
    public mutating func pollTransmit() -> Transmit? {
        outbox.isEmpty ? nil : outbox.removeFirst()
    }

    /// The next finished resolution, if any.
    public mutating func pollResult() -> (QueryID, Result<DNSResolution, DNSResolverError>)? {
        results.isEmpty ? nil : results.removeFirst()
    }

    /// The next message to send for `query` only (for callers that share one resolver).
    public mutating func pollTransmit(for query: QueryID) -> Transmit? {
        outbox.firstIndex { $0.query == query }.map { outbox.remove(at: $0) }
    }

    /// The result of `query`, once finished.
    public mutating func takeResult(_ query: QueryID) -> Result<DNSResolution, DNSResolverError>? {
        results.firstIndex { $0.0 == query }.map { results.remove(at: $0).1 }
    }

    /// When ``handleTimeout(now:)`` is next due.
    public func pollTimeout() -> Instant? {
        queries.map(\.deadline).min()
    }

    /// Takes in a response from `server`; anything that matches no query in flight (ID,
    /// question, server, transport) is ignored.
    public mutating func handleResponse(_ bytes: [UInt8], from server: IPEndpoint, overTCP: Bool, now: Instant) {
        func sentThis(_ query: Query, id: UInt16) -> Bool {
            query.messageID == id && query.server == server && query.overTCP == overTCP
        }
        guard let message = try? DNSMessage.decode(bytes), message.header.isResponse else {
            // Ignored, as glibc does, but remembered for the error; over TCP the exchange is over.
            if bytes.count >= 2 { noteMalformed(id: UInt16(bytes[0]) << 8 | UInt16(bytes[1]), matching: sentThis, overTCP: overTCP, now: now) }
            return
        }
        func sentThis(_ query: Query) -> Bool { sentThis(query, id: message.header.id) }
        // A server that knows no EDNS may answer FORMERR without the question (RFC 6891 section
        // 7): asked again without it, as kdig and BIND's resolver do.
        if message.responseCode == .formatError, message.questions.isEmpty,
           let index = queries.firstIndex(where: { sentThis($0) && !$0.withoutEDNS }) {
            var query = queries.remove(at: index)
            query.withoutEDNS = true
            send(&query, now: now, overTCP: overTCP, sameServer: true)
            queries.append(query)
            return
        }
        guard let index = queries.firstIndex(where: { query in
                  sentThis(query) && message.questions.count == 1 && message.questions[0].name == query.candidates[query.candidate]
                      && message.questions[0].type == query.type
              })
        else {
            noteMalformed(id: message.header.id, matching: sentThis, overTCP: overTCP, now: now)
            return
        }
        var query = queries.remove(at: index)
        if message.header.isTruncated && !overTCP {
            send(&query, now: now, overTCP: true)
            queries.append(query)
            return
        }
        let code = message.responseCode
        guard code == .noError || code == .nameError else {
            query.lastError = code
            retry(&query, now: now)
            return
        }
        let resolution = DNSResolution(name: query.candidates[query.candidate], type: query.type, responseCode: code,
                                       answers: message.answers, authority: message.authority,
                                       source: .server(server, overTCP: overTCP))
        remember(resolution, now: now)
        // NXDOMAIN and NODATA go on down the search list; what is found first is the answer.
        let noRecords = code == .nameError || resolution.records.isEmpty
        if noRecords && query.candidate + 1 < query.candidates.count {
            if code == .nameError, query.nameError == nil { query.nameError = resolution }
            if code == .noError, query.noData == nil { query.noData = resolution }
            query.candidate += 1
            query.tries = 0
            query.lastError = nil
            _ = advance(&query, now: now)
            return
        }
        results.append((query.id, .success(noRecords ? query.noData ?? query.nameError ?? resolution : resolution)))
    }

    mutating func noteMalformed(id: UInt16, matching sent: (Query, UInt16) -> Bool, overTCP: Bool, now: Instant) {
        guard let index = queries.firstIndex(where: { sent($0, id) }) else { return }
        queries[index].malformed = true
        if overTCP {
            var query = queries.remove(at: index)
            retry(&query, now: now)
        }
    }

    /// Takes in that `server` refused the connection (`ECONNREFUSED` on a connected UDP socket,
    /// or a TCP connection reset or refused): its attempts in flight move on now, as glibc's do,
    /// instead of waiting out the timeout.
    public mutating func handleUnreachable(_ server: IPEndpoint, overTCP: Bool, reason: String? = nil, now: Instant) {
        moveOn(from: server, overTCP: overTCP, refused: true, reason: reason, now: now)
    }

    /// Takes in that an exchange with `server` failed without an answer (a TCP connection
    /// closed before the reply was whole, a network with no route): its attempts in flight move
    /// on now, as glibc's do; `reason`, if the last, is what the failure says.
    public mutating func handleFailure(_ server: IPEndpoint, overTCP: Bool, reason: String? = nil, now: Instant) {
        moveOn(from: server, overTCP: overTCP, refused: false, reason: reason, now: now)
    }

    /// Takes in that a TCP exchange with `server` is over (one query, one reply, RFC 7766 aside):
    /// the attempt sent as `messageID`, if a reply to something else left it waiting, moves on now.
    public mutating func handleExchangeEnded(_ server: IPEndpoint, messageID: UInt16, now: Instant) {
        guard let index = queries.firstIndex(where: { $0.server == server && $0.overTCP && $0.messageID == messageID }) else { return }
        var query = queries.remove(at: index)
        query.failure = "the reply over TCP from \(server) answered another query (its ID or question differ)"
        retry(&query, now: now)
    }

    mutating func moveOn(from server: IPEndpoint, overTCP: Bool, refused: Bool, reason: String? = nil, now: Instant) {
        let failed = queries.filter { $0.server == server && $0.overTCP == overTCP }
        queries.removeAll { $0.server == server && $0.overTCP == overTCP }
        for var query in failed {
            if refused { query.refused = true }
            query.failure = reason
            retry(&query, now: now)
        }
    }

    /// Gives up on the attempts whose time ran out: each goes to the next server, or fails.
    public mutating func handleTimeout(now: Instant) {
        let expired = queries.filter { $0.deadline <= now }
        queries.removeAll { $0.deadline <= now }
        for var query in expired {
            query.failure = nil
            retry(&query, now: now)
        }
    }

    mutating func retry(_ query: inout Query, now: Instant) {
        query.tries += 1
        guard query.tries < configuration.servers.count * configuration.attempts else {
            let name = query.candidates[query.candidate]
            // Every server failed this name (SERVFAIL), or the name as given, tried first, failed
            // any way but a refused connection: the search list goes on, as glibc's does; a
            // refusal or silence later ends it.
            let asGivenFailed = query.candidate == 0 && query.asGivenFirst && !query.refused
            if query.lastError == .serverFailure || asGivenFailed, query.candidate + 1 < query.candidates.count {
                query.candidate += 1
                query.tries = 0
                query.lastError = nil
                _ = advance(&query, now: now)
                return
            }
            if let found = query.noData ?? query.nameError {
                results.append((query.id, .success(found)))
            } else {
                let silent: DNSResolverError = if let failure = query.failure { .exchangeFailed(name, failure) } else {
                    query.refused ? .unreachable(name) : query.malformed ? .malformedReply(name) : .timedOut(name)
                }
                results.append((query.id, .failure(query.lastError.map { .failed(name, $0) } ?? silent)))
            }
            return
        }
        send(&query, now: now, overTCP: false)
        queries.append(query)
    }

    /// Keeps `resolution` for the least TTL of its answers, or a negative one for the SOA's
    /// TTL capped by its minimum (RFC 2308 section 5).
    mutating func remember(_ resolution: DNSResolution, now: Instant) {
        var ttl: UInt32?
        if resolution.responseCode == .nameError || resolution.records.isEmpty {
            ttl = resolution.authority.compactMap { record -> UInt32? in
                guard case let .soa(_, _, _, _, _, _, minimum) = record.data else { return nil }
                return min(record.ttl, minimum)
            }.first
        } else {
            ttl = resolution.answers.map(\.ttl).min()
        }
        // RFC 2181 section 8: a TTL with the top bit set is 0; and a week at most.
        if let value = ttl { ttl = value >= 1 << 31 ? 0 : min(value, 604_800) }
        guard let ttl, ttl > 0 else { return }
        if cache.count >= Self.cacheLimit {
            cache = cache.filter { $0.value.expires > now }
            if cache.count >= Self.cacheLimit { cache.removeAll() }
        }
        cache[DNSQuestion(name: resolution.name, type: resolution.type)] = CacheEntry(resolution: resolution, stored: now,
                                                                                  expires: now + .seconds(Int64(ttl)))
    }
}
