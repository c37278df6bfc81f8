#if canImport(Glibc)
import Glibc
#endif
import CSluiceOpenSSL
import SluiceCore

/// What a ``TLSContext`` is set up with: the side, certificate and key, versions, ciphers, ALPN,
/// peer verification and tickets.
public struct TLSConfiguration: Sendable {
    /// How a client checks the server's certificate.
    public enum PeerVerification: Sendable, Equatable {
        /// Against the system's trust store (`/etc/ssl/certs`), with the server name checked.
        case systemTrustStore
        /// Against the CA certificates in one PEM file, with the server name checked.
        case trustedCertificates(path: String)
        /// Not at all (tests, `--insecure`): the connection is encrypted but not authenticated.
        case none
    }

    /// Whether a server asks each client for a certificate, and which it takes.
    public enum ClientCertificates: Sendable, Equatable {
        /// None is asked for.
        case notRequested
        /// Asked for, naming the CAs of the PEM file: a client without one is served, one whose
        /// certificate does not verify against them is refused.
        case requested(trustedCertificates: String)
        /// Required: a client is served only with a certificate that verifies against the CA
        /// certificates in the PEM file.
        case required(trustedCertificates: String)
    }

    /// Server (true) or client.
    public var isServer: Bool
    /// The PEM file of the certificate chain, leaf first: a server needs one, a client sends it
    /// to a server that asks for a certificate.
    public var certificateChainFile: String?
    /// The PEM file of the private key.
    public var privateKeyFile: String?
    /// A server without files: a fresh P-256 key and a self-signed certificate for this name,
    /// made when the context is (tests, `sluice tls selftest`; clients must not verify it).
    public var selfSignedName: String?
    /// The oldest version offered or accepted.
    public var minimumVersion: TLSVersion = .tls12
    /// The newest version offered or accepted.
    public var maximumVersion: TLSVersion = .tls13
    /// The TLS 1.3 AEADs, in order of preference (a server's order decides, except that a client
    /// that puts ChaCha20-Poly1305 first gets it).
    public var tls13AEADs: [TLSAEAD] = [.aes128GCM, .aes256GCM, .chacha20Poly1305]
    /// The TLS 1.2 AEADs, in order of preference (always with ECDHE).
    public var tls12AEADs: [TLSAEAD] = [.aes128GCM, .aes256GCM, .chacha20Poly1305]
    /// ALPN protocols in order of preference; empty for none.
    public var applicationProtocols: [String] = []
    /// How a client verifies the server.
    public var peerVerification: PeerVerification = .systemTrustStore
    /// Whether a server asks clients for certificates (mutual TLS).
    public var clientCertificates: ClientCertificates = .notRequested
    /// TLS 1.3 session tickets a server sends after each full handshake (0 turns resumption off,
    /// TLS 1.2's tickets and session ids too).
    public var ticketsPerHandshake: Int = 2

    /// A server configuration with its certificate chain and key.
    public static func server(certificateChainFile: String, privateKeyFile: String) -> TLSConfiguration {
        var configuration = TLSConfiguration(isServer: true)
        configuration.certificateChainFile = certificateChainFile
        configuration.privateKeyFile = privateKeyFile
        return configuration
    }

    /// A server configuration with a fresh key and a self-signed certificate for `name`.
    public static func server(selfSignedName name: String) -> TLSConfiguration {
        var configuration = TLSConfiguration(isServer: true)
        configuration.selfSignedName = name
        return configuration
    }

    /// A client configuration that verifies the server as `peerVerification` says.
    public static func client(peerVerification: PeerVerification = .systemTrustStore) -> TLSConfiguration {
        var configuration = TLSConfiguration(isServer: false)
        configuration.peerVerification = peerVerification
        return configuration
    }

    init(isServer: Bool) { self.isServer = isServer }
}

