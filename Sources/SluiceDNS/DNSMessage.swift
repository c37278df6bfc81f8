/// EDNS(0) as an OPT record carries it (RFC 6891).
public struct DNSEDNS: Hashable, Sendable {
    /// The largest UDP payload the sender takes.
    public var payloadSize: UInt16 = 1232
    /// The upper 8 bits of the 12-bit response code.
    public var extendedResponseCode: UInt8 = 0
    /// The version (0).
    public var version: UInt8 = 0
    /// DO: DNSSEC records wanted.
    public var dnssecOK = false
    /// The options, as their bytes.
    public var options: [UInt8] = []

    /// EDNS(0) with `payloadSize`.
    public init(payloadSize: UInt16 = 1232) { self.payloadSize = payloadSize }
}

/// A whole message, decoded into values: for clients, tools and tests. The authoritative
/// responder does not build one; it reads and writes the query's frame in place.
public struct DNSMessage: Hashable, Sendable {
    public var header = DNSHeader()
    public var questions: [DNSQuestion] = []
    public var answers: [DNSRecord] = []
    public var authority: [DNSRecord] = []
    /// The additional section without its OPT record, which is ``edns``.
    public var additional: [DNSRecord] = []
    public var edns: DNSEDNS?

    /// An empty message.
    public init() {}

    /// The full response code: the header's 4 bits and EDNS's 8.
    public var responseCode: DNSResponseCode {
        DNSResponseCode(rawValue: UInt16(edns?.extendedResponseCode ?? 0) << 4 | UInt16(header.responseCode))
    }

    /// Decodes `bytes`.
    ///
    /// - Throws: ``DNSError`` for a message that is cut short, whose counts exceed it, whose
    ///   names break the rules, or whose OPT record is not one, at the root, in the additional section.
    public static func decode(_ bytes: [UInt8]) throws(DNSError) -> DNSMessage {
        let result = bytes.withUnsafeBytes { buffer in Result { () throws(DNSError) in try decode(buffer) } }
        return try result.get()
    }

    /// Decodes the message in `buffer`.
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(DNSError) -> DNSMessage {
        guard buffer.count >= DNSWire.headerLength else { throw .truncated }
        var message = DNSMessage()
        message.header = DNSHeader(buffer)
        // Every question takes at least 5 bytes and every record 11: larger counts cannot fit.
        let h = message.header
        let least = Int(h.questionCount) * 5 + (Int(h.answerCount) + Int(h.authorityCount) + Int(h.additionalCount)) * 11
        guard DNSWire.headerLength + least <= buffer.count else { throw .badCount }
        var offset = DNSWire.headerLength
        for _ in 0..<h.questionCount {
            let (name, end) = try DNSWire.name(buffer, at: offset)
            guard end + 4 <= buffer.count else { throw .truncated }
            message.questions.append(DNSQuestion(name: name, type: DNSRecordType(rawValue: DNSWire.u16(buffer, end)),
                                                 recordClass: DNSWire.u16(buffer, end + 2)))
            offset = end + 4
        }
        for section in 0..<3 {
            let count = [h.answerCount, h.authorityCount, h.additionalCount][section]
            for _ in 0..<count {
                let (name, end) = try DNSWire.name(buffer, at: offset)
                guard end + 10 <= buffer.count else { throw .truncated }
                let type = DNSRecordType(rawValue: DNSWire.u16(buffer, end))
                let recordClass = DNSWire.u16(buffer, end + 2)
                let ttl = DNSWire.u32(buffer, end + 4)
                let length = Int(DNSWire.u16(buffer, end + 8))
                let dataStart = end + 10
                guard dataStart + length <= buffer.count else { throw .truncated }
                if type == .opt {
                    guard section == 2, message.edns == nil, name == .root else { throw .badOPT }
                    var edns = DNSEDNS(payloadSize: recordClass)
                    edns.extendedResponseCode = UInt8(ttl >> 24)
                    edns.version = UInt8((ttl >> 16) & 0xFF)
                    edns.dnssecOK = ttl & 0x8000 != 0
                    edns.options = Array(buffer[dataStart..<(dataStart + length)])
                    message.edns = edns
                } else {
                    let data = try DNSRecord.decodeData(buffer, type: type, at: dataStart, length: length)
                    let record = DNSRecord(name: name, type: type, ttl: ttl, data: data, recordClass: recordClass)
                    switch section {
                    case 0: message.answers.append(record)
                    case 1: message.authority.append(record)
                    default: message.additional.append(record)
                    }
                }
                offset = dataStart + length
            }
        }
        return message
    }

    /// Encodes the message with names compressed as Knot DNS compresses them (a response from
    /// Knot comes back byte for byte), the counts taken from the sections.
    public func encode() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 65535)
        let count = bytes.withUnsafeMutableBytes { buffer in
            var writer = DNSWriter(base: buffer.baseAddress!, capacity: buffer.count, count: DNSWire.headerLength)
            for question in questions {
                _ = writer.write(name: question.name.wire, compress: false)
                _ = writer.write(question.type.rawValue)
                _ = writer.write(question.recordClass)
            }
            if !questions.isEmpty { writer.compressAgainstQuestion() }
            var sets = DNSSetWriter()
            for (section, records) in [answers, authority, additional].enumerated() {
                for (index, record) in records.enumerated() {
                    if index == 0 || !record.isInSet(of: records[index - 1]) { sets.beginSet(record, section: section) }
                    _ = sets.write(record, to: &writer)
                }
            }
            if let edns { _ = Self.writeOPT(edns, to: &writer) }
            var header = self.header
            header.questionCount = UInt16(questions.count)
            header.answerCount = UInt16(answers.count)
            header.authorityCount = UInt16(authority.count)
            header.additionalCount = UInt16(additional.count + (edns == nil ? 0 : 1))
            header.store(buffer.baseAddress!)
            return writer.count
        }
        return Array(bytes[..<count])
    }

    /// Writes an OPT record for `edns`.
    static func writeOPT(_ edns: DNSEDNS, to writer: inout DNSWriter) -> Bool {
        let ttl = UInt32(edns.extendedResponseCode) << 24 | UInt32(edns.version) << 16 | (edns.dnssecOK ? 0x8000 : 0)
        return writer.write(UInt8(0)) && writer.write(DNSRecordType.opt.rawValue) && writer.write(edns.payloadSize)
            && writer.write(ttl) && writer.write(UInt16(edns.options.count)) && writer.write(bytes: edns.options)
    }
}
