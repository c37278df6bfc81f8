/// A domain name in uncompressed wire form (length-prefixed labels ending in the root's zero
/// byte), as zone data holds it. Equality and hashing ignore ASCII case (RFC 4343); the bytes
/// keep the case they were written in.
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    /// The wire form, at most 255 bytes.
    public private(set) var wire: [UInt8]

    /// The root name.
    public static let root = DNSName(validatedWire: [0])

    init(validatedWire: [UInt8]) { wire = validatedWire }

    /// A name from its wire form; `nil` when it is not one (bad lengths, over 255 bytes).
    public init?(wire: [UInt8]) {
        var offset = 0
        while offset < wire.count {
            let length = Int(wire[offset])
            if length == 0 { break }
            guard length <= 63 else { return nil }
            offset += 1 + length
        }
        guard offset == wire.count - 1, wire.count <= 255 else { return nil }
        self.wire = wire
    }

    /// A name from presentation form: "www.example.org." is absolute, "www" is relative to
    /// `origin`, "@" is `origin`; `\.` and `\DDD` escape. `nil` for a malformed name.
    public init?(_ text: some StringProtocol, origin: DNSName? = nil) {
        let bytes = Array(text.utf8)
        if bytes == [UInt8(ascii: "@")] {
            guard let origin else { return nil }
            self = origin
            return
        }
        if bytes == [UInt8(ascii: ".")] {
            self = .root
            return
        }
        var wire: [UInt8] = []
        var label: [UInt8] = []
        var index = 0
        var absolute = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                guard index + 1 < bytes.count else { return nil }
                let next = bytes[index + 1]
                if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(next) {
                    guard index + 3 < bytes.count, let value = UInt8(String(decoding: bytes[(index + 1)...(index + 3)], as: UTF8.self))
                    else { return nil }
                    label.append(value)
                    index += 4
                } else {
                    label.append(next)
                    index += 2
                }
                continue
            }
            if byte == UInt8(ascii: ".") {
                guard !label.isEmpty, label.count <= 63 else { return nil }
                wire.append(UInt8(label.count))
                wire += label
                label = []
                if index == bytes.count - 1 { absolute = true }
                index += 1
                continue
            }
            label.append(byte)
            index += 1
        }
        if !label.isEmpty {
            guard label.count <= 63 else { return nil }
            wire.append(UInt8(label.count))
            wire += label
        }
        if absolute {
            wire.append(0)
        } else {
            guard let origin else { return nil }
            wire += origin.wire
        }
        guard wire.count <= 255 else { return nil }
        self.wire = wire
    }

    /// The number of labels, the root not counted.
    public var labelCount: Int {
        var count = 0
        var offset = 0
        while wire[offset] != 0 {
            count += 1
            offset += 1 + Int(wire[offset])
        }
        return count
    }

    /// The name without its first `count` labels (the root stays).
    public func dropping(labels count: Int) -> DNSName {
        var offset = 0
        for _ in 0..<count where wire[offset] != 0 { offset += 1 + Int(wire[offset]) }
        return DNSName(validatedWire: Array(wire[offset...]))
    }

    /// The name with `label` in front (`nil` past 255 bytes).
    public func prepending(_ label: [UInt8]) -> DNSName? {
        guard !label.isEmpty, label.count <= 63, wire.count + 1 + label.count <= 255 else { return nil }
        return DNSName(validatedWire: [UInt8(label.count)] + label + wire)
    }

    /// Whether this name is `other` or below it.
    public func isSubdomain(of other: DNSName) -> Bool {
        let difference = labelCount - other.labelCount
        return difference >= 0 && dropping(labels: difference) == other
    }

    /// The key of the canonical order of names (RFC 4034 section 6.1): the labels from the root
    /// down, in lower case; keys compare label by label, a label that is a prefix of another first.
    public var canonicalKey: [[UInt8]] {
        var labels: [[UInt8]] = []
        var offset = 0
        while wire[offset] != 0 {
            let length = Int(wire[offset])
            labels.append(wire[(offset + 1)...(offset + length)].map(DNSWire.lower))
            offset += 1 + length
        }
        return labels.reversed()
    }

    /// Whether this name comes before `other` in the canonical order (RFC 4034 section 6.1).
    public func canonicallyPrecedes(_ other: DNSName) -> Bool {
        Self.precedes(canonicalKey, other.canonicalKey)
    }

    static func precedes(_ key: [[UInt8]], _ other: [[UInt8]]) -> Bool {
        key.lexicographicallyPrecedes(other) { $0.lexicographicallyPrecedes($1) }
    }

    /// The name with its ASCII letters in lower case (length bytes are below 64, never letters).
    public var lowercased: DNSName { DNSName(validatedWire: wire.map(DNSWire.lower)) }

    /// Whether the first label is `*`.
    public var isWildcard: Bool { wire.count >= 2 && wire[0] == 1 && wire[1] == UInt8(ascii: "*") }

    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        lhs.wire.count == rhs.wire.count && zip(lhs.wire, rhs.wire).allSatisfy { DNSWire.lower($0) == DNSWire.lower($1) }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(DNSWire.hash(wire))
    }

    /// The name in presentation form, absolute ("www.example.org."), with `\.` and `\DDD` escapes.
    public var description: String {
        if wire == [0] { return "." }
        var text = ""
        var offset = 0
        while wire[offset] != 0 {
            let length = Int(wire[offset])
            for byte in wire[(offset + 1)...(offset + length)] {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: ";"), UInt8(ascii: "("), UInt8(ascii: ")"):
                    text += "\\" + String(UnicodeScalar(byte))
                case 0x21...0x7E: text.append(Character(UnicodeScalar(byte)))
                default: text += "\\" + String(repeating: "0", count: byte < 10 ? 2 : byte < 100 ? 1 : 0) + String(byte)
                }
            }
            text += "."
            offset += 1 + length
        }
        return text
    }
}