/// OpenSSL's `SSL_CTX`, set up once from a ``TLSConfiguration`` and shared by every connection
/// of one side: certificates, ciphers (AEADs only: the record layer carries nothing else),
/// renegotiation and compression off, the key log the record layer takes its keys from, and the
/// ticket store of a client.
public final class TLSContext: @unchecked Sendable {
    /// The configuration it was made from.
    public let configuration: TLSConfiguration
    let raw: OpaquePointer
    /// ALPN protocols in wire form (length-prefixed), for the server's selection callback.
    let alpnWire: [UInt8]
    /// A client's: a digest of what it trusts (the verification mode and the trust store's
    /// certificates), stamped on the sessions it receives as their session id context, so a
    /// session verified against other anchors is not offered (``TLSSession/reasonNotToOffer(context:serverName:address:)``).
    private(set) var trustIdentity: [UInt8] = []

    /// Sets up OpenSSL for `configuration`.
    ///
    /// - Throws: ``TLSError`` naming the file or setting OpenSSL refused.
    public init(_ configuration: TLSConfiguration) throws(TLSError) {
        self.configuration = configuration
        // ALPN's wire form prefixes each name with one byte of length, inside a 16-bit list length.
        let protocols = configuration.applicationProtocols
        guard protocols.allSatisfy({ (1...255).contains($0.utf8.count) }),
              protocols.reduce(0, { $0 + 1 + $1.utf8.count }) <= 65535
        else {
            throw TLSError("setting the ALPN protocols", hint: "each protocol name is 1 to 255 bytes", library: "")
        }
        guard let raw = SSL_CTX_new(configuration.isServer ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError("creating an OpenSSL context")
        }
        self.raw = raw
        alpnWire = configuration.applicationProtocols.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        // A throw from here on runs deinit, which frees the context.
        try setUp()
    }

    deinit { SSL_CTX_free(raw) }

