import SluicePackets

extension DNSRecord {
    /// The presentation form of data kept as wire bytes, for the types whose layout Sluice reads
    /// (as `dig +short` prints them); `nil` for others, or data that does not fit the layout.
    static func presentation(type: DNSRecordType, _ bytes: [UInt8]) -> String? {
        var reader = WireReader(bytes: bytes)
        var parts: [String] = []
        switch type {
        case .hinfo, .spf:
            while !reader.atEnd {
                guard let string = reader.characterString() else { return nil }
                parts.append(quoted(string))
            }
            guard !parts.isEmpty, type != .hinfo || parts.count == 2 else { return nil }
        case .naptr:
            guard let order = reader.u16(), let preference = reader.u16() else { return nil }
            parts = ["\(order)", "\(preference)"]
            for _ in 0..<3 {
                guard let string = reader.characterString() else { return nil }
                parts.append(quoted(string))
            }
            guard let replacement = reader.name() else { return nil }
            parts.append(replacement.description)
        case .nid, .l64:
            guard let preference = reader.u16(), let identifier = reader.take(8), reader.atEnd else { return nil }
            let digits = identifier.map { String($0, radix: 16).leftPadded(2) }
            parts = ["\(preference)", stride(from: 0, to: 8, by: 2).map { digits[$0] + digits[$0 + 1] }.joined(separator: ":")]
        case .l32:
            guard let preference = reader.u16(), let locator = reader.take(4), reader.atEnd else { return nil }
            parts = ["\(preference)", locator.map(String.init).joined(separator: ".")]
        case .minfo:
            guard let mailbox = reader.name(), let errors = reader.name() else { return nil }
            parts = [mailbox.description, errors.description]
        case .apl:
            while !reader.atEnd {
                guard let family = reader.u16(), let prefix = reader.u8(), let lengthByte = reader.u8(),
                      let part = reader.take(Int(lengthByte & 0x7F)) else { return nil }
                let negation = lengthByte & 0x80 != 0 ? "!" : ""
                let address: String
                switch family {
                case 1 where part.count <= 4:
                    address = (part + [UInt8](repeating: 0, count: 4 - part.count)).map(String.init).joined(separator: ".")
                case 2 where part.count <= 16:
                    address = (part + [UInt8](repeating: 0, count: 16 - part.count)).withUnsafeBytes {
                        IPv6Address(networkBytesAt: $0.baseAddress!).description
                    }
                default:
                    return nil
                }
                parts.append("\(negation)\(family):\(address)/\(prefix)")
            }
        case .ipseckey:
            guard let precedence = reader.u8(), let gatewayType = reader.u8(), let algorithm = reader.u8() else { return nil }
            parts = ["\(precedence)", "\(gatewayType)", "\(algorithm)"]
            switch gatewayType {
            case 0: parts.append(".")
            case 1:
                guard let address = reader.take(4) else { return nil }
                parts.append(address.map(String.init).joined(separator: "."))
            case 2:
                guard let address = reader.take(16) else { return nil }
                parts.append(address.withUnsafeBytes { IPv6Address(networkBytesAt: $0.baseAddress!).description })
            case 3:
                guard let gateway = reader.name() else { return nil }
                parts.append(gateway.description)
            default:
                return nil
            }
            if !reader.atEnd { parts.append(split(base64(reader.rest()))) }
        case .lp:
            guard let preference = reader.u16(), let target = reader.name(), reader.atEnd else { return nil }
            parts = ["\(preference)", target.description]
        case .uri:
            guard let priority = reader.u16(), let weight = reader.u16(), !reader.atEnd else { return nil }
            parts = ["\(priority)", "\(weight)", quoted(reader.rest())]
        case .eui48, .eui64:
            guard bytes.count == (type == .eui48 ? 6 : 8) else { return nil }
            return bytes.map { String($0, radix: 16).leftPadded(2) }.joined(separator: "-")
        case .nsec3param:
            guard let algorithm = reader.u8(), let flags = reader.u8(), let iterations = reader.u16(), let length = reader.u8(),
                  let salt = reader.take(Int(length)), reader.atEnd else { return nil }
            parts = ["\(algorithm)", "\(flags)", "\(iterations)", salt.isEmpty ? "-" : hex(salt)]
        case .ds, .cds:
            guard let keyTag = reader.u16(), let algorithm = reader.u8(), let digestType = reader.u8(), !reader.atEnd else { return nil }
            parts = ["\(keyTag)", "\(algorithm)", "\(digestType)", split(hex(reader.rest()))]
        case .dnskey, .cdnskey, .key:
            guard let flags = reader.u16(), let protocolNumber = reader.u8(), let algorithm = reader.u8(), !reader.atEnd else { return nil }
            parts = ["\(flags)", "\(protocolNumber)", "\(algorithm)", split(base64(reader.rest()))]
        case .rrsig:
            guard let covered = reader.u16(), let algorithm = reader.u8(), let labels = reader.u8(), let ttl = reader.u32(),
                  let expiration = reader.u32(), let inception = reader.u32(), let keyTag = reader.u16(), let signer = reader.name(),
                  !reader.atEnd else { return nil }
            parts = [DNSRecordType(rawValue: covered).description, "\(algorithm)", "\(labels)", "\(ttl)", time(expiration),
                     time(inception), "\(keyTag)", signer.description, split(base64(reader.rest()))]
        case .nsec:
            guard let next = reader.name(), let types = reader.typeBitmap() else { return nil }
            parts = [next.description] + types
        case .tlsa, .smimea:
            guard let usage = reader.u8(), let selector = reader.u8(), let matching = reader.u8(), !reader.atEnd else { return nil }
            parts = ["\(usage)", "\(selector)", "\(matching)", split(hex(reader.rest()))]
        case .sshfp:
            guard let algorithm = reader.u8(), let fingerprintType = reader.u8(), !reader.atEnd else { return nil }
            parts = ["\(algorithm)", "\(fingerprintType)", split(hex(reader.rest()))]
        case .zonemd:
            guard let serial = reader.u32(), let scheme = reader.u8(), let algorithm = reader.u8(), !reader.atEnd else { return nil }
            parts = ["\(serial)", "\(scheme)", "\(algorithm)", split(hex(reader.rest()))]
        case .csync:
            guard let serial = reader.u32(), let flags = reader.u16(), let types = reader.typeBitmap() else { return nil }
            parts = ["\(serial)", "\(flags)"] + types
        case .loc:
            return location(bytes)
        case .openpgpkey:
            guard !reader.atEnd else { return nil }
            parts = [split(base64(reader.rest()))]
        case .svcb, .https:
            guard let priority = reader.u16(), let target = reader.name() else { return nil }
            parts = ["\(priority)", target.description]
            while !reader.atEnd {
                guard let key = reader.u16(), let length = reader.u16(), let value = reader.take(Int(length)),
                      let parameter = serviceParameter(key, value) else { return nil }
                parts.append(parameter)
            }
        default:
            return nil
        }
        return reader.atEnd ? parts.joined(separator: " ") : nil
    }

