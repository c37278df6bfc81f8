import CSluiceOpenSSL

/// The protection of one direction's records: one AEAD context, keyed once and reused for
/// every record (only the nonce changes), sealing and opening in place.
///
/// Record layouts (RFC 8446 5.2, RFC 5288 3, RFC 7905 2):
/// - TLS 1.3: header (type 23, 0x0303, length), then the inner plaintext (content, its real type,
///   no padding on the way out), then the tag; nonce = IV xor sequence; AAD = the header.
/// - TLS 1.2 AES-GCM: header (real type), an 8-byte explicit nonce (the sequence number), the
///   content, the tag; nonce = salt + explicit; AAD = sequence, type, version, content length.
/// - TLS 1.2 ChaCha20-Poly1305: as AES-GCM without the explicit nonce, nonce = IV xor sequence.
public final class TLSRecordCipher {
    /// The largest content a record carries (2^14).
    public static let maximumContent = 16384
    /// Header bytes.
    public static let headerLength = 5

    /// The keys, sequence number included.
    public private(set) var keys: TLSTrafficKeys
    /// The most content one record of this direction carries: 2^14, or less when the client asked
    /// for smaller records (max_fragment_length, RFC 6066 section 4).
    public let contentLimit: Int
    /// Where a record's content starts, counted from its header.
    public let contentOffset: Int
    /// Bytes a sealed record adds to its content: header, explicit nonce, inner type, tag.
    public let overhead: Int
    private let context: OpaquePointer
    private let sealing: Bool
    private let nonce: UnsafeMutablePointer<UInt8>
    private let iv: UnsafeMutablePointer<UInt8>
    private let additional: UnsafeMutablePointer<UInt8>
    /// The header type of the record being opened (TLS 1.2's content type).
    private var openingType: UInt8 = 0

    /// A cipher for `keys`, to seal (`sealing`) or to open records of at most `contentLimit`
    /// bytes of content.
    public init(keys: TLSTrafficKeys, sealing: Bool, contentLimit: Int = maximumContent) throws(TLSError) {
        guard (1...Self.maximumContent).contains(contentLimit) else {
            throw TLSError("keying \(keys.aead) for \(keys.version)", hint: "a record limit of \(contentLimit) bytes is outside 1...16384", library: "")
        }
        guard keys.key.count == keys.aead.keyLength,
              keys.iv.count == (keys.version == .tls12 && keys.aead != .chacha20Poly1305 ? 4 : 12)
        else { throw TLSError("keying \(keys.aead) for \(keys.version)", hint: "the key or IV has the wrong length", library: "") }
        self.keys = keys
        self.sealing = sealing
        self.contentLimit = contentLimit
        let explicit = keys.version == .tls12 && keys.aead != .chacha20Poly1305
        contentOffset = Self.headerLength + (explicit ? 8 : 0)
        overhead = contentOffset + keys.aead.tagLength + (keys.version == .tls13 ? 1 : 0)
        guard let context = EVP_CIPHER_CTX_new() else { throw TLSError("allocating a cipher context") }
        self.context = context
        nonce = .allocate(capacity: 12)
        nonce.initialize(repeating: 0, count: 12)
        iv = .allocate(capacity: 12)
        iv.initialize(repeating: 0, count: 12)
        additional = .allocate(capacity: 13)
        additional.initialize(repeating: 0, count: 13)
        storeIV()
        let cipher = Self.cipher(keys.aead)
        let keyed = keys.key.withUnsafeBufferPointer { key in
            sealing ? EVP_EncryptInit_ex(context, cipher, nil, key.baseAddress, nil)
                    : EVP_DecryptInit_ex(context, cipher, nil, key.baseAddress, nil)
        }
        guard keyed == 1 else {
            let error = TLSError("keying \(keys.aead)")
            deinitialize()
            throw error
        }
    }

    deinit { deinitialize() }