    /// The OpenSSL library in use ("OpenSSL 3.0.19 27 Jan 2026").
    public static var openSSLVersion: String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }

    private func setUp() throws(TLSError) {
        let c = configuration
        guard c.minimumVersion.rawValue <= c.maximumVersion.rawValue else {
            throw TLSError("setting TLS versions", hint: "the minimum version is above the maximum", library: "")
        }
        guard sluice_ssl_ctx_set_min_proto_version(raw, Int32(c.minimumVersion.rawValue)) == 1,
              sluice_ssl_ctx_set_max_proto_version(raw, Int32(c.maximumVersion.rawValue)) == 1
        else { throw TLSError("setting TLS versions") }
        _ = SSL_CTX_set_options(raw, SLUICE_SSL_OP_NO_RENEGOTIATION | SLUICE_SSL_OP_NO_COMPRESSION)
        // A server picks by its own order of preference, but ChaCha20 for a client that puts it
        // first (one without AES instructions).
        if c.isServer { _ = SSL_CTX_set_options(raw, SLUICE_SSL_OP_CIPHER_SERVER_PREFERENCE | SLUICE_SSL_OP_PRIORITIZE_CHACHA) }
        let suites = c.tls13AEADs.map(\.tls13SuiteName).joined(separator: ":")
        guard !c.tls13AEADs.isEmpty || c.maximumVersion == .tls12, SSL_CTX_set_ciphersuites(raw, suites) == 1 else {
            throw TLSError("choosing the TLS 1.3 ciphers \(suites)", hint: "name at least one AEAD")
        }
        let list = c.tls12AEADs.map { aead in
            switch aead {
            case .aes128GCM: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
            case .aes256GCM: "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
            case .chacha20Poly1305: "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
            }
        }.joined(separator: ":")
        if c.minimumVersion == .tls12 {
            guard !list.isEmpty, SSL_CTX_set_cipher_list(raw, list) == 1 else {
                throw TLSError("choosing the TLS 1.2 ciphers", hint: "name at least one AEAD, or set the minimum version to TLS 1.3")
            }
        }
        if let chain = c.certificateChainFile {
            if let problem = Self.unreadable(chain) { throw TLSError("reading the certificate chain \(chain)", hint: problem, library: "") }
            guard SSL_CTX_use_certificate_chain_file(raw, chain) == 1 else {
                let reason = ERR_GET_REASON(ERR_peek_last_error())
                let tooWeak = [SSL_R_EE_KEY_TOO_SMALL, SSL_R_CA_KEY_TOO_SMALL, SSL_R_CA_MD_TOO_WEAK].contains(reason)
                throw TLSError("reading the certificate chain \(chain)",
                               hint: tooWeak ? "OpenSSL's default security level refuses keys under 2048 bits (RSA) or 224 (EC) and SHA-1 signatures: give a stronger certificate"
                                   : "give a PEM file, leaf certificate first")
            }
        }
        if let key = c.privateKeyFile {
            // An encrypted key fails to load instead of OpenSSL asking for a pass phrase on the terminal.
            SSL_CTX_set_default_passwd_cb(raw) { _, _, _, _ in 0 }
            if let problem = Self.unreadable(key) { throw TLSError("reading the private key \(key)", hint: problem, library: "") }
            guard SSL_CTX_use_PrivateKey_file(raw, key, SSL_FILETYPE_PEM) == 1 else {
                let code = ERR_peek_last_error()
                let mismatch = ERR_GET_LIB(code) == ERR_LIB_X509 && ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH
                throw TLSError("reading the private key \(key)",
                               hint: mismatch ? Self.otherCertificatesKey
                                   : Self.isEncrypted(key) ? "the key is encrypted and no pass phrase is asked: give it unencrypted (openssl pkey -in KEY -out PLAIN)"
                                   : "give the certificate's private key, PEM, unencrypted")
            }
            guard SSL_CTX_check_private_key(raw) == 1 else {
                throw TLSError("matching the private key \(key) to the certificate",
                               hint: Self.otherCertificatesKey)
            }
        }
        if let name = c.selfSignedName {
            guard sluice_ssl_ctx_use_self_signed(raw, name) == 1 else { throw TLSError("making a self-signed certificate for \(name)") }
        }
        SSL_CTX_set_keylog_callback(raw, tlsKeyLogCallback)
        SSL_CTX_set_info_callback(raw, tlsInfoCallback)
        if c.isServer {
            guard (c.certificateChainFile != nil && c.privateKeyFile != nil) || c.selfSignedName != nil else {
                throw TLSError("setting up a TLS server", hint: "a server needs a certificate chain and a private key (or a self-signed name)", library: "")
            }
            _ = SSL_CTX_set_num_tickets(raw, c.ticketsPerHandshake)
            if c.ticketsPerHandshake == 0 {
                // No resumption at all: no TLS 1.2 ticket, no session id kept for one either.
                _ = SSL_CTX_set_options(raw, SLUICE_SSL_OP_NO_TICKET)
                _ = sluice_ssl_ctx_set_session_cache_mode(raw, Int(SSL_SESS_CACHE_OFF))
            }
            if !alpnWire.isEmpty {
                SSL_CTX_set_alpn_select_cb(raw, tlsALPNSelectCallback, Unmanaged.passUnretained(self).toOpaque())
            }
            try setUpClientCertificates()
        } else {
            // Tickets go to the connection that received them (the new-session callback) instead of a cache.
            _ = sluice_ssl_ctx_set_session_cache_mode(raw, Int(SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE))
            SSL_CTX_sess_set_new_cb(raw, tlsNewSessionCallback)
            switch c.peerVerification {
            case .systemTrustStore:
                guard SSL_CTX_set_default_verify_paths(raw) == 1 else { throw TLSError("loading the system trust store") }
                SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, tlsVerifyCallback)
            case .trustedCertificates(let path):
                if let problem = Self.unreadable(path) { throw TLSError("reading the trusted certificates \(path)", hint: problem, library: "") }
                guard SSL_CTX_load_verify_locations(raw, path, nil) == 1 else {
                    throw TLSError("reading the trusted certificates \(path)", hint: "give a PEM file of CA certificates")
                }
                SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, tlsVerifyCallback)
            case .none:
                SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, nil)
            }
            let label = switch c.peerVerification {
            case .systemTrustStore: "system trust store"
            case .trustedCertificates: "trusted certificates"
            case .none: "no verification"
            }
            var digest = [UInt8](repeating: 0, count: 32)
            guard sluice_ssl_ctx_trust_digest(raw, label, &digest) == 1 else { throw TLSError("digesting the trusted certificates") }
            // The first byte says the mode, so a refusal can tell a session made without verification.
            digest[0] = c.peerVerification == .none ? Self.unverifiedStamp : 1
            guard SSL_CTX_set_session_id_context(raw, digest, UInt32(digest.count)) == 1 else {
                throw TLSError("stamping sessions with the trusted certificates")
            }
            trustIdentity = digest
        }
    }

    /// A server's request for client certificates: the CAs it trusts, named in the request so a
    /// client can pick its certificate, as `openssl s_server -Verify` with `-CAfile` does.
    private func setUpClientCertificates() throws(TLSError) {
        let path: String
        var mode = SSL_VERIFY_PEER
        switch configuration.clientCertificates {
        case .notRequested: return
        case .requested(let trusted): path = trusted
        case .required(let trusted):
            path = trusted
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        }
        if let problem = Self.unreadable(path) { throw TLSError("reading the client CA certificates \(path)", hint: problem, library: "") }
        guard SSL_CTX_load_verify_locations(raw, path, nil) == 1, let names = SSL_load_client_CA_file(path) else {
            throw TLSError("reading the client CA certificates \(path)", hint: "give a PEM file of CA certificates")
        }
        SSL_CTX_set_client_CA_list(raw, names)
        SSL_CTX_set_verify(raw, mode, tlsVerifyCallback)
        // OpenSSL resumes a session of a verified client only within the context it was made in.
        let contextID = Array("sluice".utf8)
        _ = SSL_CTX_set_session_id_context(raw, contextID, UInt32(contextID.count))
    }

    /// Why a server's own certificate (the chain's first) will not verify at a client now: it
    /// has expired or is not valid yet (with its date, as OpenSSL prints it), or its key usage
    /// leaves out digital signatures; nil when none of these. OpenSSL serves such a certificate
    /// without a word; every client that verifies then refuses it.
    public var certificateProblem: String? {
        guard configuration.isServer, let certificate = SSL_CTX_get0_certificate(raw) else { return nil }
        func text(_ time: UnsafePointer<ASN1_TIME>?) -> String { memoryBIOText { ASN1_TIME_print($0, time) == 1 } }
        if X509_cmp_current_time(X509_get0_notAfter(certificate)) <= 0 {
            return "the certificate expired on \(text(X509_get0_notAfter(certificate)))"
        }
        if X509_cmp_current_time(X509_get0_notBefore(certificate)) >= 0 {
            return "the certificate is not valid until \(text(X509_get0_notBefore(certificate)))"
        }
        if X509_get_extension_flags(certificate) & UInt32(EXFLAG_KUSAGE) != 0, X509_get_key_usage(certificate) & UInt32(KU_DIGITAL_SIGNATURE) == 0 {
            return "the certificate's key usage leaves out digital signatures, which every handshake makes (RFC 8446 4.4.2.2)"
        }
        return nil
    }

    /// The first byte of ``trustIdentity`` for a client that does not verify.
    static let unverifiedStamp: UInt8 = 0

    /// Whether the PEM file at `path` holds an encrypted key (PKCS#8 `ENCRYPTED PRIVATE KEY`, or a
    /// traditional key's `Proc-Type: 4,ENCRYPTED`): OpenSSL's account of it is "bad decrypt".
    static func isEncrypted(_ path: String) -> Bool {
        guard case .success(let descriptor) = RegularFile.open(path) else { return false }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 65536)
        let count = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return false }
        let marker = Array("ENCRYPTED".utf8)
        return bytes[..<count].indices.contains { bytes[$0..<count].starts(with: marker) }
    }

    /// Said of a key that does not match the chain's first certificate.
    static let otherCertificatesKey = "the key belongs to another certificate (the chain's first must be the key's own: leaf first)"

    /// Why `path` cannot be read ("cannot open it: No such file or directory (errno 2)", "a
    /// FIFO, not a regular file"), or nil: said plainly, where OpenSSL's account of a missing
    /// file is three library lines (and a FIFO would hold its open for ever).
    static func unreadable(_ path: String) -> String? { RegularFile.problem(path) }
}

