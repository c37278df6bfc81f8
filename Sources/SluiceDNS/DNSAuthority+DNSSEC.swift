/// Answers to DO queries from a pre-signed zone (RFC 4035 section 3.1), as Knot serves them:
/// each record set with the RRSIGs over it, a referral with the DS set or the proof that there
/// is none, and negative and wildcard answers with their NSEC (RFC 4035 section 3.1.3) or NSEC3
/// (RFC 5155 section 7.2) proofs. The zone's own signatures are served; nothing is signed here.
extension DNSAuthority {
    /// What an answer must prove does not exist.
    enum Denial {
        /// The name answered from a wildcard has no records of its own.
        case synthesized(DNSName)
        /// The delegation at the cut has no DS: it is insecure.
        case noDS(cut: DNSName)
        /// The name exists without the type (or is an empty non-terminal).
        case noData(DNSName)
        /// The name does not exist, and the wildcard that would answer for it does not either
        /// (NXDOMAIN) or, with `wildcardExists`, lacks the type.
        case noName(DNSName, wildcardExists: Bool)
    }

    /// Adds to `answer` (for `name`, the last name its chain looked up) what a DO query gets from
    /// a signed zone. Each section keeps its records first and the RRSIGs over them after, as Knot
    /// writes them; the writer may leave out RRSIGs in the authority and additional sections
    /// that do not fit.
    func addSignatures(_ answer: inout DNSAnswer, last name: DNSName, zone: DNSZone) {
        var denials: [Denial] = answer.answers.lazy.map(\.name).first { zone.nodes[$0] == nil }.map { [.synthesized($0)] } ?? []
        answer.answers += signatures(over: answer.answers, zone: zone)
        if let cut = answer.authority.first, cut.type == .ns {
            // A referral: the DS set, signed, or the proof that there is none.
            if let ds = zone.nodes[cut.name]?[.ds] { answer.authority += ds } else { denials.append(.noDS(cut: cut.name)) }
        } else if answer.authority.first?.type == .soa {
            if answer.responseCode == .noError, zone.nodes[name] != nil {
                denials.append(.noData(name))
            } else {
                denials.append(.noName(name, wildcardExists: answer.responseCode == .noError))
            }
        }
        var seen: Set<DNSName> = []
        for owner in denials.flatMap({ proof($0, zone: zone) }) where seen.insert(owner).inserted {
            let sets = zone.nodes[owner] ?? zone.hashedNodes[owner] ?? [:]
            answer.authority += sets[.nsec] ?? sets[.nsec3] ?? []
        }
        answer.authority += signatures(over: answer.authority, zone: zone)
        answer.additional += signatures(over: answer.additional, zone: zone)
    }

    /// The owners of the NSEC or NSEC3 records that prove `denial`, in the zone's own chain.
    func proof(_ denial: Denial, zone: DNSZone) -> [DNSName] {
        if let chain = zone.nsec3Chain, zone.nsecChain.isEmpty {
            // The closest encloser proof (RFC 5155 section 7.2.1): the NSEC3 matching the
            // closest encloser and the one covering the next closer name.
            func nextCloser(_ name: DNSName) -> DNSName {
                name.dropping(labels: name.labelCount - closestEncloser(of: name, in: zone).labelCount - 1)
            }
            func encloserProof(_ name: DNSName) -> [DNSName?] {
                [chain.matching(closestEncloser(of: name, in: zone)), chain.covering(nextCloser(name))]
            }
            let owners: [DNSName?] = switch denial {
            case .synthesized(let name):
                [chain.covering(nextCloser(name))]
            case .noDS(let cut):
                chain.matching(cut).map { [$0] } ?? encloserProof(cut)
            case .noData(let name):
                chain.matching(name).map { [$0] } ?? encloserProof(name)
            case .noName(let name, let wildcardExists):
                encloserProof(name) + [wildcard(for: name, in: zone).flatMap(wildcardExists ? chain.matching : chain.covering)]
            }
            return owners.compactMap { $0 }
        }
        let owners: [DNSName?] = switch denial {
        case .synthesized(let name), .noDS(cut: let name), .noData(let name):
            [zone.nsec(atOrCovering: name)]
        case .noName(let name, _):
            [zone.nsec(atOrCovering: name), wildcard(for: name, in: zone).flatMap(zone.nsec(atOrCovering:))]
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
            let sets = zone.nodes[record.name] ?? zone.hashedNodes[record.name] ?? wildcardSets(covering: record.name, in: zone)
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
