import CSluiceOpenSSL

/// What a finished handshake hands the record layer: the version and AEAD, the keys of both
/// directions with the sequence numbers OpenSSL left them at, and the bytes that arrived past
/// the handshake.
struct TLSHandoff {
    var negotiated: TLSNegotiated
    var readKeys: TLSTrafficKeys
    var writeKeys: TLSTrafficKeys
    var leftover: [UInt8]
}

/// What a handshake settled on.
public struct TLSNegotiated: Sendable, Equatable {
    /// The protocol version.
    public var version: TLSVersion
    /// The AEAD protecting records.
    public var aead: TLSAEAD
    /// The cipher suite's IANA number and OpenSSL name.
    public var cipherSuite: UInt16
    /// The cipher suite's standard name (`TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`).
    public var cipherSuiteName: String
    /// The ALPN protocol both sides chose, if any.
    public var applicationProtocol: String?
    /// The server name the client sent (SNI), if any.
    public var serverName: String?
    /// Whether the handshake resumed an earlier session (a ticket or a TLS 1.2 session id).
    public var resumed: Bool
    /// The subject (RFC 2253 form, "CN=client,O=Example") of the certificate the peer presented
    /// and this side verified: a client's, on a server that asks for one
    /// (``TLSConfiguration/clientCertificates``); the server's, on a client that verifies it.
    /// `nil` when none was presented or verified.
    public var peerCertificateSubject: String? = nil
    /// The most content a record carries, both ways: 2^14, or the smaller size the client asked
    /// for with max_fragment_length (RFC 6066 section 4) and the server granted.
    public var maximumFragment: Int = TLSRecordCipher.maximumContent
}

/// One handshake through OpenSSL over memory BIOs: bytes in, bytes out, no socket inside.
///
/// OpenSSL runs the handshake with its own record layer; when it is done, the keys come from
/// its key log (TLS 1.3 traffic secrets) or its session (TLS 1.2 master secret and randoms), and
/// the sequence numbers from the records it exchanged: every byte it wrote and every byte it
/// read is kept until then, so the records it sealed under the application keys (a server's
/// tickets) can be counted by opening them.
final class TLSHandshake {
    let ssl: OpaquePointer
    private let readBIO: OpaquePointer
    private let writeBIO: OpaquePointer
    let log = TLSSecretLog()
    let isServer: Bool
    /// A client that checks the server's certificate.
    private let verifiesPeer: Bool
    /// A client that checks the server's certificate, or a server that asks for the client's.
    private let verifiesCertificates: Bool
    private var fed: [UInt8] = []
    private var written: [UInt8] = []