/// Collects each secret OpenSSL logs into the handshake that derived it.
private func tlsKeyLogCallback(_ ssl: OpaquePointer?, _ line: UnsafePointer<CChar>?) {
    guard let ssl, let line, let box = sluice_ssl_get_app_data(ssl) else { return }
    Unmanaged<TLSSecretLog>.fromOpaque(box).takeUnretainedValue().record(line)
}

/// OpenSSL's verification with Sluice's rules for the peer's own certificate
/// (`sluice_verify_peer_rules`), noting where it first failed: the depth and the subject of
/// the certificate, which the handshake's error names.
private func tlsVerifyCallback(_ ok: Int32, _ store: OpaquePointer?) -> Int32 {
    let result = sluice_verify_peer_rules(ok, store)
    guard result == 0, let store, let ssl = sluice_store_ssl(store), let box = sluice_ssl_get_app_data(ssl) else { return result }
    let log = Unmanaged<TLSSecretLog>.fromOpaque(box).takeUnretainedValue()
    guard log.verifyFailure == nil else { return result }
    log.verifyFailure = (depth: Int(X509_STORE_CTX_get_error_depth(store)), subject: subject(of: X509_STORE_CTX_get_current_cert(store)) ?? "")
    return result
}

/// A certificate's subject in RFC 2253 form ("CN=client,O=Example"), or nil without one.
func subject(of certificate: OpaquePointer?) -> String? {
    var text = [CChar](repeating: 0, count: 1024)
    guard sluice_x509_subject(certificate, &text, Int32(text.count)) >= 0 else { return nil }
    return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// What `write` puts into a fresh memory BIO, as text; "" when it fails.
func memoryBIOText(_ write: (OpaquePointer?) -> Bool) -> String {
    guard let bio = BIO_new(BIO_s_mem()) else { return "" }
    defer { BIO_free(bio) }
    guard write(bio) else { return "" }
    var bytes = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(bio)))
    _ = bytes.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32($0.count)) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Notes the fatal alerts OpenSSL writes (the value: the level in its high byte, the description in its low one).
