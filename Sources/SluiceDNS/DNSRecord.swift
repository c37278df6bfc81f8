import SluicePackets

/// A question: a name, a type and a class.
public struct DNSQuestion: Hashable, Sendable {
    public var name: DNSName
    public var type: DNSRecordType
    /// The class: 1 (IN) in practice.
    public var recordClass: UInt16 = 1

    /// A question for `type` records of `name` in class IN.
    public init(name: DNSName, type: DNSRecordType, recordClass: UInt16 = 1) {
        self.name = name
        self.type = type
        self.recordClass = recordClass
    }
}

/// A resource record's data, decoded for the types this module knows and kept as bytes for
/// the rest (RFC 3597).
public enum DNSRecordData: Hashable, Sendable {
    case a(IPv4Address)
    case aaaa(IPv6Address)
    /// NS, CNAME, PTR: one name.
    case name(DNSName)
    case soa(primary: DNSName, mailbox: DNSName, serial: UInt32, refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32)
    case mx(preference: UInt16, exchange: DNSName)
    /// One or more character strings of up to 255 bytes each.
    case txt([[UInt8]])
    case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
    case caa(flags: UInt8, tag: [UInt8], value: [UInt8])
    /// Any other type, as its bytes.
    case opaque([UInt8])
}

/// A resource record.
public struct DNSRecord: Hashable, Sendable, CustomStringConvertible {
    public var name: DNSName
    public var type: DNSRecordType
    public var recordClass: UInt16 = 1
    public var ttl: UInt32
    public var data: DNSRecordData

    /// A record of class IN.
    public init(name: DNSName, type: DNSRecordType, ttl: UInt32, data: DNSRecordData, recordClass: UInt16 = 1) {
        self.name = name
        self.type = type
        self.ttl = ttl
        self.data = data
        self.recordClass = recordClass
    }

    /// The type an RRSIG covers (its first two bytes of data); `nil` for other records.
    var coveredType: DNSRecordType? {
        guard type == .rrsig, case .opaque(let bytes) = data, bytes.count >= 2 else { return nil }
        return DNSRecordType(rawValue: UInt16(bytes[0]) << 8 | UInt16(bytes[1]))
    }

    /// Whether this record is in the same set as `other`: same owner and type (for RRSIGs, the
    /// same type covered).
    func isInSet(of other: DNSRecord) -> Bool {
        type == other.type && name == other.name && coveredType == other.coveredType
    }

    /// The target an SVCB or HTTPS record names (RFC 9460 section 2.2), `nil` for `.` (the owner
    /// itself, or in AliasMode no service) and for other types.
    var serviceTarget: DNSName? {
        guard type == .svcb || type == .https, case .opaque(let bytes) = data, bytes.count > 3 else { return nil }
        var end = 2
        while end < bytes.count, bytes[end] != 0 { end += 1 + Int(bytes[end]) }
        guard end > 2, end < bytes.count else { return nil }
        return DNSName(wire: Array(bytes[2...end]))
    }

    /// The server an NS, MX or SRV record names: where its glue belongs.
    var server: DNSName? {
        switch data {
        case .name(let target) where type == .ns: target
        case .mx(_, let exchange): exchange
        case .srv(_, _, _, let target): target
        default: nil
        }
    }

    /// Puts the owner and every name in the data in lower case.
    mutating func lowercaseNames() {
        name = name.lowercased
        switch data {
        case .name(let target): data = .name(target.lowercased)
        case let .soa(primary, mailbox, serial, refresh, retry, expire, minimum):
            data = .soa(primary: primary.lowercased, mailbox: mailbox.lowercased, serial: serial, refresh: refresh,
                        retry: retry, expire: expire, minimum: minimum)
        case let .mx(preference, exchange): data = .mx(preference: preference, exchange: exchange.lowercased)
        case let .srv(priority, weight, port, target): data = .srv(priority: priority, weight: weight, port: port, target: target.lowercased)
        case .a, .aaaa, .txt, .caa, .opaque: break
        }
    }

