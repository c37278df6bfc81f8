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
    /// Owners of SOA records below the apex, which were left out (as Knot leaves them out).
    public let misplacedSOAOwners: [DNSName]
    /// Owners of record sets whose records came with different TTLs: each set takes its last
    /// record's, as Knot does (with a notice; RFC 2181 section 5.2).
    public let mixedTTLOwners: [DNSName]
    /// Whether the zone is signed (DNSSEC, pre-signed: RRSIGs in the file): its apex has a DNSKEY
    /// set and an RRSIG over its SOA. Only then do answers to DO queries carry signatures and proofs.
    public let isSigned: Bool
    /// The owners of the zone's NSEC records in canonical order, with their order keys: where an
    /// NSEC covering a name that does not exist is found.
    let nsecChain: [(key: [[UInt8]], owner: DNSName)]
    /// NSEC3 records, and the RRSIGs over them, by hashed owner: a tree of their own (RFC 5155
    /// section 7.2), which no query reaches by name.
    let hashedNodes: [DNSName: [DNSRecordType: [DNSRecord]]]
    /// The NSEC3 chain, when the zone has one.
    let nsec3Chain: NSEC3Chain?

    /// A zone at `origin` holding `records`, their names in lower case (as Knot serves them: the
    /// owner of an answer to the question keeps the question's case, every other name is the zone's).
    ///
    /// - Throws: ``DNSError/zoneSyntax(line:reason:)`` (line 0) when there is no SOA at the apex
    ///   (of several, the first is kept, as Knot keeps it), a CNAME shares its owner with other
    ///   data, a name is below a DNAME, or a DNAME below the apex shares its owner with NS.
    public init(origin: DNSName, records: [DNSRecord]) throws(DNSError) {
        func fail(_ reason: String) -> DNSError { .zoneSyntax(line: 0, reason: "zone \(origin): \(reason)") }
        var nodes: [DNSName: [DNSRecordType: [DNSRecord]]] = [origin: [:]]
        // Room for a name per record at most: a large zone's table is not rehashed as it grows.
        nodes.reserveCapacity(records.count)
        var hashed: [DNSName: [DNSRecordType: [DNSRecord]]] = [:]
        var outside: [DNSName] = []
        var misplacedSOAs: [DNSName] = []
        var mixedTTLs: [DNSName] = []
        for var record in records {
            record.lowercaseNames()
            guard record.name.isSubdomain(of: origin) else {
                if !outside.contains(record.name) { outside.append(record.name) }
                continue
            }
            guard record.type != .soa || record.name == origin else {
                if !misplacedSOAs.contains(record.name) { misplacedSOAs.append(record.name) }
                continue
            }
            // An RRSIG is served with the TTL it signed (its original TTL field), as Knot serves it.
            if record.type == .rrsig, case .opaque(let bytes) = record.data, bytes.count >= 8 {
                record.ttl = bytes[4..<8].reduce(0) { $0 << 8 | UInt32($1) }
            }
            if record.type == .nsec3 || record.coveredType == .nsec3 {
                hashed[record.name, default: [:]][record.type, default: []].append(record)
                continue
            }
            var name = record.name
            while name != origin, nodes[name] == nil {
                nodes[name] = [:]
                name = name.dropping(labels: 1)
            }
            if let index = nodes[record.name]![record.type, default: []].firstIndex(where: { $0.data == record.data }) {
                // A duplicate is not served twice, but its TTL counts: a set takes its last record's.
                if nodes[record.name]![record.type]![index].ttl != record.ttl {
                    nodes[record.name]![record.type]!.remove(at: index)
                    nodes[record.name]![record.type]!.append(record)
                    if record.type != .rrsig, !mixedTTLs.contains(record.name) { mixedTTLs.append(record.name) }
                }
            } else {
                nodes[record.name]![record.type, default: []].append(record)
            }
        }
        // A CNAME shares its owner only with the DNSSEC records about it (RFC 2181 section 10.1, RFC 4035 section 2.5).
        for (name, sets) in nodes where sets[.cname].map({ $0.count > 1 || sets.keys.contains { ![.cname, .rrsig, .nsec].contains($0) } }) ?? false {
            throw fail("\(name) has a CNAME and other data, or more than one CNAME")
        }
        // Names below a DNAME could never be reached, and Knot refuses such a zone (RFC 6672 section 2.4).
        for (name, sets) in nodes where sets[.dname] != nil {
            if sets[.dname]!.count > 1 { throw fail("\(name) has more than one DNAME") }
            // Below the apex a DNAME and an NS set would each claim the names under it (RFC 6672 section 2.3).
            if name != origin, sets[.ns] != nil { throw fail("\(name) has a DNAME beside an NS set") }
            if let below = nodes.keys.first(where: { $0 != name && $0.isSubdomain(of: name) }) {
                throw fail("\(below) is below the DNAME at \(name)")
            }
        }
        guard let soas = nodes[origin]?[.soa], let first = soas.first else { throw fail("an SOA at the apex is needed") }
        nodes[origin]![.soa] = [first]
        // One TTL per record set (RFC 2181 section 5.2): the last one's, as Knot keeps it.
        for (name, sets) in nodes {
            for (type, set) in sets where type != .rrsig && set.contains(where: { $0.ttl != set[0].ttl }) {
                nodes[name]![type] = set.map { var record = $0; record.ttl = set[set.count - 1].ttl; return record }
                if !mixedTTLs.contains(name) { mixedTTLs.append(name) }
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
        misplacedSOAOwners = misplacedSOAs
        mixedTTLOwners = mixedTTLs.sorted { DNSName.precedes($0.canonicalKey, $1.canonicalKey) }
        hashedNodes = hashed
        nsec3Chain = NSEC3Chain(hashed, parameters: nodes[origin]?[.nsec3param]?.first)
        let apex = nodes[origin]!
        isSigned = apex[.dnskey] != nil && apex[.rrsig]?.contains { $0.coveredType == .soa } == true
        nsecChain = nodes.compactMap { name, sets in sets[.nsec] == nil ? nil : (name.canonicalKey, name) }
            .sorted { DNSName.precedes($0.key, $1.key) }
    }

    /// The NSEC at the last owner of the chain at or before `name` in canonical order: the one
    /// that matches `name`, or covers it when `name` has none (RFC 4034 section 4.1).
    func nsec(atOrCovering name: DNSName) -> DNSName? {
        guard !nsecChain.isEmpty else { return nil }
        let key = name.canonicalKey
        var low = 0
        var high = nsecChain.count
        while low < high {
            let middle = (low + high) / 2
            if DNSName.precedes(key, nsecChain[middle].key) { high = middle } else { low = middle + 1 }
        }
        // Before the first owner (only out of the zone's own order): the last NSEC wraps around.
        return nsecChain[low == 0 ? nsecChain.count - 1 : low - 1].owner
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
