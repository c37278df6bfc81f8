import SluicePackets

/// Reads zone files in the master file format of RFC 1035 section 5: `$ORIGIN`, `$TTL`, `$INCLUDE`,
/// relative names and `@`, owners left blank for the previous one, TTL and class in either
/// order, parentheses across lines, comments, quoted strings with escapes, TTLs with units
/// (`1h30m`), the types this module knows (DS, DNSKEY, SSHFP, TLSA, HINFO, NAPTR, SVCB, HTTPS, APL,
/// IPSECKEY and RRSIG among them, kept as wire bytes) and any other as `TYPEnnn \# length hex` (RFC 3597).
public enum DNSZoneFile {
    struct Token {
        var bytes: [UInt8]
        var quoted: Bool
        var text: String { String(decoding: bytes, as: UTF8.self) }

        /// The token as a character string: a quoted one is decoded already; an unquoted one
        /// keeps its escapes (for names) until now. `nil` for a bad `\DDD`, or a quote left
        /// unescaped in an unquoted one (Knot refuses both).
        var string: [UInt8]? {
            guard !quoted else { return bytes }
            var decoded: [UInt8] = []
            var index = 0
            while index < bytes.count {
                if bytes[index] == UInt8(ascii: "\"") { return nil }
                guard bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count else {
                    decoded.append(bytes[index])
                    index += 1
                    continue
                }
                guard let (value, length) = DNSZoneFile.escape(bytes, at: index) else { return nil }
                decoded.append(value)
                index += length
            }
            return decoded
        }
    }

    /// The byte the escape at `index` (a backslash with a byte after it) stands for, and its
    /// length: `\X` is X, `\DDD` the decimal byte; `nil` for a `\DDD` that is not one.
    static func escape(_ bytes: [UInt8], at index: Int) -> (value: UInt8, length: Int)? {
        let escaped = bytes[index + 1]
        guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(escaped) else { return (escaped, 2) }
        guard index + 3 < bytes.count, let value = UInt8(String(decoding: bytes[(index + 1)...(index + 3)], as: UTF8.self)) else {
            return nil
        }
        return (value, 4)
    }

    struct Entry {
        var line: Int
        var ownerBlank: Bool
        var tokens: [Token]
    }

    /// Reads the file at a path for `$INCLUDE`; `nil` when it cannot be read.
    public typealias IncludeReader = (String) -> String?

    /// Parses `text` into records, names relative to `origin` until a `$ORIGIN` says otherwise.
    /// `$INCLUDE file [origin]` reads `file` with `include`, a relative path from `directory` (the
    /// including file's); without `include` it is an error.
    public static func parse(_ text: String, origin: DNSName, directory: String = ".", include: IncludeReader? = nil)
        throws(DNSError) -> [DNSRecord] {
        try parse(text, origin: origin, defaultTTL: nil, directory: directory, include: include, depth: 0)
    }

    /// Includes nested deeper than this are refused (a file that includes itself).
    static let includeDepthLimit = 8