    /// The data's wire form with names whole, the key of the canonical order of records in a set
    /// (RFC 4034 section 6.3; names already in lower case).
    var canonicalData: [UInt8] {
        func big<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
        switch data {
        case .a(let address): return big(address.rawValue)
        case .aaaa(let address): return big(address.high) + big(address.low)
        case .name(let name): return name.wire
        case let .soa(primary, mailbox, serial, refresh, retry, expire, minimum):
            return primary.wire + mailbox.wire + [serial, refresh, retry, expire, minimum].flatMap(big)
        case let .mx(preference, exchange): return big(preference) + exchange.wire
        case .txt(let strings): return strings.flatMap { [UInt8(truncatingIfNeeded: $0.count)] + $0 }
        case let .srv(priority, weight, port, target): return big(priority) + big(weight) + big(port) + target.wire
        case let .caa(flags, tag, value): return [flags, UInt8(truncatingIfNeeded: tag.count)] + tag + value
        case .opaque(let bytes): return bytes
        }
    }

    /// The record in zone file form: `name ttl IN TYPE data`.
    public var description: String { "\(name) \(ttl) \(recordClass == 1 ? "IN" : "CLASS\(recordClass)") \(type) \(dataText)" }

    /// The data in presentation form, as `dig +short` prints it.
    public var dataText: String {
        switch data {
        case .a(let address): return address.description
        case .aaaa(let address): return address.description
        case .name(let name): return name.description
        case let .soa(primary, mailbox, serial, refresh, retry, expire, minimum):
            return "\(primary) \(mailbox) \(serial) \(refresh) \(retry) \(expire) \(minimum)"
        case let .mx(preference, exchange): return "\(preference) \(exchange)"
        case .txt(let strings): return strings.map(Self.quoted).joined(separator: " ")
        case let .srv(priority, weight, port, target): return "\(priority) \(weight) \(port) \(target)"
        case let .caa(flags, tag, value): return "\(flags) \(String(decoding: tag, as: UTF8.self)) \(Self.quoted(value))"
        case .opaque(let bytes):
            if let text = Self.presentation(type: type, bytes) { return text }
            return "\\# \(bytes.count)" + (bytes.isEmpty ? "" : " " + bytes.map { String($0, radix: 16, uppercase: true).leftPadded(2) }.joined())
        }
    }