private func tlsInfoCallback(_ ssl: OpaquePointer?, _ kind: Int32, _ value: Int32) {
    guard kind & SLUICE_SSL_CB_WRITE_ALERT == SLUICE_SSL_CB_WRITE_ALERT, value >> 8 == 2,
          let ssl, let box = sluice_ssl_get_app_data(ssl) else { return }
    Unmanaged<TLSSecretLog>.fromOpaque(box).takeUnretainedValue().sentFatalAlert = UInt8(truncatingIfNeeded: value)
}

/// Keeps each session ticket a client receives with the handshake that received it.
private func tlsNewSessionCallback(_ ssl: OpaquePointer?, _ session: OpaquePointer?) -> Int32 {
    guard let ssl, let session, let box = sluice_ssl_get_app_data(ssl) else { return 0 }
    Unmanaged<TLSSecretLog>.fromOpaque(box).takeUnretainedValue().keep(TLSSession(taking: session))
    return 1
}

/// Picks the server's most preferred protocol the client also offers; none in common ends the handshake.
private func tlsALPNSelectCallback(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ outLength: UnsafeMutablePointer<UInt8>?,
    _ offered: UnsafePointer<UInt8>?, _ offeredLength: UInt32, _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let argument, let offered else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    let context = Unmanaged<TLSContext>.fromOpaque(argument).takeUnretainedValue()
    return context.alpnWire.withUnsafeBufferPointer { ours in
        var selected: UnsafeMutablePointer<UInt8>?
        var length: UInt8 = 0
        let result = SSL_select_next_proto(&selected, &length, ours.baseAddress, UInt32(ours.count), offered, offeredLength)
        guard result == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_ALERT_FATAL }
        // SSL_select_next_proto points into `ours` (the context's own storage, alive as long as it is).
        out?.pointee = UnsafePointer(selected)
        outLength?.pointee = length
        return SSL_TLSEXT_ERR_OK
    }
}