    init(context: TLSContext, serverName: String?, peerAddress: String?, session: TLSSession?) throws(TLSError) {
        guard let ssl = SSL_new(context.raw) else { throw TLSError("creating an OpenSSL connection") }
        self.ssl = ssl
        isServer = context.configuration.isServer
        verifiesPeer = !isServer && context.configuration.peerVerification != .none
        verifiesCertificates = verifiesPeer || isServer && context.configuration.clientCertificates != .notRequested
        readBIO = BIO_new(BIO_s_mem())
        writeBIO = BIO_new(BIO_s_mem())
        // An empty memory BIO reads as "retry later", not end of file.
        _ = sluice_bio_set_mem_eof_return(readBIO, -1)
        _ = sluice_bio_set_mem_eof_return(writeBIO, -1)
        SSL_set_bio(ssl, readBIO, writeBIO)
        _ = sluice_ssl_set_app_data(ssl, Unmanaged.passUnretained(log).toOpaque())
        if isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if var serverName {
                // SNI carries a host name without its trailing dot (RFC 6066 section 3), and the
                // certificate names it so too.
                if serverName.count > 1, serverName.hasSuffix(".") { serverName.removeLast() }
                // A throw from here on runs deinit, which frees the connection.
                guard sluice_ssl_set_host_name(ssl, serverName) == 1 else {
                    throw TLSError("setting the server name \(serverName)", hint: "give a host name of 1 to 253 bytes")
                }
                if verifiesPeer {
                    SSL_set1_host(ssl, serverName)
                    SSL_set_hostflags(ssl, TLSSession.hostFlags)
                }
            } else if let peerAddress, verifiesPeer {
                // Reached by address: the certificate must name that address.
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), peerAddress)
            }
            if !context.alpnWire.isEmpty {
                _ = context.alpnWire.withUnsafeBufferPointer { SSL_set_alpn_protos(ssl, $0.baseAddress, UInt32($0.count)) }
            }
            // OpenSSL resumes without looking at the certificate again: a session made for
            // another server, under other trust, or past its certificate's validity is not offered.
            if let session, session.reasonNotToOffer(context: context, serverName: serverName, address: peerAddress) == nil {
                SSL_set_session(ssl, session.raw)
            }
        }
    }

    deinit { SSL_free(ssl) }

    enum Step {
        case needMore
        case done
        case failed(TLSError)
    }

    /// Gives OpenSSL bytes from the peer.
    func feed(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        fed.append(contentsOf: bytes)
        _ = BIO_write(readBIO, bytes.baseAddress, Int32(bytes.count))
    }

    /// Runs the handshake as far as the bytes fed allow; what OpenSSL wrote goes to `output`.
    func advance(output: inout [UInt8]) -> Step {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        let reason = ERR_peek_error()
        let start = output.count
        collect(into: &output)
        if result == 1 {
            // A resumed session carries the verdict on the certificate from when it was made (a
            // session saved by an unverified connection among them): not verified then is not
            // verified now. Nothing more is sent, the client's Finished included.
            let verdict = SSL_get_verify_result(ssl)
            guard !verifiesPeer || SSL_session_reused(ssl) != 1 || verdict == X509_V_OK else {
                output.removeSubrange(start...)
                return .failed(TLSError("resuming a session",
                                        hint: "the server's certificate did not verify when the session was made ("
                                            + String(cString: X509_verify_cert_error_string(verdict)) + "): connect without it"))
            }
            return .done
        }
        let code = SSL_get_error(ssl, result)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return .needMore }
        let received = ERR_GET_REASON(reason) >= SSL_AD_REASON_OFFSET ? TLSAlert(UInt8(truncatingIfNeeded: ERR_GET_REASON(reason) - SSL_AD_REASON_OFFSET)) : nil
        let verify = SSL_get_verify_result(ssl)
        let hint = if verify != X509_V_OK {
            "the certificate did not verify: \(String(cString: X509_verify_cert_error_string(verify)))"
                + (log.verifyFailure.map { failure in
                    " (" + (failure.depth == 0 ? "the peer's own certificate" : "the chain's certificate at depth \(failure.depth)")
                        + (failure.subject.isEmpty ? "" : ", \(failure.subject)") + ")"
                } ?? "")
                + (verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ? " (the trusted CA file must hold the root the chain ends in)" : "")
        } else if isServer && ERR_GET_REASON(reason) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE {
            "the client sent no certificate, which this server requires"
        } else if !isServer && SSL_get_client_CA_list(ssl) != nil && SSL_get_certificate(ssl) == nil {
            // The server's CertificateRequest came (TLS 1.2 refuses a client without one with handshake_failure).
            "the server asked for a client certificate and this side has none: configure a certificate chain and its key"
        } else if received == .handshakeFailure {
            // What a peer says when no suite, version or group is shared (among other refusals).
            "if the peer shares none of the suites this side takes: those are AES-GCM or ChaCha20-Poly1305 with ECDHE, no CBC"
        } else {
            ""
        }
        return .failed(TLSError("the TLS handshake", sentAlert: received == nil ? log.sentFatalAlert.map(TLSAlert.init) ?? sentAlert(in: output) : nil,
                                receivedAlert: received, hint: hint))
    }

    /// The alert OpenSSL queued last, when it is a plaintext alert record.
    private func sentAlert(in output: [UInt8]) -> TLSAlert? {
        guard output.count >= 7, output[output.count - 7] == TLSContentType.alert.rawValue else { return nil }
        return TLSAlert(output[output.count - 1])
    }

    private func collect(into output: inout [UInt8]) {
        while true {
            let pending = Int(BIO_ctrl_pending(writeBIO))
            guard pending > 0 else { return }
            let start = output.count
            output.append(contentsOf: repeatElement(0, count: pending))
            let got = output.withUnsafeMutableBytes { BIO_read(writeBIO, $0.baseAddress! + start, Int32(pending)) }
            output.removeLast(pending - Int(max(got, 0)))
            written.append(contentsOf: output[start...])
        }
    }

    /// Gives OpenSSL post-handshake records (a client's NewSessionTicket) to process; false
    /// when it refuses them (a malformed ticket: it would send decode_error).
    func processPostHandshake(records: UnsafeRawBufferPointer) -> Bool {
        _ = BIO_write(readBIO, records.baseAddress, Int32(records.count))
        var sink: UInt8 = 0
        ERR_clear_error()
        let result = SSL_read(ssl, &sink, 1)
        let code = SSL_get_error(ssl, result)
        ERR_clear_error()
        // What OpenSSL would send (an alert under keys the record layer has moved past) is not sent.
        _ = BIO_ctrl(writeBIO, BIO_CTRL_RESET, 0, nil)
        return result <= 0 && code == SSL_ERROR_WANT_READ
    }

    /// The keys and sequence numbers for the record layer, once ``advance(output:)`` said done.
    func handoff() throws(TLSError) -> TLSHandoff {
        guard let cipher = SSL_get_current_cipher(ssl) else { throw TLSError("reading the negotiated cipher") }
        let suite = SSL_CIPHER_get_protocol_id(cipher)
        let versionCode = UInt16(truncatingIfNeeded: SSL_version(ssl))
        guard let aead = TLSAEAD(suite: suite), let version = TLSVersion(rawValue: versionCode) else {
            throw TLSError("taking over the records", hint: "cipher suite 0x\(String(suite, radix: 16)) is not an AEAD Sluice carries", library: "")
        }
        var alpnPointer: UnsafePointer<UInt8>?
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnPointer, &alpnLength)
        let alpn = alpnPointer.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self) }
        let serverName = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
        let negotiated = TLSNegotiated(
            version: version, aead: aead, cipherSuite: suite,
            cipherSuiteName: SSL_CIPHER_standard_name(cipher).map { String(cString: $0) } ?? "",
            applicationProtocol: alpn, serverName: serverName, resumed: SSL_session_reused(ssl) == 1,
            peerCertificateSubject: verifiesCertificates ? Self.verifiedPeerSubject(ssl) : nil,
            maximumFragment: Self.maximumFragment(ssl))

        // What OpenSSL has not read yet goes to the record layer.
        var leftover = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(readBIO)))
        if !leftover.isEmpty {
            _ = leftover.withUnsafeMutableBytes { BIO_read(readBIO, $0.baseAddress, Int32($0.count)) }
        }
        let consumed = Array(fed.prefix(fed.count - leftover.count))

        var readKeys: TLSTrafficKeys
        var writeKeys: TLSTrafficKeys
        if version == .tls13 {
            let (ourLabel, peerLabel) = isServer ? ("SERVER", "CLIENT") : ("CLIENT", "SERVER")
            guard let readSecret = log.secret("\(peerLabel)_TRAFFIC_SECRET_0"),
                  let writeSecret = log.secret("\(ourLabel)_TRAFFIC_SECRET_0"),
                  let readHandshake = log.secret("\(peerLabel)_HANDSHAKE_TRAFFIC_SECRET"),
                  let writeHandshake = log.secret("\(ourLabel)_HANDSHAKE_TRAFFIC_SECRET")
            else { throw TLSError("taking over the records", hint: "OpenSSL logged no TLS 1.3 traffic secrets", library: "") }
            readKeys = TLSTrafficKeys(tls13Secret: readSecret, aead: aead)
            writeKeys = TLSTrafficKeys(tls13Secret: writeSecret, aead: aead)
            readKeys.sequence = try Self.applicationRecords13(in: consumed, handshake: TLSTrafficKeys(tls13Secret: readHandshake, aead: aead), application: readKeys)
            writeKeys.sequence = try Self.applicationRecords13(in: written, handshake: TLSTrafficKeys(tls13Secret: writeHandshake, aead: aead), application: writeKeys)
        } else {
            guard let session = SSL_get_session(ssl) else { throw TLSError("reading the TLS 1.2 session") }
            var master = [UInt8](repeating: 0, count: 48)
            let masterLength = SSL_SESSION_get_master_key(session, &master, master.count)
            var clientRandom = [UInt8](repeating: 0, count: 32), serverRandom = [UInt8](repeating: 0, count: 32)
            _ = SSL_get_client_random(ssl, &clientRandom, 32)
            _ = SSL_get_server_random(ssl, &serverRandom, 32)
            let keys = TLSTrafficKeys.tls12(aead: aead, masterSecret: Array(master.prefix(masterLength)),
                                            clientRandom: clientRandom, serverRandom: serverRandom)
            readKeys = isServer ? keys.client : keys.server
            writeKeys = isServer ? keys.server : keys.client
            readKeys.sequence = Self.recordsAfterChangeCipherSpec(in: consumed)
            writeKeys.sequence = Self.recordsAfterChangeCipherSpec(in: written)
        }
        fed = []
        written = []
        return TLSHandoff(negotiated: negotiated, readKeys: readKeys, writeKeys: writeKeys, leftover: leftover)
    }

    /// The subject of the peer's certificate, when it verified.
    private static func verifiedPeerSubject(_ ssl: OpaquePointer) -> String? {
        guard SSL_get_verify_result(ssl) == X509_V_OK else { return nil }
        return subject(of: SSL_get0_peer_certificate(ssl))
    }

    /// The record size max_fragment_length settled on: codes 1 to 4 are 2^9 to 2^12 bytes.
    private static func maximumFragment(_ ssl: OpaquePointer) -> Int {
        guard let session = SSL_get_session(ssl) else { return TLSRecordCipher.maximumContent }
        let code = Int(SSL_SESSION_get_max_fragment_length(session))
        return (1...4).contains(code) ? 256 << code : TLSRecordCipher.maximumContent
    }

    /// Calls `body` with each whole record (header included) in `stream`.
    private static func forEachRecord(in stream: [UInt8], _ body: (UInt8, ArraySlice<UInt8>) throws(TLSError) -> Void) throws(TLSError) {
        var at = 0
        while at + 5 <= stream.count {
            let length = Int(stream[at + 3]) << 8 | Int(stream[at + 4])
            guard at + 5 + length <= stream.count else { break }
            try body(stream[at], stream[at..<at + 5 + length])
            at += 5 + length
        }
    }

    /// TLS 1.2: the records sealed under the new keys, the ones after the first ChangeCipherSpec.
    private static func recordsAfterChangeCipherSpec(in stream: [UInt8]) -> UInt64 {
        var count: UInt64 = 0
        var switched = false
        try? forEachRecord(in: stream) { type, _ in
            if switched { count += 1 } else if type == TLSContentType.changeCipherSpec.rawValue { switched = true }
        }
        return count
    }

    /// TLS 1.3: the records under the application keys. Encrypted records open with the
    /// handshake keys until the first that does not; from there each must open with the application
    /// keys. Before the first that opens with the handshake keys, those that open with neither are
    /// early data the server rejected and skipped (RFC 8446 section 4.2.10).
    private static func applicationRecords13(in stream: [UInt8], handshake: TLSTrafficKeys, application: TLSTrafficKeys) throws(TLSError) -> UInt64 {
        let handshakeCipher = try TLSRecordCipher(keys: handshake, sealing: false)
        let applicationCipher = try TLSRecordCipher(keys: application, sealing: false)
        var inHandshake = false
        var inApplication = false
        try forEachRecord(in: stream) { type, record throws(TLSError) in
            guard type == TLSContentType.applicationData.rawValue else { return }
            var copy = Array(record)
            if !inApplication {
                let opened = copy.withUnsafeMutableBytes { bytes in
                    (try? handshakeCipher.open(record: bytes.baseAddress!, length: bytes.count)) != nil
                }
                if opened { inHandshake = true }
                if opened || !inHandshake { return }
                inApplication = true
                copy = Array(record)
            }
            let opened = copy.withUnsafeMutableBytes { bytes in
                (try? applicationCipher.open(record: bytes.baseAddress!, length: bytes.count)) != nil
            }
            guard opened else {
                throw TLSError("taking over the records", hint: "a record OpenSSL exchanged opens with neither the handshake nor the application keys", library: "")
            }
        }
        return applicationCipher.keys.sequence
    }
}
