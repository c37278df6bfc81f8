/// What an authoritative server answers, decided from its zones (RFC 1034 section 4.3.2, RFC
/// 4592 for wildcards, RFC 2308 for negative answers, RFC 6604 for CNAME chains).
public struct DNSAnswer: Equatable, Sendable {
    public var responseCode: DNSResponseCode = .noError
    /// AA: the answer comes from the zone's own data (not a referral, not a refusal).
    public var authoritative = true
    public var answers: [DNSRecord] = []
    public var authority: [DNSRecord] = []
    public var additional: [DNSRecord] = []
    /// Made from a wildcard (RFC 4592): for rate limiting, one answer per zone.
    public var synthesized = false
    /// Owners of the CNAMEs made from a DNAME (RFC 6672): not the zone's, so never signed.
    var substituted: [DNSName] = []
    /// How many of the first additional records a UDP response must carry whole or set TC for:
    /// a referral's in-domain glue (RFC 9471).
    public var requiredAdditional = 0
}

/// The zones one server is authoritative for, shared read-only by every worker.
public final class DNSAuthority: Sendable {
    /// The zones, deepest apex first (so the closest zone is found first).
    public let zones: [DNSZone]
    /// Origins configured but without contents (a zone file that did not load), deepest first:
    /// names in them are answered SERVFAIL, not REFUSED, as Knot answers a zone it failed to load.
    public let unloaded: [DNSName]
    /// CNAMEs followed in one answer at most: five, then the data the fifth leads to but not a
    /// sixth CNAME, as Knot answers a long chain.
    public static let chainLimit = 5

    /// An authority over `zones`, and over the origins in `unloaded` whose zones could not be
    /// read (answered SERVFAIL until a zone is published for them).
    public init(zones: [DNSZone], unloaded: [DNSName] = []) {
        self.zones = zones.sorted { $0.origin.labelCount > $1.origin.labelCount }
        self.unloaded = unloaded.sorted { $0.labelCount > $1.labelCount }
    }

    /// The zone `name` belongs to, if any.
    public func zone(for name: DNSName) -> DNSZone? {
        zones.first { name.isSubdomain(of: $0.origin) }
    }

    /// The zone that answers `type` at `name`: DS at a child's apex comes from the parent when the
    /// parent is served too, since DS lives on the parent's side of the cut (RFC 4035 section 3.1.4.1).
    func zone(for name: DNSName, type: DNSRecordType) -> DNSZone? {
        guard let index = zones.firstIndex(where: { name.isSubdomain(of: $0.origin) }) else { return nil }
        if type == .ds, name == zones[index].origin,
           let parent = zones[(index + 1)...].first(where: { name.isSubdomain(of: $0.origin) }) {
            return parent
        }
        return zones[index]
    }

    /// The answer to a question for `type` at `name`, or `nil` when no zone holds the name
    /// (the server refuses it). With `dnssec` (the query's DO bit) and a signed zone, the answer
    /// carries the zone's signatures and NSEC proofs (``DNSAuthority`` `withSignatures`).
    public func answer(_ name: DNSName, _ type: DNSRecordType, dnssec: Bool = false) -> DNSAnswer? {
        let zone = zone(for: name, type: type)
        // The closest configured zone has no contents (DS at its apex is its parent's to answer).
        if let origin = unloaded.first(where: { name.isSubdomain(of: $0) }),
           zone.map({ $0.origin.labelCount < origin.labelCount && !(type == .ds && name == origin) }) ?? true {
            return DNSAnswer(responseCode: .serverFailure, authoritative: false)
        }
        guard let zone else { return nil }
        var answer = DNSAnswer()
        var current = name
        var seen: Set<DNSName> = []
        var step = 0
        chain: while true {
            seen.insert(current)
            let answered = answer.answers.count
            switch lookup(current, type, in: zone, into: &answer) {
            case .done:
                break chain
            case .follow(let target):
                // A chain leaving the zone, looping, or past its fifth CNAME (left out) ends here:
                // the resolver follows it.
                if step == Self.chainLimit { answer.answers.removeSubrange(answered...) }
                guard step < Self.chainLimit, target.isSubdomain(of: zone.origin), !seen.contains(target) else { break chain }
                current = target
                step += 1
            }
        }
        addAdditional(&answer, zone: zone)
        if dnssec && zone.isSigned { addSignatures(&answer, type: type, last: current, zone: zone) }
        return answer
    }