/// A TLS session a client can resume: OpenSSL's `SSL_SESSION` (a TLS 1.3 ticket, or a TLS 1.2
/// session), kept or moved through PEM text.
public final class TLSSession: @unchecked Sendable {
    let raw: OpaquePointer

    init(taking raw: OpaquePointer) { self.raw = raw }

    /// Reads a session from its PEM text (as `openssl s_client -sess_out` writes it).
    public init(pem: String) throws(TLSError) {
        let bio = BIO_new(BIO_s_mem())
        defer { BIO_free(bio) }
        let bytes = Array(pem.utf8)
        _ = bytes.withUnsafeBytes { BIO_write(bio, $0.baseAddress, Int32($0.count)) }
        guard let session = PEM_read_bio_SSL_SESSION(bio, nil, nil, nil) else {
            throw TLSError("reading a TLS session", hint: "give the PEM text of an SSL SESSION PARAMETERS block")
        }
        raw = session
    }

    deinit { SSL_SESSION_free(raw) }

    /// The session as PEM text (`-----BEGIN SSL SESSION PARAMETERS-----`).
    public var pem: String { memoryBIOText { PEM_write_bio_SSL_SESSION($0, raw) == 1 } }

    /// How certificate names are matched: a wildcard only as the whole leftmost label (RFC 9525
    /// section 6.3: `f*.example.test` names nothing), as curl, GnuTLS and Python match them.
    static let hostFlags = UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)

    /// Whether the certificate the server showed when the session was made names `serverName`
    /// (without a trailing dot) or, for a server reached by address, `address`: a client offers
    /// a session only to a server of that name.
    public func certificateNames(serverName: String?, address: String?) -> Bool {
        guard let certificate = SSL_SESSION_get0_peer(raw) else { return false }
        if var serverName {
            if serverName.count > 1, serverName.hasSuffix(".") { serverName.removeLast() }
            return X509_check_host(certificate, serverName, serverName.utf8.count, Self.hostFlags, nil) == 1
        }
        guard let address else { return false }
        return X509_check_ip_asc(certificate, address, 0) == 1
    }

    /// Why a client with `context` does not offer this session to `serverName` (or, reached by
    /// address, `address`), or nil when it does. OpenSSL resumes without looking at the
    /// certificate again, so a client that verifies offers a session only when the certificate
    /// it holds names the server, was verified against the same trusted certificates (a session
    /// made trusting another CA file, or without verification, does not get past `--ca`), and is
    /// still within its validity.
    public func reasonNotToOffer(context: TLSContext, serverName: String?, address: String?) -> String? {
        let verifies = context.configuration.peerVerification != .none
        if verifies, !certificateNames(serverName: serverName, address: address) {
            return "it is from a server whose certificate does not name \(serverName ?? address ?? "this server")"
        }
        // Checked without verification too: OpenSSL ends a TLS 1.2 resumption of a session
        // stamped otherwise with a fatal alert.
        var length: UInt32 = 0
        let stamp = SSL_SESSION_get0_id_context(raw, &length).map { Array(UnsafeBufferPointer(start: $0, count: Int(length))) } ?? []
        if stamp.isEmpty { return "it does not say which certificates it was verified against (saved by another program)" }
        if stamp != context.trustIdentity {
            if !verifies { return "it was made by a connection that verified the server (this one does not)" }
            return stamp[0] == TLSContext.unverifiedStamp ? "it was made without verifying the server"
                : "it was verified against other trusted certificates than this connection's"
        }
        guard verifies else { return nil }
        guard let certificate = SSL_SESSION_get0_peer(raw) else { return "it holds no server certificate" }
        if X509_cmp_current_time(X509_get0_notAfter(certificate)) <= 0 { return "the server's certificate in it has expired" }
        if X509_cmp_current_time(X509_get0_notBefore(certificate)) >= 0 { return "the server's certificate in it is not valid yet" }
        return nil
    }

    /// Whether the session can still be offered (a ticket, or a TLS 1.2 session id, within its lifetime).
    public var isResumable: Bool { SSL_SESSION_is_resumable(raw) == 1 }
}

