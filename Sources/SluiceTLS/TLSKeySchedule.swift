import CSluiceOpenSSL

/// The key derivations the record layer needs: TLS 1.3's HKDF-Expand-Label (RFC 8446 7.1) and
/// TLS 1.2's PRF (RFC 5246 5), both over HMAC with the cipher suite's hash.
public enum TLSKeySchedule {
    /// HMAC of `data` under `key` with `digest`.
    static func hmac(_ digest: OpaquePointer, key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                HMAC(digest, k.baseAddress, Int32(k.count), d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count,
                     &out, &length)
            }
        }
        return Array(out.prefix(Int(length)))
    }

    /// HKDF-Expand (RFC 5869 2.3).
    static func expand(_ digest: OpaquePointer, pseudorandomKey: [UInt8], info: [UInt8], length: Int) -> [UInt8] {
        var output: [UInt8] = []
        var block: [UInt8] = []
        var counter: UInt8 = 1
        while output.count < length {
            block = hmac(digest, key: pseudorandomKey, data: block + info + [counter])
            output += block
            counter &+= 1
        }
        return Array(output.prefix(length))
    }

    /// HKDF-Expand-Label(secret, label, context, length): `label` without the "tls13 " prefix.
    public static func expandLabel(_ digest: OpaquePointer, secret: [UInt8], label: String, context: [UInt8] = [],
                                   length: Int) -> [UInt8] {
        let fullLabel = Array("tls13 \(label)".utf8)
        let info = [UInt8(length >> 8), UInt8(length & 0xFF), UInt8(fullLabel.count)] + fullLabel
            + [UInt8(context.count)] + context
        return expand(digest, pseudorandomKey: secret, info: info, length: length)
    }

    /// The TLS 1.2 PRF: P_hash(secret, label + seed) cut to `length`.
    public static func prf12(_ digest: OpaquePointer, secret: [UInt8], label: String, seed: [UInt8], length: Int) -> [UInt8] {
        let labelSeed = Array(label.utf8) + seed
        var output: [UInt8] = []
        var a = labelSeed
        while output.count < length {
            a = hmac(digest, key: secret, data: a)
            output += hmac(digest, key: secret, data: a + labelSeed)
        }
        return Array(output.prefix(length))
    }

    /// The hash of a TLS 1.3 cipher suite, or of a TLS 1.2 suite's PRF: SHA-384 for AES-256-GCM, SHA-256 otherwise.
    public static func digest(for aead: TLSAEAD) -> OpaquePointer {
        aead == .aes256GCM ? sha384 : sha256
    }

    // Fetched once: OpenSSL 3 looks a legacy `EVP_sha256()` up in the provider store at every use.
    private nonisolated(unsafe) static let sha256: OpaquePointer = EVP_MD_fetch(nil, "SHA256", nil) ?? EVP_sha256()
    private nonisolated(unsafe) static let sha384: OpaquePointer = EVP_MD_fetch(nil, "SHA384", nil) ?? EVP_sha384()
}

/// The keys of one direction of a connection: the AEAD, its key and IV, and for TLS 1.3 the
/// traffic secret they came from (a KeyUpdate derives the next one from it).
public struct TLSTrafficKeys: Sendable, Equatable {
    /// The protocol version the records follow.
    public var version: TLSVersion
    /// The AEAD.
    public var aead: TLSAEAD
    /// The key.
    public var key: [UInt8]
    /// The IV: 12 bytes, or TLS 1.2 AES-GCM's 4-byte implicit salt.
    public var iv: [UInt8]
    /// The TLS 1.3 traffic secret (empty for TLS 1.2).
    public var secret: [UInt8]
    /// The sequence number of the next record.
    public var sequence: UInt64

    /// Keys given directly (TLS 1.2's key block, or test vectors).
    public init(version: TLSVersion, aead: TLSAEAD, key: [UInt8], iv: [UInt8], secret: [UInt8] = [], sequence: UInt64 = 0) {
        self.version = version
        self.aead = aead
        self.key = key
        self.iv = iv
        self.secret = secret
        self.sequence = sequence
    }

    /// TLS 1.3 keys from a traffic secret: key = HKDF-Expand-Label(secret, "key"), iv = HKDF-Expand-Label(secret, "iv").
    public init(tls13Secret secret: [UInt8], aead: TLSAEAD, sequence: UInt64 = 0) {
        let digest = TLSKeySchedule.digest(for: aead)
        self.init(version: .tls13, aead: aead,
                  key: TLSKeySchedule.expandLabel(digest, secret: secret, label: "key", length: aead.keyLength),
                  iv: TLSKeySchedule.expandLabel(digest, secret: secret, label: "iv", length: 12),
                  secret: secret, sequence: sequence)
    }

    /// The keys after a TLS 1.3 KeyUpdate: the next secret is HKDF-Expand-Label(secret, "traffic upd"), sequence 0.
    public func updated() -> TLSTrafficKeys {
        let digest = TLSKeySchedule.digest(for: aead)
        let next = TLSKeySchedule.expandLabel(digest, secret: secret, label: "traffic upd", length: secret.count)
        return TLSTrafficKeys(tls13Secret: next, aead: aead)
    }

    /// The TLS 1.2 keys of both directions from the master secret and the hello randoms (RFC 5246 6.3):
    /// the key block holds the client key, the server key, then the client and server IVs.
    public static func tls12(aead: TLSAEAD, masterSecret: [UInt8], clientRandom: [UInt8], serverRandom: [UInt8])
        -> (client: TLSTrafficKeys, server: TLSTrafficKeys) {
        let ivLength = aead == .chacha20Poly1305 ? 12 : 4
        let block = TLSKeySchedule.prf12(TLSKeySchedule.digest(for: aead), secret: masterSecret, label: "key expansion",
                                         seed: serverRandom + clientRandom, length: 2 * (aead.keyLength + ivLength))
        var at = 0
        func take(_ n: Int) -> [UInt8] { defer { at += n }; return Array(block[at..<at + n]) }
        let clientKey = take(aead.keyLength), serverKey = take(aead.keyLength)
        let clientIV = take(ivLength), serverIV = take(ivLength)
        return (TLSTrafficKeys(version: .tls12, aead: aead, key: clientKey, iv: clientIV),
                TLSTrafficKeys(version: .tls12, aead: aead, key: serverKey, iv: serverIV))
    }
}
