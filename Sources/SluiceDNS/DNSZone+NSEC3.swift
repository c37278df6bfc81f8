import CSluiceOpenSSL

/// A zone's NSEC3 chain (RFC 5155): its parameters and its hashed owners in order, for the
/// proofs of answers to DO queries. Hashes are SHA-1, the one algorithm defined, from libcrypto.
struct NSEC3Chain: Sendable {
    /// Extra rounds of hashing.
    let iterations: Int
    let salt: [UInt8]
    /// Hashes (the first label of each owner, base32hex-decoded) in order, with their owners.
    let links: [(hash: [UInt8], owner: DNSName)]

    /// The chain of the NSEC3 records in `hashed` (owner to record sets), with the parameters of
    /// `parameters` (the apex's NSEC3PARAM data) or else of the first record; `nil` for none, or
    /// a hash algorithm other than SHA-1.
    init?(_ hashed: [DNSName: [DNSRecordType: [DNSRecord]]], parameters: DNSRecord?) {
        var links: [(hash: [UInt8], owner: DNSName)] = []
        var first: [UInt8]?
        for (owner, sets) in hashed {
            guard case .opaque(let data)? = sets[.nsec3]?.first?.data, owner.wire[0] > 0,
                  let hash = DNSZoneFile.base32Hex(String(decoding: owner.wire[1...Int(owner.wire[0])], as: UTF8.self))
            else { continue }
            first = first ?? data
            links.append((hash, owner))
        }
        let data: [UInt8]
        if case .opaque(let bytes)? = parameters?.data { data = bytes } else if let first { data = first } else { return nil }
        guard !links.isEmpty, data.count >= 5, data[0] == 1, data.count >= 5 + Int(data[4]) else { return nil }
        iterations = Int(data[2]) << 8 | Int(data[3])
        salt = Array(data[5..<(5 + Int(data[4]))])
        self.links = links.sorted { $0.hash.lexicographicallyPrecedes($1.hash) }
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
