import SluicePackets

extension DNSRecordType {
    public static let rp = DNSRecordType(rawValue: 17)
    public static let afsdb = DNSRecordType(rawValue: 18)
    public static let rt = DNSRecordType(rawValue: 21)
    public static let naptr = DNSRecordType(rawValue: 35)
    public static let kx = DNSRecordType(rawValue: 36)
    public static let cert = DNSRecordType(rawValue: 37)
    public static let loc = DNSRecordType(rawValue: 29)
    public static let csync = DNSRecordType(rawValue: 62)
    public static let zonemd = DNSRecordType(rawValue: 63)
    public static let rrsig = DNSRecordType(rawValue: 46)
    public static let nsec = DNSRecordType(rawValue: 47)
    public static let dhcid = DNSRecordType(rawValue: 49)
    public static let nsec3 = DNSRecordType(rawValue: 50)
    public static let nsec3param = DNSRecordType(rawValue: 51)
    public static let smimea = DNSRecordType(rawValue: 53)
    public static let openpgpkey = DNSRecordType(rawValue: 61)
    public static let svcb = DNSRecordType(rawValue: 64)
    public static let https = DNSRecordType(rawValue: 65)
    public static let spf = DNSRecordType(rawValue: 99)
    public static let eui48 = DNSRecordType(rawValue: 108)
    public static let eui64 = DNSRecordType(rawValue: 109)
    public static let uri = DNSRecordType(rawValue: 256)
    public static let nid = DNSRecordType(rawValue: 104)
    public static let l32 = DNSRecordType(rawValue: 105)
    public static let l64 = DNSRecordType(rawValue: 106)
    public static let lp = DNSRecordType(rawValue: 107)
    public static let minfo = DNSRecordType(rawValue: 14)
    public static let apl = DNSRecordType(rawValue: 42)
    public static let ipseckey = DNSRecordType(rawValue: 45)
    public static let key = DNSRecordType(rawValue: 25)
}