    static func quoted(_ bytes: [UInt8]) -> String {
        var text = "\""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): text += "\\" + String(UnicodeScalar(byte))
            case 0x20...0x7E: text.append(Character(UnicodeScalar(byte)))
            default: text += "\\" + String(byte).leftPadded(3)
            }
        }
        return text + "\""
    }

    /// Decodes the data of a record of `type` whose `length` bytes start at `offset` in `message`
    /// (names in it may point anywhere before them).
    public static func decodeData(_ message: UnsafeRawBufferPointer, type: DNSRecordType, at offset: Int,
                                  length: Int) throws(DNSError) -> DNSRecordData {
        let end = offset + length
        guard end <= message.count else { throw .truncated }
        func name(_ at: Int) throws(DNSError) -> (DNSName, Int) {
            let (name, next) = try DNSWire.name(message, at: at)
            guard next <= end else { throw .truncated }
            return (name, next)
        }
        func bytes(_ from: Int, _ to: Int) -> [UInt8] { Array(message[from..<to]) }
        switch type {
        case .a:
            guard length == 4 else { throw .truncated }
            return .a(IPv4Address(rawValue: DNSWire.u32(message, offset)))
        case .aaaa:
            guard length == 16 else { throw .truncated }
            return .aaaa(IPv6Address(networkBytesAt: message.baseAddress! + offset))
        case .ns, .cname, .ptr, .dname:
            let (target, next) = try name(offset)
            guard next == end else { throw .truncated }
            return .name(target)
        case .minfo:
            // RFC 1035's names, which a sender may compress: kept whole.
            let (mailbox, afterMailbox) = try name(offset)
            let (errors, afterErrors) = try name(afterMailbox)
            guard afterErrors == end else { throw .truncated }
            return .opaque(mailbox.wire + errors.wire)
        case .soa:
            let (primary, afterPrimary) = try name(offset)
            let (mailbox, afterMailbox) = try name(afterPrimary)
            guard afterMailbox + 20 == end else { throw .truncated }
            let v = (0..<5).map { DNSWire.u32(message, afterMailbox + $0 * 4) }
            return .soa(primary: primary, mailbox: mailbox, serial: v[0], refresh: v[1], retry: v[2], expire: v[3], minimum: v[4])
        case .mx:
            guard length >= 3 else { throw .truncated }
            let (exchange, next) = try name(offset + 2)
            guard next == end else { throw .truncated }
            return .mx(preference: DNSWire.u16(message, offset), exchange: exchange)
        case .txt:
            var strings: [[UInt8]] = []
            var position = offset
            while position < end {
                let count = Int(message[position])
                guard position + 1 + count <= end else { throw .truncated }
                strings.append(bytes(position + 1, position + 1 + count))
                position += 1 + count
            }
            guard !strings.isEmpty else { throw .truncated }
            return .txt(strings)
        case .srv:
            guard length >= 7 else { throw .truncated }
            let (target, next) = try name(offset + 6)
            guard next == end else { throw .truncated }
            return .srv(priority: DNSWire.u16(message, offset), weight: DNSWire.u16(message, offset + 2),
                        port: DNSWire.u16(message, offset + 4), target: target)
        case .caa:
            guard length >= 2 else { throw .truncated }
            let tagLength = Int(message[offset + 1])
            guard offset + 2 + tagLength <= end else { throw .truncated }
            return .caa(flags: message[offset], tag: bytes(offset + 2, offset + 2 + tagLength), value: bytes(offset + 2 + tagLength, end))
        default:
            return .opaque(bytes(offset, end))
        }
    }

    /// Writes the record (name, type, class, TTL, length and data) with `writer`, compressing
    /// names where RFC 3597 allows it (NS, CNAME, PTR, SOA, MX, MINFO) as Knot does; SRV targets stay
    /// whole. The owner is a pointer to `ownerHint` when that is not 0 (where the same name is
    /// already). `false` when it does not fit: the writer is back where it was.
    public func write(to writer: inout DNSWriter, ownerHint: Int = 0) -> Bool {
        let start = writer.count
        guard let ownerPlace = writer.write(owner: name.wire, hint: ownerHint), writer.write(type.rawValue),
              writer.write(recordClass), writer.write(ttl), writer.write(UInt16(0))
        else { writer.rewind(to: start); return false }
        let lengthAt = writer.count - 2
        writer.dataNamePlace = 0
        guard Self.writeData(data, of: type, to: &writer) else { writer.rewind(to: start); return false }
        writer.base.storeBytes(of: UInt16(writer.count - lengthAt - 2).bigEndian, toByteOffset: lengthAt, as: UInt16.self)
        writer.ownerPlace = ownerPlace
        return true
    }

    static func writeData(_ data: DNSRecordData, of type: DNSRecordType, to writer: inout DNSWriter) -> Bool {
        switch data {
        case .a(let address): return writer.write(address.rawValue)
        case .aaaa(let address):
            var bytes = [UInt8](repeating: 0, count: 16)
            bytes.withUnsafeMutableBytes { address.store(networkBytesAt: $0.baseAddress!) }
            return writer.write(bytes: bytes)
        // A DNAME's target is never compressed (RFC 6672 section 2.5).
        case .name(let name): return writer.write(dataName: name.wire, compress: type != .dname)
        case let .soa(primary, mailbox, serial, refresh, retry, expire, minimum):
            return writer.write(dataName: primary.wire) && writer.write(name: mailbox.wire) && writer.write(serial)
                && writer.write(refresh) && writer.write(retry) && writer.write(expire) && writer.write(minimum)
        case let .mx(preference, exchange): return writer.write(preference) && writer.write(dataName: exchange.wire)
        case .txt(let strings):
            for string in strings where !(string.count <= 255 && writer.write(UInt8(string.count)) && writer.write(bytes: string)) {
                return false
            }
            return true
        case let .srv(priority, weight, port, target):
            return writer.write(priority) && writer.write(weight) && writer.write(port) && writer.write(dataName: target.wire, compress: false)
        case let .caa(flags, tag, value):
            return tag.count <= 255 && writer.write(flags) && writer.write(UInt8(tag.count)) && writer.write(bytes: tag)
                && writer.write(bytes: value)
        case .opaque(let bytes) where type == .minfo:
            // Compressed as SOA's two names, as Knot writes them (RFC 3597 section 4).
            var split = 0
            while split < bytes.count, bytes[split] != 0 { split += 1 + Int(bytes[split]) }
            split += 1
            guard split < bytes.count else { return writer.write(bytes: bytes) }
            return writer.write(dataName: Array(bytes[..<split])) && writer.write(name: Array(bytes[split...]))
        case .opaque(let bytes): return writer.write(bytes: bytes)
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
