import CSluiceOpenSSL

/// One TLS connection without I/O: bytes from the peer go in, plaintext comes out to a closure,
/// records to send come out as bytes (``outbound``) or are sealed straight into the caller's
/// buffers.
///
/// OpenSSL runs the handshake (`TLSHandshake`, memory BIOs); then the record layer here takes
/// over both directions with the keys the handshake derived: a record wholly in the caller's
/// bytes is opened where it is, one split across calls is decrypted piece by piece into a
/// record-sized buffer of the engine's as it arrives, and records are sealed in place, with one
/// reused AEAD context per direction and nothing allocated per record. Post-handshake messages are handled here: KeyUpdate both ways, a client's
/// session tickets (sealed again as OpenSSL expects its next record and handed to it, which
/// checks them and makes the resumable session), close_notify and fatal alerts.
///
/// ```swift
/// let engine = try TLSEngine(context: context)
/// let events = engine.receive(bytes) { plaintext in use(plaintext) }
/// send(engine.outbound); engine.consumeOutbound(engine.outbound.count)
/// let length = engine.seal(reply, into: frame)
/// ```
public final class TLSEngine {
    /// Where the connection is.
    public enum State: Sendable, Equatable {
        /// The handshake is running.
        case handshaking
        /// Records flow (one direction may be closed).
        case established
        /// The connection is over: both directions closed, or a fatal alert (see ``error``).
        case closed
    }