/// The zone-file forms of the types kept as wire bytes beyond RFC 1035's: each read as its RFC
/// writes it and stored as the bytes a server sends (names whole and in lower case, as Knot
/// stores them).
extension DNSZoneFile {
    /// Reads the data of `type` from `tokens`, or `nil` when the type is not one of these.
    static func wireData(type: DNSRecordType, _ tokens: [Token], origin: DNSName, line: Int) throws(DNSError) -> [UInt8]? {
        var reader = FieldReader(tokens: tokens, origin: origin, type: type, line: line)
        func fail(_ reason: String) -> DNSError { reader.fail(reason) }
        switch type {
        case .spf:
            guard !tokens.isEmpty else { throw fail("one or more strings") }
            while reader.hasMore { try reader.characterString() }
        case .naptr:
            try reader.u16(); try reader.u16()
            try reader.characterString(); try reader.characterString(); try reader.characterString()
            try reader.name()
        case .rp, .minfo:
            try reader.name(); try reader.name()
        case .apl:
            try reader.addressPrefixes()
        case .ipseckey:
            try reader.ipsecKey()
        case .nid, .l64:
            // RFC 6742: a preference, then 64 bits as four groups of four hex digits (Knot takes no fewer).
            try reader.u16()
            let groups = try reader.text().split(separator: ":", omittingEmptySubsequences: false)
            guard groups.count == 4, groups.allSatisfy({ $0.count == 4 }),
                  let bytes = hexBytes([Token(bytes: Array(groups.joined().utf8), quoted: false)]) else { throw fail("four groups of four hex digits") }
            reader.bytes += bytes
        case .l32:
            try reader.u16()
            guard let locator = IPv4Address(try reader.text()) else { throw fail("bad IPv4 locator") }
            reader.bytes += FieldReader.wire(locator)
        case .lp:
            // RFC 6742's FQDN is outside RFC 4034's list of names lowered in the canonical form.
            try reader.u16(); try reader.name(keepingCase: true)
        case .afsdb, .rt, .kx:
            try reader.u16(); try reader.name()
        case .uri:
            try reader.u16(); try reader.u16()
            let target = try reader.string()
            guard !target.isEmpty else { throw fail("an empty target") }
            reader.bytes += target
        case .smimea:
            try reader.u8(); try reader.u8(); try reader.u8(); try reader.rest(BinaryEncoding.hex)
        case .openpgpkey, .dhcid:
            try reader.rest(BinaryEncoding.base64)
        case .cert:
            try reader.u16(mnemonics: ["PKIX": 1, "SPKI": 2, "PGP": 3, "IPKIX": 4, "ISPKI": 5, "IPGP": 6, "ACPKIX": 7,
                                       "IACPKIX": 8, "URI": 253, "OID": 254])
            try reader.u16()
            try reader.algorithm()
            try reader.rest(BinaryEncoding.base64)
        case .eui48, .eui64:
            let parts = try reader.text().split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == (type == .eui48 ? 6 : 8), parts.allSatisfy({ $0.count == 2 }),
                  let bytes = hexBytes([Token(bytes: Array(parts.joined().utf8), quoted: false)])
            else { throw fail("hex pairs joined by -") }
            reader.bytes += bytes
        case .nsec:
            try reader.name(keepingCase: true)
            try reader.typeBitmap()
        case .nsec3param:
            try reader.u8(); try reader.u8(); try reader.u16(); try reader.salt()
        case .nsec3:
            try reader.u8(); try reader.u8(); try reader.u16(); try reader.salt()
            guard let hash = base32Hex(try reader.text()), !hash.isEmpty, hash.count <= 255 else { throw fail("bad base32hex hash") }
            reader.bytes += [UInt8(hash.count)] + hash
            try reader.typeBitmap()
        case .rrsig:
            guard let covered = DNSRecordType(try reader.text()) else { throw fail("bad type covered") }
            reader.bytes += [UInt8(covered.rawValue >> 8), UInt8(covered.rawValue & 0xFF)]
            try reader.algorithm(); try reader.u8(); try reader.u32()
            try reader.time(); try reader.time()
            try reader.u16(); try reader.name()
            try reader.rest(BinaryEncoding.base64)
        case .zonemd:
            try reader.u32(); try reader.u8(); try reader.u8(); try reader.rest(BinaryEncoding.hex)
        case .csync:
            try reader.u32(); try reader.u16(); try reader.typeBitmap()
        case .loc:
            try reader.location()
        case .svcb, .https:
            try reader.u16()
            try reader.name(keepingCase: true)
            try reader.serviceParameters()
        default:
            return nil
        }
        guard !reader.hasMore else { throw fail("\(tokens.count - reader.index) fields too many") }
        return reader.bytes
    }

    /// Reads fields in order, appending their wire form to `bytes`.
    struct FieldReader {
        let tokens: [Token]
        let origin: DNSName
        let type: DNSRecordType
        let line: Int
        var index = 0
        var bytes: [UInt8] = []

        var hasMore: Bool { index < tokens.count }

        func fail(_ reason: String) -> DNSError { .zoneSyntax(line: line, reason: "\(type): \(reason)") }

        mutating func next() throws(DNSError) -> Token {
            guard index < tokens.count else { throw fail("too few fields") }
            index += 1
            return tokens[index - 1]
        }

        mutating func text() throws(DNSError) -> String { try next().text }

        mutating func string() throws(DNSError) -> [UInt8] {
            guard let bytes = try next().string else { throw fail("a \\DDD escape needs three digits up to 255") }
            return bytes
        }

        mutating func number(max: UInt64) throws(DNSError) -> UInt64 {
            guard let value = DNSZoneFile.decimal(try text(), as: UInt64.self), value <= max else { throw fail("bad number") }
            return value
        }

        mutating func u8() throws(DNSError) { bytes.append(UInt8(try number(max: 0xFF))) }

        /// A DNSSEC algorithm, by number or by name.
        mutating func algorithm() throws(DNSError) {
            if hasMore, let value = DNSZoneFile.algorithmMnemonics[tokens[index].text.uppercased()] {
                index += 1
                bytes.append(value)
            } else {
                try u8()
            }
        }

        mutating func u16(mnemonics: [String: UInt16] = [:]) throws(DNSError) {
            let token = try text()
            guard let value = mnemonics[token.uppercased()] ?? DNSZoneFile.decimal(token, as: UInt16.self) else { throw fail("bad number \(token)") }
            bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
        }