    // Fetched once: OpenSSL 3 looks a legacy `EVP_aes_128_gcm()` up in the provider store at every
    // keying, which a handshake does twice.
    private nonisolated(unsafe) static let aes128GCM: OpaquePointer = EVP_CIPHER_fetch(nil, "AES-128-GCM", nil) ?? EVP_aes_128_gcm()
    private nonisolated(unsafe) static let aes256GCM: OpaquePointer = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil) ?? EVP_aes_256_gcm()
    private nonisolated(unsafe) static let chacha20Poly1305: OpaquePointer =
        EVP_CIPHER_fetch(nil, "ChaCha20-Poly1305", nil) ?? EVP_chacha20_poly1305()

    private static func cipher(_ aead: TLSAEAD) -> OpaquePointer {
        switch aead {
        case .aes128GCM: aes128GCM
        case .aes256GCM: aes256GCM
        case .chacha20Poly1305: chacha20Poly1305
        }
    }

    private func deinitialize() {
        EVP_CIPHER_CTX_free(context)
        nonce.deallocate()
        iv.deallocate()
        additional.deallocate()
    }

    /// Takes new keys (after a KeyUpdate) with the same AEAD and version.
    public func rekey(_ keys: TLSTrafficKeys) {
        precondition(keys.aead == self.keys.aead && keys.version == self.keys.version, "rekey: another cipher")
        self.keys = keys
        storeIV()
        _ = keys.key.withUnsafeBufferPointer { key in
            sealing ? EVP_EncryptInit_ex(context, nil, nil, key.baseAddress, nil)
                    : EVP_DecryptInit_ex(context, nil, nil, key.baseAddress, nil)
        }
    }

    /// The largest record accepted, header included: 2^14 + 256 bytes of ciphertext in TLS 1.3
    /// (RFC 8446 5.2), 2^14 + 2048 in TLS 1.2 (RFC 5246 6.2.3).
    public var maximumRecord: Int { Self.headerLength + Self.maximumContent + (keys.version == .tls13 ? 256 : 2048) }

    /// The fixed part of every nonce: the 12-byte IV, or the 4-byte salt followed by zeros.
    private func storeIV() {
        for i in 0..<12 { iv[i] = i < keys.iv.count ? keys.iv[i] : 0 }
    }

    @inline(__always)
    private func setNonce(_ sequence: UInt64) {
        for i in 0..<4 { nonce[i] = iv[i] }
        for i in 0..<8 { nonce[4 + i] = iv[4 + i] ^ UInt8(truncatingIfNeeded: sequence >> (56 - 8 * UInt64(i))) }
    }

    @inline(__always)
    private func setAdditional12(_ sequence: UInt64, type: UInt8, length: Int) {
        for i in 0..<8 { additional[i] = UInt8(truncatingIfNeeded: sequence >> (56 - 8 * UInt64(i))) }
        additional[8] = type
        additional[9] = 0x03
        additional[10] = 0x03
        additional[11] = UInt8(truncatingIfNeeded: length >> 8)
        additional[12] = UInt8(truncatingIfNeeded: length)
    }

    /// Seals `content` (at most ``contentLimit`` bytes) as one record of `type` appended to `records`.
    func append(_ type: TLSContentType, _ content: UnsafeRawBufferPointer, to records: inout [UInt8]) {
        let start = records.count
        records.append(contentsOf: repeatElement(0, count: content.count + overhead))
        records.withUnsafeMutableBytes { out in
            _ = seal(type, content: content.baseAddress ?? UnsafeRawPointer(out.baseAddress! + start), length: content.count,
                     into: out.baseAddress! + start)
        }
    }

    /// Seals one record at `record`: `length` content bytes are read from `content` (which may be
    /// `record + contentOffset`, in place) and the header, nonce, inner type and tag written
    /// around them. `record` must have room for `length + overhead` bytes.
    ///
    /// - Returns: the record's length.
    public func seal(_ type: TLSContentType, content: UnsafeRawPointer, length: Int, into record: UnsafeMutableRawPointer) -> Int {
        precondition(sealing && length <= contentLimit, "seal: content past the record limit or an opening cipher")
        let sequence = keys.sequence
        keys.sequence &+= 1
        let total = length + overhead
        let out = record.assumingMemoryBound(to: UInt8.self)
        let body = total - Self.headerLength
        out[0] = keys.version == .tls13 ? TLSContentType.applicationData.rawValue : type.rawValue
        out[1] = 0x03
        out[2] = 0x03
        out[3] = UInt8(truncatingIfNeeded: body >> 8)
        out[4] = UInt8(truncatingIfNeeded: body)
        setNonce(sequence)
        EVP_EncryptInit_ex(context, nil, nil, nil, nonce)
        var written: Int32 = 0
        if keys.version == .tls13 {
            EVP_EncryptUpdate(context, nil, &written, out, 5)
        } else {
            setAdditional12(sequence, type: type.rawValue, length: length)
            EVP_EncryptUpdate(context, nil, &written, additional, 13)
            if contentOffset == 13 { (out + 5).update(from: nonce + 4, count: 8) }
        }
        let dataOut = out + contentOffset
        EVP_EncryptUpdate(context, dataOut, &written, content.assumingMemoryBound(to: UInt8.self), Int32(length))
        var sealed = length
        if keys.version == .tls13 {
            var inner = type.rawValue
            EVP_EncryptUpdate(context, dataOut + length, &written, &inner, 1)
            sealed += 1
        }
        EVP_EncryptFinal_ex(context, dataOut + sealed, &written)
        EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, 16, dataOut + sealed)
        return total
    }

    /// Opens the record of `length` bytes at `record` in place (its header checked by the caller
    /// for type and length limits).
    ///
    /// - Returns: the real content type and where the content is, counted from `record`.
    /// - Throws: bad_record_mac when authentication fails, record_overflow past ``contentLimit``
    ///   bytes of content (or a TLS 1.3 inner plaintext past 2^14 + 1 bytes with its padding),
    ///   unexpected_message for a TLS 1.3 record that is all padding.
    public func open(record: UnsafeMutableRawPointer, length: Int) throws(TLSAlert) -> (type: UInt8, offset: Int, length: Int) {
        try beginOpen(prefix: record, length: length)
        let cipherLength = length - contentOffset - keys.aead.tagLength
        openUpdate(record + contentOffset, count: cipherLength, into: record + contentOffset)
        let opened = try finishOpen(tag: record + contentOffset + cipherLength, plaintext: record + contentOffset, length: cipherLength)
        return (opened.type, contentOffset, opened.length)
    }

    /// Starts opening a record that arrives in pieces: `prefix` holds its first ``contentOffset``
    /// bytes (the header, and TLS 1.2 AES-GCM's explicit nonce), `length` is the whole record's.
    /// The ciphertext then goes through ``openUpdate(_:count:into:)`` and the tag to ``finishOpen(tag:plaintext:length:)``.
    public func beginOpen(prefix: UnsafeRawPointer, length: Int) throws(TLSAlert) {
        precondition(!sealing, "open: a sealing cipher")
        guard length >= overhead - (keys.version == .tls13 ? 1 : 0) else { throw .badRecordMAC }
        let sequence = keys.sequence
        keys.sequence &+= 1
        let bytes = prefix.assumingMemoryBound(to: UInt8.self)
        let cipherLength = length - contentOffset - keys.aead.tagLength
        openingType = bytes[0]
        setNonce(sequence)
        // TLS 1.2 AES-GCM: the explicit nonce is the peer's to choose; it travels in the record.
        if contentOffset == 13 { (nonce + 4).update(from: bytes + 5, count: 8) }
        EVP_DecryptInit_ex(context, nil, nil, nil, nonce)
        var written: Int32 = 0
        if keys.version == .tls13 {
            EVP_DecryptUpdate(context, nil, &written, bytes, 5)
        } else {
            guard cipherLength <= contentLimit else { throw .recordOverflow }
            setAdditional12(sequence, type: bytes[0], length: cipherLength)
            EVP_DecryptUpdate(context, nil, &written, additional, 13)
        }
    }

    /// Decrypts the next `count` ciphertext bytes of the record being opened from `input` to
    /// `output` (the same place, or another: decrypting a piece into a buffer is its one copy).
    /// Nothing decrypted may be used before ``finishOpen(tag:plaintext:length:)`` succeeds.
    public func openUpdate(_ input: UnsafeRawPointer, count: Int, into output: UnsafeMutableRawPointer) {
        var written: Int32 = 0
        EVP_DecryptUpdate(context, output.assumingMemoryBound(to: UInt8.self), &written,
                          input.assumingMemoryBound(to: UInt8.self), Int32(count))
    }

    /// Checks the record's `tag` and finds its content among the `length` decrypted bytes at `plaintext`.
    ///
    /// - Returns: the real content type and the content's length (from `plaintext`).
    public func finishOpen(tag: UnsafeRawPointer, plaintext: UnsafeMutableRawPointer, length: Int) throws(TLSAlert) -> (type: UInt8, length: Int) {
        var written: Int32 = 0
        EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(keys.aead.tagLength), UnsafeMutableRawPointer(mutating: tag))
        let data = plaintext.assumingMemoryBound(to: UInt8.self)
        guard EVP_DecryptFinal_ex(context, data + length, &written) == 1 else { throw .badRecordMAC }
        guard keys.version == .tls13 else { return (openingType, length) }
        // The inner plaintext, padding and type included, is 2^14 + 1 bytes at most (RFC 8446
        // section 5.4), as gnutls holds it.
        guard length <= Self.maximumContent + 1 else { throw .recordOverflow }
        var contentLength = length
        while contentLength > 0 && data[contentLength - 1] == 0 { contentLength -= 1 }
        guard contentLength > 0 else { throw .unexpectedMessage }
        contentLength -= 1
        guard contentLength <= contentLimit else { throw .recordOverflow }
        return (data[contentLength], contentLength)
    }
}
