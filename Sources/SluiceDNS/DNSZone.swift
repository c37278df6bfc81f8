/// One zone's data, indexed by owner name: what an authoritative server answers from.
/// Every name between a record's owner and the apex exists (empty non-terminals, RFC 8020).
public struct DNSZone: Sendable {
    /// The apex.
    public let origin: DNSName
    /// The apex's SOA record.
    public let soa: DNSRecord
    /// Record sets by owner, then by type, each in canonical order.
    let nodes: [DNSName: [DNSRecordType: [DNSRecord]]]
    /// Owners of records outside the zone, which were left out (as Knot leaves them, with a warning).
    public let namesOutside: [DNSName]

    /// A zone at `origin` holding `records`, their names in lower case (as Knot serves them: the
    /// owner of an answer to the question keeps the question's case, every other name is the zone's).
    ///
    /// - Throws: ``DNSError/zoneSyntax(line:reason:)`` (line 0) when there is not exactly one
    ///   SOA at the apex, a CNAME shares its owner with other data,
    ///   or the zone has a DNAME (not served).
    public init(origin: DNSName, records: [DNSRecord]) throws(DNSError) {
        func fail(_ reason: String) -> DNSError { .zoneSyntax(line: 0, reason: "zone \(origin): \(reason)") }
        var nodes: [DNSName: [DNSRecordType: [DNSRecord]]] = [origin: [:]]
        var outside: [DNSName] = []
        for var record in records {
            record.lowercaseNames()
            guard record.name.isSubdomain(of: origin) else {
                if !outside.contains(record.name) { outside.append(record.name) }
                continue
            }
            // NSEC3 records live in a tree of their own hashed names, which Knot answers no query
            // from; without DNSSEC answers they are not served.
            if record.type == .nsec3 { continue }
            // An RRSIG is served with the TTL it signed (its original TTL field), as Knot serves it.
            if record.type == .rrsig, case .opaque(let bytes) = record.data, bytes.count >= 8 {
                record.ttl = bytes[4..<8].reduce(0) { $0 << 8 | UInt32($1) }
            }
            // Served as plain data, a DNAME would leave the names below it unanswered.
            guard record.type.rawValue != 39 else { throw fail("\(record.name) has a DNAME: DNAME redirection (RFC 6672) is not served") }
            var name = record.name
            while name != origin, nodes[name] == nil {
                nodes[name] = [:]
                name = name.dropping(labels: 1)
            }
            if !nodes[record.name]![record.type, default: []].contains(where: { $0.data == record.data }) {
                nodes[record.name]![record.type, default: []].append(record)
            }
        }
        for (name, sets) in nodes where sets[.cname].map({ $0.count > 1 || sets.count > 1 }) ?? false {
            throw fail("\(name) has a CNAME and other data, or more than one CNAME")
        }
        guard let soas = nodes[origin]?[.soa], soas.count == 1 else { throw fail("exactly one SOA at the apex is needed") }
        // One TTL per record set (RFC 2181 section 5.2): the last one's, as Knot keeps it.
        for (name, sets) in nodes {
            for (type, set) in sets where type != .rrsig && Set(set.map(\.ttl)).count > 1 {
                nodes[name]![type] = set.map { var record = $0; record.ttl = set[set.count - 1].ttl; return record }
            }
        }
        // Each set in canonical order (RFC 4034 section 6.3), as Knot keeps and serves it.
        for (name, sets) in nodes {
            for (type, set) in sets where set.count > 1 {
                nodes[name]![type] = set.sorted { $0.canonicalData.lexicographicallyPrecedes($1.canonicalData) }
            }
        }
        self.origin = origin
        self.soa = soas[0]
        self.nodes = nodes
        namesOutside = outside
    }

    /// Reads a zone file (``DNSZoneFile``) for `origin`; `$INCLUDE` reads with `include`, paths
    /// relative to `directory`.
    public init(origin: DNSName, text: String, directory: String = ".", include: DNSZoneFile.IncludeReader? = nil) throws(DNSError) {
        try self.init(origin: origin, records: try DNSZoneFile.parse(text, origin: origin, directory: directory, include: include))
    }

    /// The record sets at `name`, or `nil` when the name does not exist.
    public func recordSets(at name: DNSName) -> [DNSRecordType: [DNSRecord]]? { nodes[name] }

    /// Every record, by owner.
    public var records: [DNSRecord] { nodes.values.flatMap { $0.values.flatMap { $0 } } }
}