        mutating func u32() throws(DNSError) {
            let value = UInt32(try number(max: UInt64(UInt32.max)))
            bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
        }

        /// A name, in lower case as the canonical form has it (RFC 4034 section 6.2), or as
        /// written with `keepingCase` for the types RFC 6840 section 5.1 and RFC 9460 leave out
        /// of that rule (NSEC's next name, SVCB's target), as Knot keeps them: a signature over
        /// them covers the case the signer saw.
        mutating func name(keepingCase: Bool = false) throws(DNSError) {
            let token = try text()
            guard let name = DNSName(token, origin: origin) else { throw fail("bad name \(token)") }
            bytes += keepingCase ? name.wire : name.lowercased.wire
        }

        mutating func characterString() throws(DNSError) {
            let value = try string()
            guard value.count <= 255 else { throw fail("a string past 255 bytes") }
            bytes += [UInt8(value.count)] + value
        }

        /// The remaining fields as one hex or base64 blob.
        mutating func rest(_ encoding: BinaryEncoding) throws(DNSError) {
            let rest = tokens[index...]
            index = tokens.count
            guard let data = encoding == .hex ? hexBytes(rest) : base64Bytes(rest), !data.isEmpty else {
                throw fail(encoding == .hex ? "bad hex" : "bad base64")
            }
            bytes += data
        }

        /// NSEC3's salt: hex, or `-` for none.
        mutating func salt() throws(DNSError) {
            let token = try next()
            if token.text == "-" {
                bytes.append(0)
                return
            }
            guard let salt = hexBytes([token]), !salt.isEmpty, salt.count <= 255 else { throw fail("bad salt") }
            bytes += [UInt8(salt.count)] + salt
        }

        /// An RRSIG time: `YYYYMMDDHHmmSS` in UTC, or seconds (RFC 4034 section 3.2).
        mutating func time() throws(DNSError) {
            let token = try text()
            let digits = token.utf8.compactMap { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") ? Int($0 - UInt8(ascii: "0")) : nil }
            guard digits.count == token.utf8.count, !digits.isEmpty else { throw fail("bad time \(token)") }
            var seconds: Int64
            if digits.count == 14 {
                func value(_ range: Range<Int>) -> Int64 { digits[range].reduce(0) { $0 * 10 + Int64($1) } }
                let (year, month, day) = (value(0..<4), value(4..<6), value(6..<8))
                guard (1...12).contains(month), (1...31).contains(day) else { throw fail("bad time \(token)") }
                seconds = daysFromCivil(year: year, month: month, day: day) * 86400 + value(8..<10) * 3600 + value(10..<12) * 60 + value(12..<14)
            } else {
                guard let value = Int64(token), value <= Int64(UInt32.max) else { throw fail("bad time \(token)") }
                seconds = value
            }
            // Serial number arithmetic (RFC 1982): the time modulo 2^32.
            let value = UInt32(truncatingIfNeeded: seconds)
            bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
        }

        /// A LOC record's fields (RFC 1876 section 3): degrees, minutes and seconds north or south,
        /// then east or west, the altitude in metres, and the size and horizontal and vertical
        /// precision (1 m, 10 km and 10 m when left out), each metre value with an optional `m`.
        mutating func location() throws(DNSError) {
            var angles: [UInt32] = []
            for hemispheres in [("N", "S", 90), ("E", "W", 180)] {
                var parts: [String] = []
                while parts.count < 4 {
                    let token = try text().uppercased()
                    parts.append(token)
                    if token == hemispheres.0 || token == hemispheres.1 { break }
                }
                guard let hemisphere = parts.last, hemisphere == hemispheres.0 || hemisphere == hemispheres.1, parts.count >= 2,
                      let degrees = DNSZoneFile.decimal(parts[0], as: UInt32.self), degrees <= hemispheres.2 else { throw fail("bad latitude or longitude") }
                let minutes = parts.count > 2 ? DNSZoneFile.decimal(parts[1], as: UInt32.self) : 0
                let thousandths = parts.count > 3 ? Self.fixed(parts[2], places: 3) : 0
                guard let minutes, minutes < 60, let thousandths, (0..<60_000).contains(thousandths) else { throw fail("bad minutes or seconds") }
                let offset = ((degrees * 60 + minutes) * 60) * 1000 + UInt32(thousandths)
                guard offset <= UInt32(hemispheres.2) * 3_600_000 else { throw fail("bad latitude or longitude") }
                angles.append(hemisphere == hemispheres.0 ? (1 << 31) + offset : (1 << 31) - offset)
            }
            guard let altitude = Self.fixed(Self.metres(try text()), places: 2), altitude >= -10_000_000, altitude <= 4_284_967_295
            else { throw fail("bad altitude") }
            var precisions: [UInt8] = []
            for fallback in [100, 1_000_000, 1000] as [Int64] {
                guard hasMore else { precisions.append(Self.precision(fallback)!); continue }
                guard let centimetres = Self.fixed(Self.metres(try text()), places: 2), let encoded = Self.precision(centimetres)
                else { throw fail("bad size or precision") }
                precisions.append(encoded)
            }
            bytes += [0] + precisions
            for value in angles + [UInt32(altitude + 10_000_000)] {
                bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
            }
        }

        static func metres(_ token: String) -> String { token.hasSuffix("m") || token.hasSuffix("M") ? String(token.dropLast()) : token }

        /// A decimal with at most `places` places as an integer in units of 10^-places.
        static func fixed(_ text: String, places: Int) -> Int64? {
            let negative = text.hasPrefix("-")
            let parts = (negative ? text.dropFirst() : Substring(text)).split(separator: ".", omittingEmptySubsequences: false)
            // Plain digits only: no second sign, no "+", so the value cannot overflow.
            let isDigits = { (part: Substring) in part.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } }
            guard (1...2).contains(parts.count), !parts[0].isEmpty, parts[0].count <= 12, isDigits(parts[0]), let whole = Int64(parts[0]),
                  parts.count == 1 || (parts[1].count <= places && isDigits(parts[1]))
            else { return nil }
            let fraction = parts.count == 2 ? parts[1] + String(repeating: "0", count: places - parts[1].count) : String(repeating: "0", count: places)
            let value = whole * Int64(pow10(places)) + (Int64(fraction) ?? 0)
            return negative ? -value : value
        }

