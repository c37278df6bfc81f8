/// Answers to DO queries from a pre-signed zone (RFC 4035 section 3.1), as Knot serves them:
/// each record set with the RRSIGs over it, a referral with the DS set or the proof that there
/// is none, and negative and wildcard answers with their NSEC (RFC 4035 section 3.1.3) or NSEC3
/// (RFC 5155 section 7.2) proofs. The zone's own signatures are served; nothing is signed here.
extension DNSAuthority {
    /// What an answer must prove does not exist.
    enum Denial {
        /// The name answered from a wildcard has no records of its own.
        case synthesized(DNSName)
        /// The name exists without the type (or is an empty non-terminal); at a cut, without DS.
        case noData(DNSName)
        /// The name does not exist; the wildcard that answers for it lacks the type.
        case wildcardNoData(DNSName)
        /// The name does not exist, nor a wildcard that would answer for it.
        case noName(DNSName)
    }

    /// Adds to `answer` (for a question of `type`, `name` the last name its chain looked up) what
    /// a DO query gets from a signed zone, in Knot's order: the denial of the answer's own kind
    /// first, then one proof per wildcard the chain went through. Each section keeps its records
    /// first and the RRSIGs over them after; the writer may leave out RRSIGs that do not fit.
    func addSignatures(_ answer: inout DNSAnswer, type: DNSRecordType, last name: DNSName, zone: DNSZone) {
        var denials: [Denial] = []
        var expanded: [DNSName] = []
        for record in answer.answers where zone.nodes[record.name] == nil && !answer.substituted.contains(record.name)
            && !expanded.contains(record.name) {
            expanded.append(record.name)
        }
        answer.answers += signatures(over: answer.answers.filter { !answer.substituted.contains($0.name) }, zone: zone)
        if let cut = answer.authority.first, cut.type == .ns {
            // A referral: the DS set, signed, or the proof that there is none.
            if let ds = zone.nodes[cut.name]?[.ds] { answer.authority += ds } else { denials.append(.noData(cut.name)) }
        } else if answer.authority.first?.type == .soa {
            if answer.responseCode == .nameError {
                denials.append(.noName(name))
            } else if zone.nodes[name] != nil {
                denials.append(.noData(name))
            } else {
                denials.append(.wildcardNoData(name))
                if !expanded.contains(name) { expanded.append(name) }
            }
        }
        denials += expanded.map(Denial.synthesized)
        var seen: Set<DNSName> = []
        for owner in denials.flatMap({ proof($0, zone: zone) }) where seen.insert(owner).inserted {
            let sets = zone.hashedNodes[owner] ?? zone.nodes[owner] ?? [:]
            let records = sets[.nsec] ?? sets[.nsec3] ?? []
            // An NSEC asked for at a wildcard may itself cover the name it answered for: the
            // answer already proves it, and Knot writes it once.
            if type == .nsec, records.allSatisfy({ proof in answer.answers.contains { $0.type == .nsec && $0.data == proof.data } }) {
                continue
            }
            answer.authority += records
        }
        answer.authority += signatures(over: answer.authority, zone: zone)
        answer.additional += signatures(over: answer.additional, zone: zone)
    }

    /// The owners of the NSEC or NSEC3 records that prove `denial`, in the zone's own chain, in
    /// the order Knot writes them.
    func proof(_ denial: Denial, zone: DNSZone) -> [DNSName] {
        // An NSEC3PARAM at the apex says the zone proves with NSEC3, whatever NSEC chain it
        // still holds (a zone moving from NSEC to NSEC3), as Knot takes it.
        if let chain = zone.nsec3Chain, zone.nsecChain.isEmpty || zone.nodes[zone.origin]?[.nsec3param] != nil {
            // The closest provable encloser (RFC 5155 section 7.2.1): the deepest ancestor with
            // an NSEC3 of its own. With opt-out, an empty non-terminal above insecure delegations
            // alone has none, so the proof starts higher, as Knot's does.
            func provableEncloser(_ name: DNSName) -> DNSName {
                var encloser = closestEncloser(of: name, in: zone)
                while chain.matching(encloser) == nil, encloser != zone.origin { encloser = encloser.dropping(labels: 1) }
                return encloser
            }
            func nextCloser(_ name: DNSName) -> DNSName {
                name.dropping(labels: name.labelCount - provableEncloser(name).labelCount - 1)
            }
            // The closest encloser proof: the NSEC3 matching the closest provable encloser and
            // the one covering the next closer name.
            func encloserProof(_ name: DNSName) -> [DNSName?] {
                [chain.matching(provableEncloser(name)), chain.covering(nextCloser(name))]
            }
            let wildcard = { (name: DNSName) in self.wildcard(for: name, in: zone) }
            let owners: [DNSName?] = switch denial {
            case .synthesized(let name):
                [chain.covering(nextCloser(name))]
            case .noData(let name):
                // Without an NSEC3 of its own, an opt-out delegation: the closest provable encloser's proof.
                chain.matching(name).map { [$0] } ?? encloserProof(name)
            case .wildcardNoData(let name):
                [wildcard(name).flatMap(chain.matching)] + encloserProof(name)
            case .noName(let name):
                // The wildcard that would have answered, below the encloser the proof stands on.
                encloserProof(name) + [provableEncloser(name).prepending([UInt8(ascii: "*")]).flatMap(chain.covering)]
            }
            return owners.compactMap { $0 }
        }
        let owners: [DNSName?] = switch denial {
        case .synthesized(let name):
            [zone.nsec(atOrCovering: name)]
        case .noData(let name) where zone.nodes[name]?[.nsec] != nil:
            [name]
        case .wildcardNoData(let name):
            [wildcard(for: name, in: zone)]
        // An empty non-terminal has no NSEC: proved as a name that does not exist (RFC 4035
        // section 3.1.3.2), with the wildcard below it covered unless it is there.
        case .noData(let name), .noName(let name):
            [zone.nsec(atOrCovering: name), (zone.nodes[name] != nil ? name.prepending([UInt8(ascii: "*")]) : wildcard(for: name, in: zone))
                .flatMap { zone.nodes[$0] == nil ? zone.nsec(atOrCovering: $0) : nil }]
        }
        return owners.compactMap { $0 }
    }

    /// The zone's RRSIGs over each set of `records`, in the order of the sets: owned as the set
    /// is (a wildcard's by the name it answered for) and no longer lived than it (the SOA of a
    /// negative answer). RRSIGs themselves are not signed.
    func signatures(over records: [DNSRecord], zone: DNSZone) -> [DNSRecord] {
        var signatures: [DNSRecord] = []
        for (index, record) in records.enumerated() where record.type != .rrsig {
            if index > 0, records[index - 1].name == record.name, records[index - 1].type == record.type { continue }
            // An NSEC3 chain's owners are names too: a wildcard can answer a query for one.
            let sets = record.type == .nsec3 ? zone.hashedNodes[record.name]
                : zone.nodes[record.name] ?? wildcardSets(covering: record.name, in: zone)
            for signature in sets?[.rrsig] ?? [] where signature.coveredType == record.type {
                var owned = signature
                owned.name = record.name
                owned.ttl = min(owned.ttl, record.ttl)
                signatures.append(owned)
            }
        }
        return signatures
    }
}