    /// A LOC record as dig prints it: `42 21 54.000 N 71 6 18.000 W -24.00m 30m 10m 10m`.
    static func location(_ bytes: [UInt8]) -> String? {
        guard bytes.count == 16, bytes[0] == 0 else { return nil }
        func word(_ at: Int) -> UInt32 { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
        func angle(_ value: UInt32, _ positive: String, _ negative: String) -> String {
            let offset = Int64(value) - (1 << 31)
            let magnitude = abs(offset)
            let thousandths = magnitude % 60_000
            let seconds = String(thousandths / 1000) + "." + String(thousandths % 1000).leftPadded(3)
            return "\(magnitude / 3_600_000) \(magnitude / 60_000 % 60) \(seconds) \(offset >= 0 ? positive : negative)"
        }
        func metres(_ precision: UInt8) -> String {
            let centimetres = Int64(precision >> 4) * (0..<Int(precision & 0x0F)).reduce(Int64(1)) { product, _ in product * 10 }
            return centimetres % 100 == 0 ? "\(centimetres / 100)m" : "\(centimetres / 100).\(String(centimetres % 100).leftPadded(2))m"
        }
        let altitude = Int64(word(12)) - 10_000_000
        let sign = altitude < 0 ? "-" : ""
        let altitudeText = "\(sign)\(abs(altitude) / 100).\(String(abs(altitude) % 100).leftPadded(2))m"
        return [angle(word(4), "N", "S"), angle(word(8), "E", "W"), altitudeText, metres(bytes[1]), metres(bytes[2]), metres(bytes[3])]
            .joined(separator: " ")
    }

    /// Long base64 or hex in words of 56 characters, as dig prints keys, digests and signatures.
    static func split(_ text: String) -> String {
        var words: [Substring] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            words.append(rest.prefix(56))
            rest = rest.dropFirst(56)
        }
        return words.joined(separator: " ")
    }