        static func pow10(_ exponent: Int) -> Int { (0..<exponent).reduce(1) { product, _ in product * 10 } }

        /// A size or precision in centimetres as RFC 1876 writes it: a digit and a power of ten
        /// (the value rounded down to one significant digit, as Knot does).
        static func precision(_ centimetres: Int64) -> UInt8? {
            guard centimetres >= 0, centimetres <= 90_000_000_00 else { return nil }
            var mantissa = centimetres
            var exponent: UInt8 = 0
            while mantissa > 9 {
                mantissa /= 10
                exponent += 1
            }
            return UInt8(mantissa) << 4 | exponent
        }

        /// The types of the remaining fields as an NSEC type bitmap (RFC 4034 section 4.1.2).
        mutating func typeBitmap() throws(DNSError) {
            var types: Set<UInt16> = []
            while hasMore {
                let token = try text()
                guard let type = DNSRecordType(token) else { throw fail("bad type \(token)") }
                types.insert(type.rawValue)
            }
            var windows: [UInt8: [UInt8]] = [:]
            for type in types {
                let window = UInt8(type >> 8)
                let bit = Int(type & 0xFF)
                var map = windows[window] ?? []
                if map.count <= bit / 8 { map += [UInt8](repeating: 0, count: bit / 8 + 1 - map.count) }
                map[bit / 8] |= 0x80 >> UInt8(bit % 8)
                windows[window] = map
            }
            for window in windows.keys.sorted() {
                let map = windows[window]!
                bytes += [window, UInt8(map.count)] + map
            }
        }