    static func parse(_ text: String, origin: DNSName, defaultTTL: UInt32?, directory: String, include: IncludeReader?, depth: Int)
        throws(DNSError) -> [DNSRecord] {
        var records: [DNSRecord] = []
        var origin = origin
        var defaultTTL = defaultTTL
        var owner: DNSName?
        for entry in try entries(Array(text.utf8)) {
            let line = entry.line
            func fail(_ reason: String) -> DNSError { .zoneSyntax(line: line, reason: reason) }
            var tokens = entry.tokens[...]
            guard let first = tokens.first else { continue }
            if !first.quoted, first.text.hasPrefix("$") {
                switch first.text.uppercased() {
                case "$ORIGIN":
                    guard tokens.count == 2, let name = DNSName(tokens[tokens.startIndex + 1].text, origin: origin) else {
                        throw fail("$ORIGIN needs one name")
                    }
                    origin = name
                case "$TTL":
                    guard tokens.count == 2, let ttl = ttl(tokens[tokens.startIndex + 1].text) else { throw fail("$TTL needs one TTL") }
                    defaultTTL = ttl
                case "$INCLUDE":
                    // RFC 1035 section 5.1: the file's records under the origin given (or this one)
                    // and this $TTL; its own $ORIGIN and $TTL end with it.
                    guard let include else { throw fail("$INCLUDE needs a zone read from a file") }
                    guard (2...3).contains(tokens.count), depth < includeDepthLimit else {
                        throw fail(tokens.count < 2 ? "$INCLUDE needs a file" : "$INCLUDE: a file name and an origin at most, \(includeDepthLimit) deep at most")
                    }
                    let file = tokens[tokens.startIndex + 1].text
                    let path = file.hasPrefix("/") ? file : directory + "/" + file
                    var includedOrigin = origin
                    if tokens.count == 3 {
                        guard let name = DNSName(tokens[tokens.startIndex + 2].text, origin: origin) else { throw fail("$INCLUDE: bad origin") }
                        includedOrigin = name
                    }
                    guard let included = include(path) else {
                        throw fail("$INCLUDE: cannot read \(path): missing, not readable to this user, or not a regular file")
                    }
                    let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
                    do {
                        records += try parse(included, origin: includedOrigin, defaultTTL: defaultTTL, directory: parent.isEmpty ? "/" : parent,
                                             include: include, depth: depth + 1)
                    } catch {
                        guard case .zoneSyntax(let innerLine, let reason) = error else { throw error }
                        throw fail("in \(path) line \(innerLine): \(reason)")
                    }
                default:
                    throw fail("\(first.text) is not supported (only $ORIGIN, $TTL and $INCLUDE)")
                }
                continue
            }
            if !entry.ownerBlank {
                guard let name = DNSName(first.text, origin: origin) else { throw fail("bad owner name \(first.text)") }
                owner = name
                tokens = tokens.dropFirst()
            }
            guard let recordOwner = owner else { throw fail("a record without an owner") }
            var recordTTL: UInt32?
            var sawClass = false
            while let token = tokens.first, DNSRecordType(token.text) == nil {
                if let value = ttl(token.text), recordTTL == nil {
                    recordTTL = value
                } else if token.text.uppercased() == "IN", !sawClass {
                    sawClass = true
                } else {
                    throw fail("expected a TTL, a class or a type, not \(token.text)")
                }
                tokens = tokens.dropFirst()
            }
            guard let typeToken = tokens.first, let type = DNSRecordType(typeToken.text) else { throw fail("no record type") }
            // Meta-types (RFC 6895 section 3.1: OPT, TKEY, TSIG, IXFR, AXFR, MAILB, MAILA, ANY) are
            // no data a zone holds: Knot refuses them, and an OPT would end up in an answer.
            guard type != .opt, !(249...255).contains(type.rawValue) else { throw fail("\(typeToken.text) is a meta-type, not a record type a zone holds") }
            tokens = tokens.dropFirst()
            let data = try recordData(type: type, Array(tokens), origin: origin, line: line)
            // A record without a TTL takes $TTL's, or with none yet Knot's default of an hour (not
            // RFC 1035's last one given).
            records.append(DNSRecord(name: recordOwner, type: type, ttl: recordTTL ?? defaultTTL ?? Self.defaultTTL, data: data))
        }
        return records
    }

    /// The TTL of a record that gives none before any `$TTL`, as Knot's `default-ttl`.
    static let defaultTTL: UInt32 = 3600