    /// A signature time as RFC 4034 section 3.2 writes it: YYYYMMDDHHmmSS in UTC.
    static func time(_ seconds: UInt32) -> String {
        let days = Int64(seconds / 86_400)
        let (year, month, day) = DNSZoneFile.civil(fromDays: days)
        let clock = Int(seconds % 86_400)
        return String(year).leftPadded(4) + [Int(month), Int(day), clock / 3600, clock / 60 % 60, clock % 60]
            .map { String($0).leftPadded(2) }.joined()
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16, uppercase: true).leftPadded(2) }.joined() }

    /// One SVCB parameter as RFC 9460 writes it: `key=value`.
    static func serviceParameter(_ key: UInt16, _ value: [UInt8]) -> String? {
        var reader = WireReader(bytes: value)
        switch key {
        case 0:
            var keys: [String] = []
            while let number = reader.u16() { keys.append(serviceKeyName(number)) }
            return reader.atEnd ? "mandatory=" + keys.joined(separator: ",") : nil
        case 1:
            var ids: [String] = []
            while !reader.atEnd {
                guard let id = reader.characterString() else { return nil }
                ids.append(String(decoding: id, as: UTF8.self).replacing(",", with: "\\\\,"))
            }
            return "alpn=\"" + ids.joined(separator: ",") + "\""
        case 2:
            return value.isEmpty ? "no-default-alpn" : nil
        case 3:
            guard let port = reader.u16(), reader.atEnd else { return nil }
            return "port=\(port)"
        case 4:
            guard !value.isEmpty, value.count % 4 == 0 else { return nil }
            return "ipv4hint=" + stride(from: 0, to: value.count, by: 4).map { value[$0..<$0 + 4].map(String.init).joined(separator: ".") }
                .joined(separator: ",")
        case 5:
            return "ech=" + base64(value)
        case 6:
            guard !value.isEmpty, value.count % 16 == 0 else { return nil }
            return "ipv6hint=" + stride(from: 0, to: value.count, by: 16).map { start in
                value.withUnsafeBytes { IPv6Address(networkBytesAt: $0.baseAddress! + start).description }
            }.joined(separator: ",")
        default:
            return serviceKeyName(key) + "=" + quoted(value)
        }
    }

    /// Base64 with padding (RFC 4648 section 4).
    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var text = ""
        for start in stride(from: 0, to: bytes.count, by: 3) {
            let chunk = bytes[start..<min(start + 3, bytes.count)]
            let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (16 - 8 * UInt32($1.offset)) }
            for index in 0..<4 {
                text.append(index <= chunk.count ? alphabet[Int(value >> (18 - 6 * UInt32(index)) & 63)] : "=")
            }
        }
        return text
    }

    static func serviceKeyName(_ key: UInt16) -> String {
        let names = ["mandatory", "alpn", "no-default-alpn", "port", "ipv4hint", "ech", "ipv6hint"]
        return Int(key) < names.count ? names[Int(key)] : "key\(key)"
    }

    /// Reads fields in order from record data.
    struct WireReader {
        let bytes: [UInt8]
        var at = 0

        var atEnd: Bool { at == bytes.count }

        mutating func take(_ count: Int) -> [UInt8]? {
            guard count >= 0, at + count <= bytes.count else { return nil }
            defer { at += count }
            return Array(bytes[at..<at + count])
        }

        mutating func u8() -> UInt8? { take(1).map { $0[0] } }
        mutating func u16() -> UInt16? { take(2).map { UInt16($0[0]) << 8 | UInt16($0[1]) } }
        mutating func u32() -> UInt32? { take(4).map { $0.reduce(0) { $0 << 8 | UInt32($1) } } }

        /// The types of an NSEC or NSEC3 type bitmap (RFC 4034 section 4.1.2), in order.
        mutating func typeBitmap() -> [String]? {
            var types: [String] = []
            while !atEnd {
                guard let window = u8(), let length = u8(), (1...32).contains(length), let map = take(Int(length)) else { return nil }
                for (index, byte) in map.enumerated() {
                    for bit in 0..<8 where byte & (0x80 >> UInt8(bit)) != 0 {
                        types.append(DNSRecordType(rawValue: UInt16(window) << 8 | UInt16(index * 8 + bit)).description)
                    }
                }
            }
            return types
        }
        mutating func characterString() -> [UInt8]? { u8().flatMap { take(Int($0)) } }
        mutating func rest() -> [UInt8] { take(bytes.count - at) ?? [] }

        /// A name written whole (RFC 3597: no compression in these types).
        mutating func name() -> DNSName? {
            var end = at
            while end < bytes.count, bytes[end] != 0 {
                guard bytes[end] < 64 else { return nil }
                end += 1 + Int(bytes[end])
            }
            guard end < bytes.count, let name = DNSName(wire: Array(bytes[at...end])) else { return nil }
            at = end + 1
            return name
        }
    }
}