        /// APL's items, `[!]family:address/prefix` (RFC 3123 section 4), none or more: the
        /// address with its trailing zero bytes left out, as the RFC and Knot send it.
        mutating func addressPrefixes() throws(DNSError) {
            while hasMore {
                var text = Substring(try text())
                let negated = text.first == "!"
                if negated { text = text.dropFirst() }
                let parts = text.split(separator: ":", maxSplits: 1)
                // The family as 1 or 2, no leading zero (Knot refuses `01:`).
                guard parts.count == 2, let slash = parts[1].lastIndex(of: "/"), let family = DNSZoneFile.decimal(parts[0], as: UInt16.self),
                      "\(family)" == parts[0], let prefix = DNSZoneFile.decimal(parts[1][parts[1].index(after: slash)...], as: UInt8.self) else { throw fail("bad item \(text)") }
                let address = parts[1][..<slash]
                var part: [UInt8]
                switch family {
                case 1:
                    guard let ipv4 = IPv4Address(String(address)), prefix <= 32 else { throw fail("bad IPv4 item \(text)") }
                    part = Self.wire(ipv4)
                case 2:
                    guard let ipv6 = IPv6Address(String(address)), prefix <= 128 else { throw fail("bad IPv6 item \(text)") }
                    part = Self.wire(ipv6)
                default:
                    throw fail("address family 1 or 2, not \(family)")
                }
                while part.last == 0 { part.removeLast() }
                bytes += [UInt8(family >> 8), UInt8(family & 0xFF), prefix, (negated ? 0x80 : 0) | UInt8(part.count)] + part
            }
        }

        /// IPSECKEY's precedence, gateway type, algorithm, gateway (`.` for none, an IPv4 or IPv6
        /// address, or a name kept as written) and public key if any (RFC 4025 section 3).
        mutating func ipsecKey() throws(DNSError) {
            try u8()
            let gatewayType = try number(max: 3)
            bytes.append(UInt8(gatewayType))
            try u8()
            let gateway = try text()
            switch gatewayType {
            case 0:
                guard gateway == "." else { throw fail("gateway type 0 takes `.`, not \(gateway)") }
            case 1:
                guard let address = IPv4Address(gateway) else { throw fail("bad IPv4 gateway \(gateway)") }
                bytes += Self.wire(address)
            case 2:
                guard let address = IPv6Address(gateway) else { throw fail("bad IPv6 gateway \(gateway)") }
                bytes += Self.wire(address)
            default:
                index -= 1
                try name(keepingCase: true)
            }
            if hasMore { try rest(BinaryEncoding.base64) }
        }

        /// An address in network order.
        static func wire(_ address: IPv4Address) -> [UInt8] { withUnsafeBytes(of: address.rawValue.bigEndian) { Array($0) } }

        /// An address in network order.
        static func wire(_ address: IPv6Address) -> [UInt8] {
            withUnsafeBytes(of: address.high.bigEndian) { Array($0) } + withUnsafeBytes(of: address.low.bigEndian) { Array($0) }
        }