    /// What one ``receive(_:deliver:)`` call brought about.
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The handshake finished; ``negotiated`` says what it settled on.
        public static let handshakeCompleted = Events(rawValue: 1)
        /// The peer sent close_notify: nothing more will be delivered.
        public static let readClosed = Events(rawValue: 2)
        /// The connection failed; ``error`` says why, and ``outbound`` may hold the alert to send.
        public static let failed = Events(rawValue: 4)
        /// There are bytes in ``outbound`` to send.
        public static let outboundReady = Events(rawValue: 8)
    }

    /// What the engine counted.
    public struct Counters: Sendable, Equatable {
        /// Records opened after the handshake.
        public var recordsOpened: UInt64 = 0
        /// Records sealed after the handshake.
        public var recordsSealed: UInt64 = 0
        /// KeyUpdates received from the peer.
        public var keyUpdatesReceived: UInt64 = 0
        /// KeyUpdates this side sent (asked for, or in answer).
        public var keyUpdatesSent: UInt64 = 0
        /// Session tickets a client took and handed to OpenSSL.
        public var ticketsReceived: UInt64 = 0
        /// Records whose content went to the caller without being copied first.
        public var recordsOpenedInPlace: UInt64 = 0
    }

    /// The context the connection was made from.
    public let context: TLSContext
    /// Where the connection is.
    public private(set) var state: State = .handshaking
    /// Why the connection failed, when it did.
    public private(set) var error: TLSError?
    /// What the handshake settled on (nil while it runs).
    public private(set) var negotiated: TLSNegotiated?
    /// Record bytes to send before anything sealed next: handshake flights, alerts, KeyUpdates.
    public private(set) var outbound: [UInt8] = []
    /// Whether the peer closed its direction (close_notify).
    public private(set) var isReadClosed = false
    /// Whether this side sent close_notify.
    public private(set) var isWriteClosed = false
    /// A KeyUpdate went out since the last application data: further requests need no other
    /// (RFC 8446 4.6.3 asks for one before the next application data record).
    private var keysUpdatedSinceData = false
    /// What was counted.
    public private(set) var counters = Counters()

    private var handshake: TLSHandshake?
    private var reader: TLSRecordCipher?
    private var writer: TLSRecordCipher?
    /// Bytes of one record that arrived split, until it is whole.
    private let partial: UnsafeMutableRawPointer
    private let partialCapacity = TLSRecordCipher.maximumContent + 2048 + 64
    private var partialCount = 0
    /// The length of the record in `partial` once its header is in (0 before).
    private var partialLength = 0
    /// Whether the decryption of the record in `partial` has begun.
    private var partialBegun = false
    /// Post-handshake handshake bytes not yet a whole message.
    private var handshakeBytes: [UInt8] = []
    /// Empty application records in a row: past 32, as OpenSSL counts them, a peer is only
    /// making work (each costs a decryption).
    private var emptyRecords = 0
    /// Warning alerts since the last application data or handshake record: the fifth ends the connection, as
    /// OpenSSL's MAX_WARN_ALERT_COUNT does (CVE-2016-8610: a peer sending only those is only making work).
    private var warningAlerts = 0
    /// Whether this side answered a TLS 1.2 renegotiation request with no_renegotiation (a peer
    /// that insists ends the connection: its alert then says why).
    private var declinedRenegotiation = false
    /// A TLS 1.3 client's sealer of the session tickets it hands OpenSSL: the read keys and
    /// sequence number OpenSSL was left at, which it keeps (it sees no other record after the
    /// handshake), so each ticket reaches it as the next record it expects.
    private var ticketSealer: TLSRecordCipher?
    private var sessions: [TLSSession] = []
    /// The largest post-handshake message taken, header included: OpenSSL's own bound on a
    /// NewSessionTicket (NEW_SESSION_TICKET_MAX_LENGTH), the longest such message there is.
    static let largestPostHandshakeMessage = 4 + 131_338

    /// An engine for one connection of `context`'s side. A client names the server (`serverName`,
    /// sent as SNI and checked against the certificate), or gives the address it reached it at
    /// (`peerAddress`, checked against the certificate's IP addresses when there is no name), and
    /// may offer a `session` to resume.
    public init(context: TLSContext, serverName: String? = nil, peerAddress: String? = nil,
                session: TLSSession? = nil) throws(TLSError) {
        self.context = context
        handshake = try TLSHandshake(context: context, serverName: serverName, peerAddress: peerAddress, session: session)
        partial = .allocate(byteCount: partialCapacity, alignment: 16)
    }

    deinit {
        // A TLS 1.3 client keeps OpenSSL's connection for the tickets to come; freed unshut, it
        // would mark the newest of them not resumable.
        if negotiated != nil { retireHandshake() }
        partial.deallocate()
    }

    /// Whether this engine is a server's.
    public var isServer: Bool { context.configuration.isServer }

    /// The newest sessions a client received (TLS 1.3 tickets, or its TLS 1.2 session), newest
    /// last; at most four are kept, as a peer may send tickets without end.
    public var resumableSessions: [TLSSession] {
        guard let handshake else { return sessions }
        return Array((sessions + handshake.log.sessions).suffix(TLSSecretLog.keptSessions))
    }

    /// Starts a client's handshake: the ClientHello goes to ``outbound``. A server waits for bytes.
    public func start() -> Events {
        guard !isServer, state == .handshaking else { return [] }
        return runHandshake(deliver: { _ in })
    }

    /// Forgets the first `count` bytes of ``outbound`` (they were sent).
    public func consumeOutbound(_ count: Int) {
        outbound.removeFirst(min(count, outbound.count))
    }

    /// Takes bytes from the peer. Plaintext goes to `deliver` in record-sized pieces, in order,
    /// in place (in `bytes` itself or the engine's buffer); it is valid only during the call.
    public func receive(_ bytes: UnsafeMutableRawBufferPointer, deliver: (UnsafeMutableRawBufferPointer) -> Void) -> Events {
        guard state != .closed, bytes.count > 0 else { return [] }
        if state == .handshaking {
            handshake!.feed(UnsafeRawBufferPointer(bytes))
            return runHandshake(deliver: deliver)
        }
        return receiveRecords(bytes, deliver: deliver)
    }

    private func runHandshake(deliver: (UnsafeMutableRawBufferPointer) -> Void) -> Events {
        let before = outbound.count
        var events: Events = []
        switch handshake!.advance(output: &outbound) {
        case .needMore:
            break
        case .failed(let failure):
            error = failure
            state = .closed
            events.insert(.failed)
        case .done:
            do throws(TLSError) {
                let handoff = try handshake!.handoff()
                let limit = handoff.negotiated.maximumFragment
                reader = try TLSRecordCipher(keys: handoff.readKeys, sealing: false, contentLimit: limit)
                writer = try TLSRecordCipher(keys: handoff.writeKeys, sealing: true, contentLimit: limit)
                negotiated = handoff.negotiated
                state = .established
                events.insert(.handshakeCompleted)
                if !isServer && handoff.negotiated.version == .tls13 {
                    ticketSealer = try TLSRecordCipher(keys: handoff.readKeys, sealing: true, contentLimit: limit)
                } else {
                    retireHandshake()
                }
                var leftover = handoff.leftover
                if !leftover.isEmpty {
                    events.formUnion(leftover.withUnsafeMutableBytes { receiveRecords($0, deliver: deliver) })
                }
            } catch {
                self.error = error
                state = .closed
                events.insert(.failed)
            }
        }
        if outbound.count > before { events.insert(.outboundReady) }
        return events
    }

    /// Drops OpenSSL's connection once nothing more goes to it, keeping the sessions it made.
    private func retireHandshake() {
        if let handshake {
            sessions = Array((sessions + handshake.log.sessions).suffix(TLSSecretLog.keptSessions))
            // OpenSSL marks the session of a connection freed without a shutdown as not resumable;
            // this one finished its handshake, and the record layer carries it on.
            SSL_set_shutdown(handshake.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN)
        }
        handshake = nil
        ticketSealer = nil
    }

    private func receiveRecords(_ bytes: UnsafeMutableRawBufferPointer, deliver: (UnsafeMutableRawBufferPointer) -> Void) -> Events {
        var events: Events = []
        let base = bytes.baseAddress!
        var at = 0
        let before = outbound.count
        // After the peer's close_notify, whatever follows is ignored, not even opened (RFC 8446
        // section 6.1, RFC 5246 7.2.1).
        while at < bytes.count && state == .established && !isReadClosed {
            if partialCount == 0 {
                // Whole records in the caller's bytes open where they are.
                let available = bytes.count - at
                if available >= 5 {
                    let length = 5 + (Int(base.load(fromByteOffset: at + 3, as: UInt8.self)) << 8
                                      | Int(base.load(fromByteOffset: at + 4, as: UInt8.self)))
                    if let alert = checkHeader(base + at, length: length) {
                        events.formUnion(fail(alert, "a record header"))
                        break
                    }
                    if length <= available {
                        events.formUnion(processRecord(base + at, length: length, deliver: deliver))
                        at += length
                        continue
                    }
                }
            }
            // A record split across calls: its header (and TLS 1.2's explicit nonce) gathers in
            // `partial`, then its ciphertext is decrypted piece by piece from the caller's bytes
            // straight into `partial` (the one pass a copy would have made) and its tag copied;
            // nothing of it is delivered until the tag checks.
            if partialCount == 0 {
                partialLength = 0
                partialBegun = false
            }
            if partialLength == 0 {
                let take = min(5 - partialCount, bytes.count - at)
                (partial + partialCount).copyMemory(from: base + at, byteCount: take)
                partialCount += take
                at += take
                guard partialCount == 5 else { continue }
                partialLength = 5 + (Int(partial.load(fromByteOffset: 3, as: UInt8.self)) << 8
                                     | Int(partial.load(fromByteOffset: 4, as: UInt8.self)))
                if let alert = checkHeader(partial, length: partialLength) {
                    events.formUnion(fail(alert, "a record header"))
                    break
                }
            }
            let reader = reader!
            let prefix = reader.contentOffset
            if partialCount < prefix {
                let take = min(prefix - partialCount, bytes.count - at)
                (partial + partialCount).copyMemory(from: base + at, byteCount: take)
                partialCount += take
                at += take
                guard partialCount == prefix else { continue }
            }
            if !partialBegun {
                partialBegun = true
                do throws(TLSAlert) { try reader.beginOpen(prefix: partial, length: partialLength) } catch {
                    events.formUnion(fail(error, "opening a record"))
                    break
                }
            }
            let available = bytes.count - at
            let tagStart = partialLength - reader.keys.aead.tagLength
            if partialCount < tagStart {
                let take = min(tagStart - partialCount, available)
                reader.openUpdate(base + at, count: take, into: partial + partialCount)
                partialCount += take
                at += take
            } else {
                let take = min(partialLength - partialCount, available)
                (partial + partialCount).copyMemory(from: base + at, byteCount: take)
                partialCount += take
                at += take
            }
            guard partialCount == partialLength else { continue }
            partialCount = 0
            do throws(TLSAlert) {
                let opened = try reader.finishOpen(tag: partial + tagStart, plaintext: partial + prefix, length: tagStart - prefix)
                events.formUnion(dispatch(opened.type, UnsafeMutableRawBufferPointer(start: partial + prefix, count: opened.length),
                                          inPlace: false, deliver: deliver))
            } catch {
                events.formUnion(fail(error, "opening a record"))
            }
        }
        if outbound.count > before { events.insert(.outboundReady) }
        return events
    }

    /// The header's own faults: a type the version does not carry, or a length past the limit.
    private func checkHeader(_ record: UnsafeMutableRawPointer, length: Int) -> TLSAlert? {
        let type = record.load(as: UInt8.self)
        guard length <= reader!.maximumRecord else { return .recordOverflow }
        // TLS 1.3 protects every record after the handshake: any other outer type (a plaintext
        // ChangeCipherSpec, alert or handshake) is unexpected, whatever its length (RFC 8446 section 5).
        if reader!.keys.version == .tls13 && type != TLSContentType.applicationData.rawValue { return .unexpectedMessage }
        // Shorter than its nonce and tag: it cannot authenticate.
        guard length >= reader!.overhead - (reader!.keys.version == .tls13 ? 1 : 0) else { return .badRecordMAC }
        if reader!.keys.version == .tls13 { return nil }
        // TLS 1.2's AAD carries the negotiated version, not the header's: the header is checked here, as OpenSSL does.
        guard record.load(fromByteOffset: 1, as: UInt8.self) == 3, record.load(fromByteOffset: 2, as: UInt8.self) == 3 else {
            return .protocolVersion
        }
        return (21...23).contains(type) ? nil : .unexpectedMessage
    }

    /// Opens a whole record where it lies in the caller's bytes and acts on it.
    private func processRecord(_ record: UnsafeMutableRawPointer, length: Int,
                               deliver: (UnsafeMutableRawBufferPointer) -> Void) -> Events {
        let opened: (type: UInt8, offset: Int, length: Int)
        do throws(TLSAlert) {
            opened = try reader!.open(record: record, length: length)
        } catch {
            return fail(error, "opening a record")
        }
        return dispatch(opened.type, UnsafeMutableRawBufferPointer(start: record + opened.offset, count: opened.length),
                        inPlace: true, deliver: deliver)
    }

    /// Acts on one opened record's content.
    private func dispatch(_ type: UInt8, _ content: UnsafeMutableRawBufferPointer, inPlace: Bool,
                          deliver: (UnsafeMutableRawBufferPointer) -> Void) -> Events {
        counters.recordsOpened += 1
        // A handshake message may span records, but no other record may come between its pieces.
        if type != TLSContentType.handshake.rawValue && !handshakeBytes.isEmpty {
            return fail(.unexpectedMessage, "a record inside a handshake message")
        }
        switch type {
        case TLSContentType.applicationData.rawValue:
            if content.count > 0 {
                emptyRecords = 0
                warningAlerts = 0
                if inPlace { counters.recordsOpenedInPlace += 1 }
                deliver(content)
            } else {
                emptyRecords += 1
                if emptyRecords > 32 { return fail(.unexpectedMessage, "more than 32 empty records in a row") }
            }
            return []
        case TLSContentType.alert.rawValue:
            return receiveAlert(UnsafeRawBufferPointer(content))
        case TLSContentType.handshake.rawValue:
            return receiveHandshake(UnsafeRawBufferPointer(content))
        default:
            return fail(.unexpectedMessage, "a record of type \(type)")
        }
    }

    private func receiveAlert(_ content: UnsafeRawBufferPointer) -> Events {
        guard content.count == 2 else { return fail(.decodeError, "an alert of \(content.count) bytes") }
        let alert = TLSAlert(content[1])
        if alert == .closeNotify {
            isReadClosed = true
            if isWriteClosed { state = .closed }
            return .readClosed
        }
        // TLS 1.2 warnings other than close_notify are noted and passed over; TLS 1.3 has none but user_canceled.
        if content[0] == 1 && (reader!.keys.version == .tls12 || alert == TLSAlert(90)) {
            warningAlerts += 1
            return warningAlerts < 5 ? [] : fail(.unexpectedMessage, "5 warning alerts in a row")
        }
        error = TLSError("the connection", receivedAlert: alert,
                         hint: declinedRenegotiation ? "after Sluice declined the peer's TLS 1.2 renegotiation, which it does not do"
                             : alert == .certificateRequired ? "the server requires a client certificate: configure a certificate chain and its key" : "",
                         library: "")
        state = .closed
        return .failed
    }

    private func receiveHandshake(_ content: UnsafeRawBufferPointer) -> Events {
        // Zero-length handshake fragments are forbidden (RFC 8446 section 5.1).
        guard content.count > 0 else { return fail(.unexpectedMessage, "an empty handshake record") }
        warningAlerts = 0
        handshakeBytes.append(contentsOf: content)
        var events: Events = []
        while handshakeBytes.count >= 4 && state == .established {
            let type = handshakeBytes[0]
            let length = Int(handshakeBytes[1]) << 16 | Int(handshakeBytes[2]) << 8 | Int(handshakeBytes[3])
            // A KeyUpdate is one byte: refused at its header, not after 16 MiB of body.
            if type == 24 && length != 1 && reader!.keys.version == .tls13 { return fail(.decodeError, "a KeyUpdate of \(length) bytes") }
            // Each message by the length its header gives: a NewSessionTicket's ticket alone may
            // take 2^16-1 bytes (RFC 8446 section 4.6.1), its extensions more; the buffer then
            // holds at most one message and a record.
            guard 4 + length <= Self.largestPostHandshakeMessage else {
                return fail(.illegalParameter, "a post-handshake message of \(4 + length) bytes, past \(Self.largestPostHandshakeMessage)")
            }
            guard handshakeBytes.count >= 4 + length else { break }
            let body = Array(handshakeBytes[4..<4 + length])
            handshakeBytes.removeFirst(4 + length)
            if reader!.keys.version == .tls12 {
                // Renegotiation is off: a server's HelloRequest or a client's new ClientHello gets a
                // no_renegotiation warning (RFC 5246 7.4.1.2, as OpenSSL answers); anything else ends it.
                if (type == 0 && !isServer && length == 0) || (type == 1 && isServer) {
                    sealControl(.alert, [1, TLSAlert.noRenegotiation.code])
                    declinedRenegotiation = true
                    continue
                }
                return fail(.unexpectedMessage, "a TLS 1.2 handshake message after the handshake")
            }
            switch type {
            case 24:
                // RFC 8446 section 4.6.3: any value but update_not_requested or update_requested.
                guard body[0] <= 1 else { return fail(.illegalParameter, "a KeyUpdate asking for \(body[0])") }
                // A key change must end its record (RFC 8446 5.1).
                guard handshakeBytes.isEmpty else { return fail(.unexpectedMessage, "a KeyUpdate not at a record's end") }
                reader!.rekey(reader!.keys.updated())
                counters.keyUpdatesReceived += 1
                if body[0] == 1 && !isWriteClosed && !keysUpdatedSinceData { updateKeys(requestPeerUpdate: false) }
            case 4 where !isServer:
                guard takeTicket(body) else { return fail(.decodeError, "reading a NewSessionTicket") }
            default:
                return fail(.unexpectedMessage, "handshake message \(type) after the handshake")
            }
        }
        events.insert(outbound.isEmpty ? [] : .outboundReady)
        return events
    }

    /// Hands a NewSessionTicket's `body` to OpenSSL, sealed as the next records it expects
    /// (within the record limit); false when OpenSSL refuses the message.
    private func takeTicket(_ body: [UInt8]) -> Bool {
        guard let handshake, let sealer = ticketSealer else { return true }
        let message = [4, UInt8(truncatingIfNeeded: body.count >> 16), UInt8(truncatingIfNeeded: body.count >> 8),
                       UInt8(truncatingIfNeeded: body.count)] + body
        var records: [UInt8] = []
        message.withUnsafeBytes { bytes in
            for at in stride(from: 0, to: bytes.count, by: sealer.contentLimit) {
                sealer.append(.handshake, UnsafeRawBufferPointer(rebasing: bytes[at..<min(at + sealer.contentLimit, bytes.count)]), to: &records)
            }
        }
        let before = handshake.log.sessionsReceived
        let accepted = records.withUnsafeBytes { handshake.processPostHandshake(records: $0) }
        counters.ticketsReceived += UInt64(handshake.log.sessionsReceived - before)
        return accepted
    }

    /// Ends the connection with a fatal `alert` (sent when the write keys allow).
    private func fail(_ alert: TLSAlert, _ what: String) -> Events {
        if writer != nil && !isWriteClosed { sealControl(.alert, [2, alert.code]) }
        isWriteClosed = true
        error = TLSError(what, sentAlert: alert, library: "")
        state = .closed
        return [.failed, .outboundReady]
    }

    func sealControl(_ type: TLSContentType, _ content: [UInt8]) {
        content.withUnsafeBytes { writer!.append(type, $0, to: &outbound) }
        counters.recordsSealed += 1
    }

    /// The keys of both directions with their next sequence numbers, for handing the records to
    /// the kernel (kTLS): nil unless the connection is established with nothing half-received and
    /// nothing waiting in ``outbound``. (Tickets a TLS 1.3 client receives after that reach the
    /// kernel's reader as control records.)
    public var offloadableKeys: (read: TLSTrafficKeys, write: TLSTrafficKeys)? {
        // The kernel seals records of 2^14 bytes whatever max_fragment_length said.
        guard state == .established, partialCount == 0, handshakeBytes.isEmpty, outbound.isEmpty,
              let reader, let writer, writer.contentLimit == TLSRecordCipher.maximumContent
        else { return nil }
        return (reader.keys, writer.keys)
    }

    // MARK: sending

    /// Bytes a sealed record adds to its content (header, explicit nonce, inner type, tag).
    public var recordOverhead: Int { writer?.overhead ?? (5 + 8 + 16 + 1) }

    /// The most content one record carries (2^14, or less after max_fragment_length): what
    /// ``seal(_:into:)`` takes at a time.
    public var maximumContent: Int { writer?.contentLimit ?? TLSRecordCipher.maximumContent }

    /// Where a record's content starts after its header (for sealing in place).
    public var contentOffset: Int { writer?.contentOffset ?? 5 }

    /// Whether application data can be sealed now: established, not closed for writing, and
    /// ``outbound`` empty (what it holds must go first).
    public var canSeal: Bool { state == .established && !isWriteClosed && outbound.isEmpty && writer != nil }

    /// Seals `content` (at most ``maximumContent`` bytes) as one application-data record into `record`, which
    /// needs room for `content.count + recordOverhead` bytes. `content` may lie at
    /// `record + contentOffset` (sealing in place).
    ///
    /// - Returns: the record's length, or 0 when ``canSeal`` is false.
    public func seal(_ content: UnsafeRawBufferPointer, into record: UnsafeMutableRawPointer) -> Int {
        guard canSeal, content.count <= writer!.contentLimit else { return 0 }
        counters.recordsSealed += 1
        keysUpdatedSinceData = false
        return writer!.seal(.applicationData, content: content.baseAddress ?? UnsafeRawPointer(record), length: content.count, into: record)
    }

    /// TLS 1.3: sends a KeyUpdate (into ``outbound``) and seals everything after it with the next
    /// keys; `requestPeerUpdate` asks the peer to do the same. Does nothing on TLS 1.2.
    public func updateKeys(requestPeerUpdate: Bool) {
        guard state == .established, !isWriteClosed, let writer, writer.keys.version == .tls13 else { return }
        sealControl(.handshake, [24, 0, 0, 1, requestPeerUpdate ? 1 : 0])
        writer.rekey(writer.keys.updated())
        counters.keyUpdatesSent += 1
        keysUpdatedSinceData = true
    }

    /// Sends close_notify (into ``outbound``): nothing more is sealed. Receiving goes on until the peer's.
    public func close() {
        guard state == .established, !isWriteClosed else {
            if state == .handshaking { state = .closed }
            return
        }
        sealControl(.alert, [1, TLSAlert.closeNotify.code])
        isWriteClosed = true
        if isReadClosed { state = .closed }
    }
}