    /// A number in ASCII decimal digits alone, as Knot reads every number in a zone file (no
    /// sign, no other script's digits); `nil` otherwise or past `T`'s range.
    static func decimal<T: FixedWidthInteger>(_ text: some StringProtocol, as type: T.Type) -> T? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return T(text)
    }

    /// A TTL in seconds, or with units: `3600`, `1h`, `1h30m`, `2w`.
    static func ttl(_ text: String) -> UInt32? {
        if let value = decimal(text, as: UInt32.self) { return value }
        var total: UInt64 = 0
        var number: UInt64?
        for character in text.lowercased().utf8 {
            if character >= UInt8(ascii: "0"), character <= UInt8(ascii: "9") {
                number = (number ?? 0) * 10 + UInt64(character - UInt8(ascii: "0"))
                guard number! <= UInt64(UInt32.max) else { return nil }
                continue
            }
            let unit: UInt64
            switch character {
            case UInt8(ascii: "s"): unit = 1
            case UInt8(ascii: "m"): unit = 60
            case UInt8(ascii: "h"): unit = 3600
            case UInt8(ascii: "d"): unit = 86400
            case UInt8(ascii: "w"): unit = 604_800
            default: return nil
            }
            guard let value = number else { return nil }
            total += value * unit
            number = nil
        }
        guard number == nil, total > 0 || text.first == "0", total <= UInt64(UInt32.max) else { return nil }
        return UInt32(total)
    }

    static func recordData(type: DNSRecordType, _ tokens: [Token], origin: DNSName, line: Int) throws(DNSError) -> DNSRecordData {
        func fail(_ reason: String) -> DNSError { .zoneSyntax(line: line, reason: "\(type): \(reason)") }
        func name(_ index: Int) throws(DNSError) -> DNSName {
            guard index < tokens.count, let name = DNSName(tokens[index].text, origin: origin) else { throw fail("bad name") }
            return name
        }
        func number<T: FixedWidthInteger>(_ index: Int, as: T.Type) throws(DNSError) -> T {
            guard index < tokens.count, let value = Self.decimal(tokens[index].text, as: T.self) else { throw fail("bad number") }
            return value
        }
        func count(_ expected: Int) throws(DNSError) {
            guard tokens.count == expected else { throw fail("\(expected) fields expected, \(tokens.count) found") }
        }
        func string(_ index: Int) throws(DNSError) -> [UInt8] {
            guard let bytes = tokens[index].string else { throw fail("a \\DDD escape needs three digits up to 255, and a quote in a string needs quoting or a \\") }
            return bytes
        }
        if let first = tokens.first, first.text == "\\#", !first.quoted {
            // RFC 3597 generic form: `\# length hex`.
            guard tokens.count >= 2, let length = decimal(tokens[1].text, as: Int.self), (0...65535).contains(length) else {
                throw fail("\\# needs a length of 0 to 65535")
            }
            guard let bytes = hexBytes(tokens.dropFirst(2)), bytes.count == length else {
                throw fail("\\# length \(length) does not match its data")
            }
            return try generic(type: type, bytes, fail: fail)
        }
        /// Leading numbers of the given widths, big-endian, then the rest as hex or base64; the
        /// field at `algorithm` may also name a DNSSEC algorithm (RFC 4034 appendix A.1).
        func fields(_ widths: [Int], algorithm: Int? = nil, then encoding: BinaryEncoding) throws(DNSError) -> DNSRecordData {
            guard tokens.count > widths.count else { throw fail("\(widths.count + 1) or more fields expected") }
            var bytes: [UInt8] = []
            for (index, width) in widths.enumerated() {
                if index == algorithm, let value = Self.algorithmMnemonics[tokens[index].text.uppercased()] {
                    bytes.append(value)
                    continue
                }
                let value = width == 2 ? UInt64(try number(index, as: UInt16.self)) : UInt64(try number(index, as: UInt8.self))
                bytes += width == 2 ? [UInt8(value >> 8), UInt8(value & 0xFF)] : [UInt8(value)]
            }
            let rest = tokens.dropFirst(widths.count)
            guard let data = encoding == .hex ? hexBytes(rest) : base64Bytes(rest), !data.isEmpty else {
                throw fail(encoding == .hex ? "bad hex" : "bad base64")
            }
            return .opaque(bytes + data)
        }
        switch type {
        case .a:
            try count(1)
            guard let address = IPv4Address(tokens[0].text) else { throw fail("bad IPv4 address") }
            return .a(address)
        case .aaaa:
            try count(1)
            guard let address = IPv6Address(tokens[0].text) else { throw fail("bad IPv6 address") }
            return .aaaa(address)
        case .ns, .cname, .ptr, .dname:
            try count(1)
            return .name(try name(0))
        case .soa:
            try count(7)
            var times: [UInt32] = []
            for index in 2..<7 {
                guard let value = index == 2 ? decimal(tokens[index].text, as: UInt32.self) : ttl(tokens[index].text) else { throw fail("bad number") }
                times.append(value)
            }
            return .soa(primary: try name(0), mailbox: try name(1), serial: times[0], refresh: times[1], retry: times[2],
                        expire: times[3], minimum: times[4])
        case .mx:
            try count(2)
            return .mx(preference: try number(0, as: UInt16.self), exchange: try name(1))
        case .txt:
            guard !tokens.isEmpty else { throw fail("one or more strings") }
            // A string past 255 bytes goes out as pieces of 255, as Knot splits it.
            var strings: [[UInt8]] = []
            for index in tokens.indices {
                let bytes = try string(index)
                strings += stride(from: 0, to: max(bytes.count, 1), by: 255).map { Array(bytes[$0..<min($0 + 255, bytes.count)]) }
            }
            return .txt(strings)
        case .srv:
            try count(4)
            return .srv(priority: try number(0, as: UInt16.self), weight: try number(1, as: UInt16.self),
                        port: try number(2, as: UInt16.self), target: try name(3))
        case .caa:
            try count(3)
            let tag = try string(1)
            guard !tag.isEmpty, tag.count <= 255, tag.allSatisfy({ ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A || (0x30...0x39).contains($0) })
            else { throw fail("a tag of letters and digits") }
            return .caa(flags: try number(0, as: UInt8.self), tag: tag, value: try string(2))
        // Key and fingerprint types as their RFCs write them (RFC 4034, 7344, 2535, 4255, 6698), kept as wire bytes.
        case .ds, .cds:
            return try fields([2, 1, 1], algorithm: 1, then: .hex)
        case .dnskey, .cdnskey, .key:
            return try fields([2, 1, 1], algorithm: 2, then: .base64)
        case .sshfp:
            return try fields([1, 1], then: .hex)
        case .tlsa:
            return try fields([1, 1, 1], then: .hex)
        case .hinfo:
            try count(2)
            let strings = [try string(0), try string(1)]
            guard strings.allSatisfy({ $0.count <= 255 }) else { throw fail("strings of 0 to 255 bytes") }
            return .opaque(strings.flatMap { [UInt8($0.count)] + $0 })
        default:
            guard let bytes = try wireData(type: type, tokens, origin: origin, line: line) else {
                throw fail("give its data in the generic form: \\# length hex")
            }
            return .opaque(bytes)
        }
    }

    /// The DNSSEC algorithms' mnemonics (RFC 4034 appendix A.1 and the IANA registry), which a
    /// zone file may write in place of their numbers in DS, DNSKEY, RRSIG and CERT, as Knot reads them.
    static let algorithmMnemonics: [String: UInt8] = [
        "RSAMD5": 1, "DH": 2, "DSA": 3, "RSASHA1": 5, "DSA-NSEC3-SHA1": 6, "RSASHA1-NSEC3-SHA1": 7, "RSASHA256": 8,
        "RSASHA512": 10, "ECC-GOST": 12, "ECDSAP256SHA256": 13, "ECDSAP384SHA384": 14, "ED25519": 15, "ED448": 16,
        "INDIRECT": 252, "PRIVATEDNS": 253, "PRIVATEOID": 254,
    ]

    /// RFC 3597 data for `type`: checked against the type's layout where Sluice knows it, so no
    /// record goes out that a resolver would call malformed (stricter than Knot for keys and
    /// digests: knotd loads a DNSKEY of three bytes).
    static func generic(type: DNSRecordType, _ bytes: [UInt8], fail: (String) -> DNSError) throws(DNSError) -> DNSRecordData {
        // The fixed fields before a key or digest, and the shortest data after them.
        let minimum: Int? = switch type {
        case .ds, .cds, .dnskey, .cdnskey: 5
        // A KEY flagged "no key" has none (RFC 2535 section 3.1.2).
        case .key: 4
        case .sshfp: 3
        case .tlsa: 4
        default: nil
        }
        if let minimum {
            guard bytes.count >= minimum else { throw fail("\\# data too short for the type") }
            return .opaque(bytes)
        }
        if type == .hinfo {
            var at = 0
            var strings = 0
            while at < bytes.count {
                at += 1 + Int(bytes[at])
                strings += 1
            }
            guard at == bytes.count, strings == 2 else { throw fail("\\# data is not two character strings") }
            return .opaque(bytes)
        }
        let data = bytes.withUnsafeBytes { raw in
            Result { () throws(DNSError) in try DNSRecord.decodeData(raw, type: type, at: 0, length: raw.count) }
        }
        guard case .success(let decoded) = data else { throw fail("\\# data is not a valid \(type)") }
        return decoded
    }

    enum BinaryEncoding { case hex, base64 }

    /// The bytes of hex digits spread over `tokens`; `nil` for anything else or an odd count.
    static func hexBytes(_ tokens: some Collection<Token>) -> [UInt8]? {
        let digits = Array(tokens.map(\.text).joined().utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The bytes of base64 (RFC 4648, padded) spread over `tokens`; `nil` for anything else.
    static func base64Bytes(_ tokens: some Collection<Token>) -> [UInt8]? {
        let text = Array(tokens.map(\.text).joined().utf8)
        guard text.count % 4 == 0 else { return nil }
        var bytes: [UInt8] = []
        var index = 0
        while index < text.count {
            var group: UInt32 = 0
            var padding = 0
            for offset in 0..<4 {
                let character = text[index + offset]
                let value: UInt32
                switch character {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = UInt32(character - UInt8(ascii: "A"))
                case UInt8(ascii: "a")...UInt8(ascii: "z"): value = UInt32(character - UInt8(ascii: "a")) + 26
                case UInt8(ascii: "0")...UInt8(ascii: "9"): value = UInt32(character - UInt8(ascii: "0")) + 52
                case UInt8(ascii: "+"): value = 62
                case UInt8(ascii: "/"): value = 63
                // Padding only at the end of the last group, at most two.
                case UInt8(ascii: "=") where index + 4 == text.count && offset >= 2: value = 0; padding += 1
                default: return nil
                }
                if padding > 0 && character != UInt8(ascii: "=") { return nil }
                group = group << 6 | value
            }
            bytes += [UInt8(group >> 16), UInt8((group >> 8) & 0xFF), UInt8(group & 0xFF)].prefix(3 - padding)
            index += 4
        }
        return bytes
    }

    /// Splits the file into entries: tokens up to the end of a line, or of the parentheses.
    static func entries(_ bytes: [UInt8]) throws(DNSError) -> [Entry] {
        var entries: [Entry] = []
        var current: Entry?
        var depth = 0
        var line = 1
        var index = 0
        var atLineStart = true
        func finish() {
            if let entry = current, !entry.tokens.isEmpty { entries.append(entry) }
            current = nil
        }
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\n"):
                line += 1
                index += 1
                if depth == 0 { finish() }
                atLineStart = true
                continue
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                if atLineStart, depth == 0, current == nil { current = Entry(line: line, ownerBlank: true, tokens: []) }
                index += 1
                atLineStart = false
                continue
            case UInt8(ascii: ";"):
                while index < bytes.count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
                continue
            case UInt8(ascii: "("):
                depth += 1
                index += 1
                if current == nil { current = Entry(line: line, ownerBlank: false, tokens: []) }
                atLineStart = false
                continue
            case UInt8(ascii: ")"):
                guard depth > 0 else { throw .zoneSyntax(line: line, reason: "a ) without its (") }
                depth -= 1
                index += 1
                continue
            default:
                break
            }
            atLineStart = false
            if current == nil { current = Entry(line: line, ownerBlank: false, tokens: []) }
            var token = Token(bytes: [], quoted: byte == UInt8(ascii: "\""))
            if token.quoted { index += 1 }
            let delimiters = [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"), UInt8(ascii: ";"),
                              UInt8(ascii: "("), UInt8(ascii: ")")]
            while index < bytes.count {
                let next = bytes[index]
                if token.quoted {
                    if next == UInt8(ascii: "\"") {
                        index += 1
                        // As Knot reads it: a closing quote ends the field.
                        guard index == bytes.count || delimiters.contains(bytes[index]) else {
                            throw .zoneSyntax(line: line, reason: "a quoted string runs into the next field")
                        }
                        break
                    }
                    if next == UInt8(ascii: "\n") { throw .zoneSyntax(line: line, reason: "a quoted string runs past the line") }
                } else if delimiters.contains(next) {
                    break
                }
                if next == UInt8(ascii: "\\") {
                    // Keep escapes in names (DNSName reads them); decode them in strings. A line
                    // does not go on past an escaped end (Knot refuses it too).
                    guard index + 1 < bytes.count, bytes[index + 1] != UInt8(ascii: "\n"), bytes[index + 1] != UInt8(ascii: "\r") else {
                        throw .zoneSyntax(line: line, reason: "a \\ at the end of a line")
                    }
                    if token.quoted {
                        guard let (value, length) = escape(bytes, at: index) else {
                            throw .zoneSyntax(line: line, reason: "a \\DDD escape needs three digits up to 255")
                        }
                        token.bytes.append(value)
                        index += length
                        continue
                    }
                    token.bytes += [next, bytes[index + 1]]
                    index += 2
                    continue
                }
                token.bytes.append(next)
                index += 1
            }
            current!.tokens.append(token)
        }
        guard depth == 0 else { throw .zoneSyntax(line: line, reason: "a ( that is never closed") }
        finish()
        return entries
    }
}
