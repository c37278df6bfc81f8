import CSluiceOpenSSL

/// A TLS protocol version Sluice speaks: 1.2 and 1.3.
public enum TLSVersion: UInt16, Sendable, CustomStringConvertible {
    /// TLS 1.2 (RFC 5246), AEAD ciphers only.
    case tls12 = 0x0303
    /// TLS 1.3 (RFC 8446).
    case tls13 = 0x0304

    public var description: String { self == .tls12 ? "TLSv1.2" : "TLSv1.3" }
}

/// The AEAD that protects records: the three TLS 1.3 ciphers, which TLS 1.2 uses too (RFC 5288, RFC 7905).
public enum TLSAEAD: Sendable, CaseIterable, CustomStringConvertible {
    /// AES-128-GCM.
    case aes128GCM
    /// AES-256-GCM.
    case aes256GCM
    /// ChaCha20-Poly1305.
    case chacha20Poly1305

    /// Key bytes.
    public var keyLength: Int {
        switch self {
        case .aes128GCM: 16
        case .aes256GCM, .chacha20Poly1305: 32
        }
    }

    /// Authentication tag bytes.
    public var tagLength: Int { 16 }

    /// OpenSSL's name for the cipher.
    public var openSSLName: String {
        switch self {
        case .aes128GCM: "AES-128-GCM"
        case .aes256GCM: "AES-256-GCM"
        case .chacha20Poly1305: "ChaCha20-Poly1305"
        }
    }

    /// The TLS 1.3 cipher suite name that uses this AEAD (RFC 8446 B.4).
    public var tls13SuiteName: String {
        switch self {
        case .aes128GCM: "TLS_AES_128_GCM_SHA256"
        case .aes256GCM: "TLS_AES_256_GCM_SHA384"
        case .chacha20Poly1305: "TLS_CHACHA20_POLY1305_SHA256"
        }
    }

    public var description: String { openSSLName }

    /// The AEAD of a cipher suite by its IANA number; nil for suites Sluice does not carry (CBC, CCM).
    public init?(suite: UInt16) {
        switch suite {
        case 0x1301, 0xC02B, 0xC02F, 0x009E: self = .aes128GCM
        case 0x1302, 0xC02C, 0xC030, 0x009F: self = .aes256GCM
        case 0x1303, 0xCCA8, 0xCCA9, 0xCCAA: self = .chacha20Poly1305
        default: return nil
        }
    }
}

/// A TLS record content type.
public enum TLSContentType: UInt8, Sendable {
    /// ChangeCipherSpec: TLS 1.2's key switch, TLS 1.3's middlebox-compatibility record.
    case changeCipherSpec = 20
    /// An alert.
    case alert = 21
    /// Handshake messages.
    case handshake = 22
    /// Application data.
    case applicationData = 23
}

/// A TLS alert description (RFC 8446 6): the ones the record layer sends, and any other by number.
public struct TLSAlert: Error, Hashable, Sendable, CustomStringConvertible {
    /// The alert's number.
    public var code: UInt8

    /// An alert by number.
    public init(_ code: UInt8) { self.code = code }

    /// The orderly end of one direction.
    public static let closeNotify = TLSAlert(0)
    /// A record arrived that its state does not allow.
    public static let unexpectedMessage = TLSAlert(10)
    /// A record failed authentication.
    public static let badRecordMAC = TLSAlert(20)
    /// A record past the length limit.
    public static let recordOverflow = TLSAlert(22)
    /// The handshake failed.
    public static let handshakeFailure = TLSAlert(40)
    /// A field held a value the protocol does not allow.
    public static let illegalParameter = TLSAlert(47)
    /// A message could not be parsed.
    public static let decodeError = TLSAlert(50)
    /// A record claimed another protocol version.
    public static let protocolVersion = TLSAlert(70)
    /// Something failed inside this side.
    public static let internalError = TLSAlert(80)
    /// The peer asked for renegotiation, which Sluice refuses (TLS 1.2).
    public static let noRenegotiation = TLSAlert(100)
    /// A TLS 1.3 server requires a client certificate the client did not send.
    public static let certificateRequired = TLSAlert(116)

    public var description: String {
        switch code {
        case 0: "close_notify"
        case 10: "unexpected_message"
        case 20: "bad_record_mac"
        case 22: "record_overflow"
        case 21: "decryption_failed"
        case 30: "decompression_failure"
        case 40: "handshake_failure"
        case 42: "bad_certificate"
        case 43: "unsupported_certificate"
        case 44: "certificate_revoked"
        case 45: "certificate_expired"
        case 46: "certificate_unknown"
        case 47: "illegal_parameter"
        case 48: "unknown_ca"
        case 49: "access_denied"
        case 50: "decode_error"
        case 51: "decrypt_error"
        case 70: "protocol_version"
        case 71: "insufficient_security"
        case 80: "internal_error"
        case 86: "inappropriate_fallback"
        case 90: "user_canceled"
        case 100: "no_renegotiation"
        case 109: "missing_extension"
        case 110: "unsupported_extension"
        case 112: "unrecognized_name"
        case 113: "bad_certificate_status_response"
        case 115: "unknown_psk_identity"
        case 116: "certificate_required"
        case 120: "no_application_protocol"
        default: "\(code)"
        }
    }
}

/// A failure of the TLS stage: what was being done, OpenSSL's own account when it had one, the
/// alert that went to the peer or came from it, and what to do.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    /// What was being done ("reading the certificate /etc/cert.pem", "the handshake").
    public var operation: String
    /// OpenSSL's error queue, oldest first, as text; empty when OpenSSL had nothing to say.
    public var library: String
    /// The alert sent to the peer, when this side ended the connection.
    public var sentAlert: TLSAlert?
    /// The alert the peer sent, when the peer ended it.
    public var receivedAlert: TLSAlert?
    /// What to do about it; empty when there is nothing useful to say.
    public var hint: String

    /// An error; `library` defaults to OpenSSL's error queue, which this drains.
    public init(_ operation: String, sentAlert: TLSAlert? = nil, receivedAlert: TLSAlert? = nil, hint: String = "",
                library: String? = nil) {
        self.operation = operation
        self.library = library ?? TLSError.drainOpenSSLErrors()
        self.sentAlert = sentAlert
        self.receivedAlert = receivedAlert
        self.hint = hint
    }

    public var description: String {
        var text = "\(operation) failed"
        if !library.isEmpty { text += ": \(library)" }
        if let sentAlert { text += " (sent alert \(sentAlert))" }
        if let receivedAlert { text += " (peer sent alert \(receivedAlert))" }
        if !hint.isEmpty { text += "; \(hint)" }
        return text
    }

    /// OpenSSL's queued errors as one line, and the queue emptied.
    static func drainOpenSSLErrors() -> String {
        var parts: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            parts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return parts.joined(separator: "; ")
    }
}