    enum Step {
        case done
        case follow(DNSName)
    }

    /// One step at `name`: a referral, an answer, a CNAME to follow, or a negative answer.
    func lookup(_ name: DNSName, _ type: DNSRecordType, in zone: DNSZone, into answer: inout DNSAnswer) -> Step {
        // A zone cut on the way down from the apex: a referral (the parent answers DS at the cut itself).
        let depth = name.labelCount - zone.origin.labelCount
        if depth > 0 {
            for level in stride(from: depth - 1, through: 0, by: -1) {
                let ancestor = name.dropping(labels: level)
                guard let sets = zone.nodes[ancestor], let delegation = sets[.ns] else { continue }
                if level == 0 && type == .ds { break }
                return refer(to: delegation, at: ancestor, zone: zone, into: &answer)
            }
        }
        if let sets = zone.nodes[name] {
            return respond(from: sets, owner: name, type: type, zone: zone, into: &answer)
        }
        // No such name: a wildcard at the closest encloser answers for it (RFC 4592); a
        // wildcard with NS is a zone cut, whose referral goes out as it is written (DS is the
        // parent side's: no data), as Knot answers them.
        if let wildcard = wildcard(for: name, in: zone), let sets = zone.nodes[wildcard] {
            if let delegation = sets[.ns], type != .ds {
                return refer(to: delegation, at: wildcard, zone: zone, into: &answer)
            }
            answer.synthesized = true
            return respond(from: sets, owner: name, type: type, zone: zone, into: &answer)
        }
        // Below a DNAME: the DNAME (once in a chain), and a CNAME to the name with its target in
        // place of the DNAME's owner, followed unless CNAME was asked for (RFC 6672 section 3.2),
        // as Knot answers. A name that would pass 255 bytes is YXDOMAIN (RFC 6672 section 2.2),
        // and Knot then follows the DNAME's target itself: within the zone that answer (an
        // NXDOMAIN, say) is the last word. Knot looks for the wildcard first, as here. The target is written in
        // lower case, as Knot writes it: answers are cached by name whatever its case, and one
        // client's case must not reach the next.
        let encloser = closestEncloser(of: name, in: zone)
        if let dname = zone.nodes[encloser]?[.dname]?.first, case .name(let target) = dname.data {
            if !answer.answers.contains(dname) { answer.answers.append(dname) }
            let prefix = name.wire[..<(name.wire.count - encloser.wire.count)].map(DNSWire.lower)
            guard let substitute = DNSName(wire: prefix + target.wire) else {
                answer.responseCode = .nameExists
                return .follow(target)
            }
            answer.answers.append(DNSRecord(name: name, type: .cname, ttl: dname.ttl, data: .name(substitute)))
            answer.substituted.append(name)
            return type == .cname ? .done : .follow(substitute)
        }
        answer.responseCode = .nameError
        answer.authority = [negativeSOA(zone)]
        return .done
    }

    /// A referral to the zone cut at `cut`: its NS set in authority, no AA unless a CNAME chain
    /// led here, and its glue.
    func refer(to delegation: [DNSRecord], at cut: DNSName, zone: DNSZone, into answer: inout DNSAnswer) -> Step {
        if answer.answers.isEmpty { answer.authoritative = false }
        answer.authority = delegation
        // In-domain glue first: a response that cannot carry all of it sets TC (RFC 9471).
        let (inDomain, sibling) = glue(for: delegation, below: cut, zone: zone)
        answer.requiredAdditional = answer.additional.count + inDomain.count
        answer.additional += inDomain + sibling
        return .done
    }

    func respond(from sets: [DNSRecordType: [DNSRecord]], owner: DNSName, type: DNSRecordType, zone: DNSZone,
                 into answer: inout DNSAnswer) -> Step {
        func owned(_ records: [DNSRecord]) -> [DNSRecord] {
            records.map { var record = $0; record.name = owner; return record }
        }
        // ANY gets one record set, the lowest type's, as Knot answers it (RFC 8482 section 4.1).
        if type == .any, let first = sets.keys.min(by: { $0.rawValue < $1.rawValue }) {
            answer.answers += owned(sets[first]!)
            return .done
        }
        // RRSIG gets the signatures over one set, the first in canonical order, as Knot answers it.
        if let records = sets[type] {
            answer.answers += owned(type == .rrsig ? records.filter { $0.coveredType == records[0].coveredType } : records)
            return .done
        }
        // RRSIG and NSEC may sit beside a CNAME (RFC 4035 section 2.5): asked for, they are not
        // redirected; where the name has none, the answer is NODATA, as Knot gives it.
        if type != .cname, type != .rrsig, type != .nsec, let cname = sets[.cname]?.first, case .name(let target) = cname.data {
            answer.answers += owned([cname])
            return .follow(target)
        }
        // The name exists, the type does not: NODATA.
        answer.authority = [negativeSOA(zone)]
        return .done
    }