/// The TLS 1.3 traffic secrets OpenSSL logs during one handshake, and the sessions it hands a client.
final class TLSSecretLog {
    /// The four secrets the record layer needs, by the label OpenSSL logs them under.
    static let labels = ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                         "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"].map { Array($0.utf8) }
    /// The secrets, in the order of ``labels``.
    var secrets: [[UInt8]?] = [nil, nil, nil, nil]
    /// The newest sessions received, at most ``keptSessions``.
    var sessions: [TLSSession] = []
    /// Every session received, kept or not.
    var sessionsReceived = 0
    /// The last fatal alert OpenSSL wrote: under TLS 1.3 it is encrypted, so the bytes do not tell.
    var sentFatalAlert: UInt8?
    /// Where the peer's chain first failed to verify: the certificate's depth (0: the peer's own) and subject.
    var verifyFailure: (depth: Int, subject: String)?
    /// As `s_client` keeps the newest alone: a server that sends ticket after ticket (each up
    /// to 64 KiB) must not grow the client without end; a few spare for resumptions in a row.
    static let keptSessions = 4

    /// Keeps `session`, the newest, and drops the oldest past ``keptSessions``.
    func keep(_ session: TLSSession) {
        sessionsReceived += 1
        sessions.append(session)
        if sessions.count > Self.keptSessions { sessions.removeFirst(sessions.count - Self.keptSessions) }
    }

    /// The secret logged under `label` (one of ``labels``), if it was.
    func secret(_ label: String) -> [UInt8]? {
        Self.labels.firstIndex(of: Array(label.utf8)).flatMap { secrets[$0] }
    }

    /// Takes one key-log line, "LABEL <client random> <secret>" in hex, read in place (a handshake
    /// logs several, and this runs for every one).
    func record(_ line: UnsafePointer<CChar>) {
        let bytes = UnsafeRawBufferPointer(start: line, count: strlen(line))
        guard let first = bytes.firstIndex(of: 0x20), let last = bytes.lastIndex(of: 0x20), last > first,
              let index = Self.labels.firstIndex(where: { $0.elementsEqual(bytes[..<first]) })
        else { return }
        secrets[index] = [UInt8](hex: bytes[(last + 1)...])
    }
}

extension [UInt8] {
    /// Bytes from hexadecimal digits; nil unless every pair is hex.
    init?(hex digits: some Collection<UInt8>) {
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x61...0x66: c - 0x61 + 10
            case 0x41...0x46: c - 0x41 + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var high: UInt8?
        for digit in digits {
            guard let v = value(digit) else { return nil }
            if let h = high {
                bytes.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        self = bytes
    }
}
