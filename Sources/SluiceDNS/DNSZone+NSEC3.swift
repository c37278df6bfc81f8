import CSluiceOpenSSL

/// A zone's NSEC3 chain (RFC 5155): its parameters and its hashed owners in order, for the
/// proofs of answers to DO queries. Hashes are SHA-1, the one algorithm defined, from libcrypto.
struct NSEC3Chain: Sendable {
    /// Extra rounds of hashing.
    let iterations: Int
    let salt: [UInt8]
    /// Hashes (the first label of each owner, base32hex-decoded) in order, with their owners.
    let links: [(hash: [UInt8], owner: DNSName)]

    /// The chain of the NSEC3 records in `hashed` (owner to record sets) made with the parameters
    /// of `parameters` (the apex's NSEC3PARAM data), or else of the first record: the records of
    /// another chain (one on its way in or out, while the parameters roll) prove nothing here, as
    /// Knot leaves them out (RFC 5155 section 7.3). `nil` for none, or a hash algorithm other than SHA-1.
    init?(_ hashed: [DNSName: [DNSRecordType: [DNSRecord]]], parameters: DNSRecord?) {
        // Each owner's NSEC3 data and hash, in a stable order: the first record decides when no NSEC3PARAM does.
        var candidates: [(data: [UInt8], hash: [UInt8], owner: DNSName)] = []
        for (owner, sets) in hashed {
            guard case .opaque(let data)? = sets[.nsec3]?.first?.data, owner.wire[0] > 0,
                  let hash = DNSZoneFile.base32Hex(String(decoding: owner.wire[1...Int(owner.wire[0])], as: UTF8.self))
            else { continue }
            candidates.append((data, hash, owner))
        }
        candidates.sort { $0.hash.lexicographicallyPrecedes($1.hash) }
        let data: [UInt8]
        if case .opaque(let bytes)? = parameters?.data { data = bytes } else if let first = candidates.first { data = first.data } else { return nil }
        guard data.count >= 5, data[0] == 1, data.count >= 5 + Int(data[4]) else { return nil }
        iterations = Int(data[2]) << 8 | Int(data[3])
        salt = Array(data[5..<(5 + Int(data[4]))])
        // Algorithm, iterations and salt as the parameters say (the flags, opt-out, may differ).
        let parameterBytes = 5 + salt.count
        links = candidates.filter { candidate in
            candidate.data.count >= parameterBytes && candidate.data[0] == data[0]
                && candidate.data[2..<parameterBytes].elementsEqual(data[2..<parameterBytes])
        }.map { ($0.hash, $0.owner) }
        guard !links.isEmpty else { return nil }
    }

    /// The hash of `name` (RFC 5155 section 5): SHA-1 over its lower-case wire form and the salt,
    /// then over each result and the salt, `iterations` more times.
    func hash(_ name: DNSName) -> [UInt8] {
        var digest = name.lowercased.wire
        for _ in 0...iterations {
            let input = digest + salt
            digest = [UInt8](repeating: 0, count: 20)
            input.withUnsafeBytes { bytes in
                _ = EVP_Digest(bytes.baseAddress, bytes.count, &digest, nil, EVP_sha1(), nil)
            }
        }
        return digest
    }

    /// The owner of the NSEC3 whose hash is `name`'s.
    func matching(_ name: DNSName) -> DNSName? {
        let hash = hash(name)
        return links.first { $0.hash == hash }?.owner
    }

    /// The owner of the NSEC3 whose span covers `name`'s hash: the last hash before it, or the
    /// last of the chain, which wraps around.
    func covering(_ name: DNSName) -> DNSName? {
        let hash = hash(name)
        return (links.last { $0.hash.lexicographicallyPrecedes(hash) } ?? links.last)?.owner
    }
}