    /// The SOA of a negative answer, its TTL the lesser of its own and its minimum (RFC 2308 section 5).
    func negativeSOA(_ zone: DNSZone) -> DNSRecord {
        var soa = zone.soa
        if case let .soa(_, _, _, _, _, _, minimum) = soa.data { soa.ttl = min(soa.ttl, minimum) }
        return soa
    }

    /// Addresses in the zone for the name servers of a referral at `cut`: those below the cut
    /// (in-domain glue) and the others in the zone (sibling glue), a wildcard's included, as for
    /// the targets of an answer and as Knot adds them.
    func glue(for delegation: [DNSRecord], below cut: DNSName, zone: DNSZone) -> (inDomain: [DNSRecord], sibling: [DNSRecord]) {
        var inDomain: [DNSRecord] = []
        var sibling: [DNSRecord] = []
        for record in delegation {
            guard case .name(let server) = record.data, server.isSubdomain(of: zone.origin) else { continue }
            let addresses = addresses(of: server, zone: zone)
            if server.isSubdomain(of: cut) { inDomain += addresses } else { sibling += addresses }
        }
        return (inDomain, sibling)
    }

    /// Addresses of the targets of NS, MX and SRV answers that the zone holds, once each.
    func addAdditional(_ answer: inout DNSAnswer, zone: DNSZone) {
        // A set, not a search of the section: an MX set of hundreds stays linear.
        var present = Set(answer.additional)
        for target in answer.answers.compactMap(\.server) where target.isSubdomain(of: zone.origin) {
            for record in addresses(of: target, zone: zone) where present.insert(record).inserted {
                answer.additional.append(record)
            }
        }
        // An SVCB or HTTPS target's addresses, and its own records of the type, the next step of
        // an alias (RFC 9460 section 4.1), as Knot adds them: one step, nothing for a target `.`.
        for service in answer.answers where service.type == .svcb || service.type == .https {
            guard let target = service.serviceTarget, target.isSubdomain(of: zone.origin) else { continue }
            let sameType = zone.nodes[target].map { $0[service.type] ?? [] }
                ?? (wildcardSets(covering: target, in: zone)?[service.type] ?? []).map { var record = $0; record.name = target; return record }
            for record in addresses(of: target, zone: zone) + sameType where present.insert(record).inserted {
                answer.additional.append(record)
            }
        }
    }

    /// The zone's A and AAAA records for `name`, or those of the wildcard that covers it (owned
    /// by `name`), as Knot adds them.
    func addresses(of name: DNSName, zone: DNSZone) -> [DNSRecord] {
        if let sets = zone.nodes[name] { return (sets[.a] ?? []) + (sets[.aaaa] ?? []) }
        guard let sets = wildcardSets(covering: name, in: zone) else { return [] }
        return ((sets[.a] ?? []) + (sets[.aaaa] ?? [])).map { var record = $0; record.name = name; return record }
    }

    /// The record sets of the wildcard at the closest encloser of `name`, a name the zone does not hold (RFC 4592).
    func wildcardSets(covering name: DNSName, in zone: DNSZone) -> [DNSRecordType: [DNSRecord]]? {
        wildcard(for: name, in: zone).flatMap { zone.nodes[$0] }
    }

    /// The name of the wildcard that would answer for `name`, a name the zone does not hold: `*`
    /// below its closest encloser (RFC 4592 section 3.3.1).
    func wildcard(for name: DNSName, in zone: DNSZone) -> DNSName? {
        closestEncloser(of: name, in: zone).prepending([UInt8(ascii: "*")])
    }

    /// The deepest ancestor of `name`, a name the zone does not hold, that the zone holds (RFC 4592 section 3.3.1).
    func closestEncloser(of name: DNSName, in zone: DNSZone) -> DNSName {
        var encloser = name.dropping(labels: 1)
        while zone.nodes[encloser] == nil, encloser != zone.origin { encloser = encloser.dropping(labels: 1) }
        return encloser
    }
}