        /// SVCB and HTTPS parameters, `key=value` (RFC 9460 section 2.1), sorted by key on the wire.
        mutating func serviceParameters() throws(DNSError) {
            let keys: [String: UInt16] = ["mandatory": 0, "alpn": 1, "no-default-alpn": 2, "port": 3, "ipv4hint": 4, "ech": 5, "ipv6hint": 6]
            var parameters: [(UInt16, [UInt8])] = []
            while hasMore {
                let token = try next()
                let text = token.text
                let (keyText, valueText) = text.firstIndex(of: "=").map { (String(text[..<$0]), String(text[text.index(after: $0)...])) }
                    ?? (text, "")
                // Keys are lower case (RFC 9460 section 2.1), as Knot reads them. A value given
                // as keyNNNNN is its wire form as written, whatever the key.
                let key: UInt16
                let generic: Bool
                if let known = keys[keyText] {
                    (key, generic) = (known, false)
                } else if keyText.hasPrefix("key"), let number = DNSZoneFile.decimal(keyText.dropFirst(3), as: UInt16.self), number != 65535 {
                    (key, generic) = (number, true)
                } else {
                    throw fail("unknown parameter \(keyText)")
                }
                guard !parameters.contains(where: { $0.0 == key }) else { throw fail("\(keyText) twice") }
                var raw = Array(valueText.utf8)
                if raw.count >= 2, raw.first == UInt8(ascii: "\""), raw.last == UInt8(ascii: "\"") { raw = Array(raw.dropFirst().dropLast()) }
                guard let value = Token(bytes: raw, quoted: false).string else { throw fail("bad escape in \(keyText)") }
                parameters.append((key, generic ? value : try parameterValue(key, value)))
            }
            // Every key the mandatory list names must be present, and not mandatory itself (section 8).
            if let mandatory = parameters.first(where: { $0.0 == 0 })?.1 {
                let listed = stride(from: 0, to: mandatory.count - 1, by: 2).map { UInt16(mandatory[$0]) << 8 | UInt16(mandatory[$0 + 1]) }
                guard mandatory.count % 2 == 0, !listed.isEmpty, Set(listed).count == listed.count, !listed.contains(0) else {
                    throw fail("a mandatory list of distinct keys other than mandatory")
                }
                for key in listed where !parameters.contains(where: { $0.0 == key }) {
                    throw fail("mandatory names key\(key), which is missing")
                }
            }
            for (key, value) in parameters.sorted(by: { $0.0 < $1.0 }) {
                bytes += [UInt8(key >> 8), UInt8(key & 0xFF), UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
            }
        }

        func parameterValue(_ key: UInt16, _ value: [UInt8]) throws(DNSError) -> [UInt8] {
            let text = String(decoding: value, as: UTF8.self)
            let list = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            switch key {
            case 0:
                let names: [String: UInt16] = ["alpn": 1, "no-default-alpn": 2, "port": 3, "ipv4hint": 4, "ech": 5, "ipv6hint": 6]
                var numbers: [UInt16] = []
                for item in list {
                    guard let number = names[item] ?? (item.hasPrefix("key") ? DNSZoneFile.decimal(item.dropFirst(3), as: UInt16.self) : nil)
                    else { throw fail("bad mandatory key \(item)") }
                    numbers.append(number)
                }
                return numbers.sorted().flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
            case 1:
                guard !value.isEmpty else { throw fail("an empty alpn") }
                var out: [UInt8] = []
                for id in alpnList(value) {
                    guard (1...255).contains(id.count) else { throw fail("an ALPN id of 1 to 255 bytes") }
                    out += [UInt8(id.count)] + id
                }
                return out
            case 2:
                guard value.isEmpty else { throw fail("no-default-alpn takes no value") }
                return []
            case 3:
                guard let port = DNSZoneFile.decimal(text, as: UInt16.self) else { throw fail("bad port \(text)") }
                return [UInt8(port >> 8), UInt8(port & 0xFF)]
            case 4:
                var out: [UInt8] = []
                for item in list {
                    guard let address = IPv4Address(item) else { throw fail("bad ipv4hint \(item)") }
                    out += Self.wire(address)
                }
                return out
            case 5:
                guard let data = base64Bytes([Token(bytes: value, quoted: false)]) else { throw fail("bad ech") }
                return data
            case 6:
                var out: [UInt8] = []
                for item in list {
                    guard let address = IPv6Address(item) else { throw fail("bad ipv6hint \(item)") }
                    out += Self.wire(address)
                }
                return out
            default:
                return value
            }
        }

        /// An ALPN list: commas separate ids, `\,` is a comma within one (RFC 9460 appendix A.1).
        func alpnList(_ value: [UInt8]) -> [[UInt8]] {
            var ids: [[UInt8]] = [[]]
            var index = 0
            while index < value.count {
                if value[index] == UInt8(ascii: "\\"), index + 1 < value.count {
                    ids[ids.count - 1].append(value[index + 1])
                    index += 2
                    continue
                }
                if value[index] == UInt8(ascii: ",") { ids.append([]) } else { ids[ids.count - 1].append(value[index]) }
                index += 1
            }
            return ids
        }
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The date of the proleptic Gregorian calendar `days` after 1970-01-01 (the inverse of
    /// ``daysFromCivil(year:month:day:)``).
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Base32 with the extended hex alphabet, no padding (RFC 4648 section 7), as NSEC3 writes hashes.
    static func base32Hex(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        var buffer: UInt64 = 0
        var bits = 0
        for character in text.uppercased().utf8 {
            let value: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "V"): value = character - UInt8(ascii: "A") + 10
            default: return nil
            }
            buffer = buffer << 5 | UInt64(value)
            bits += 5
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8(truncatingIfNeeded: buffer >> UInt64(bits)))
            }
        }
        return bits < 5 ? bytes : nil
    }
}
