#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 address, held as the 32-bit number its four bytes spell in network order
/// (198.18.0.1 is `0xC612_0001`).
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The address as a host-order integer: the first byte is the most significant.
    public var rawValue: UInt32

    /// Creates an address from its host-order integer value.
    @inlinable
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Creates an address from its four bytes, most significant first.
    @inlinable
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text ("198.18.0.1"); `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        guard let value = Self.parse(text.utf8) else { return nil }
        rawValue = value
    }

    /// Dotted-quad text's value: four parts of one to three ASCII digits, each at most 255,
    /// without leading zeros. One pass over the bytes: zone files hold hundreds of thousands.
    static func parse<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> UInt32? {
        var value: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | octet
                dots += 1
                octet = 0
                digits = 0
                continue
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), digits == 0 || octet != 0 else { return nil }
            octet = octet * 10 + UInt32(byte - UInt8(ascii: "0"))
            digits += 1
            guard octet <= 255 else { return nil }
        }
        guard digits > 0, dots == 3 else { return nil }
        return value << 8 | octet
    }

    /// 0.0.0.0.
    public static let any = IPv4Address(rawValue: 0)
    /// 127.0.0.1.
    public static let loopback = IPv4Address(127, 0, 0, 1)

    /// The four bytes in network order.
    @inlinable
    public var bytes: (UInt8, UInt8, UInt8, UInt8) {
        (UInt8(truncatingIfNeeded: rawValue >> 24), UInt8(truncatingIfNeeded: rawValue >> 16),
         UInt8(truncatingIfNeeded: rawValue >> 8), UInt8(truncatingIfNeeded: rawValue))
    }

    /// Reads an address stored in network order at `pointer`.
    @inlinable
    public init(networkBytesAt pointer: UnsafeRawPointer) {
        rawValue = UInt32(bigEndian: pointer.loadUnaligned(as: UInt32.self))
    }

    /// Stores the address in network order at `pointer`.
    @inlinable
    public func store(networkBytesAt pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: rawValue.bigEndian, as: UInt32.self)
    }

    /// Dotted-quad text, e.g. "198.18.0.1".
    public var description: String {
        let b = bytes
        return "\(b.0).\(b.1).\(b.2).\(b.3)"
    }

    /// Orders addresses numerically.
    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// An IPv6 address, held as two host-order 64-bit halves of its 128 network-order bits.
public struct IPv6Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The first 64 bits, most significant first.
    public var high: UInt64
    /// The last 64 bits, most significant first.
    public var low: UInt64

    /// Creates an address from its two halves.
    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Creates an address from its eight 16-bit groups, most significant first.
    public init(groups g: [UInt16]) {
        precondition(g.count == 8, "an IPv6 address has eight groups")
        high = g[0..<4].reduce(0) { $0 << 16 | UInt64($1) }
        low = g[4..<8].reduce(0) { $0 << 16 | UInt64($1) }
    }

    /// The IPv4-mapped form `::ffff:a.b.c.d` (RFC 4291 section 2.5.5.2).
    @inlinable
    public init(mapping v4: IPv4Address) {
        high = 0
        low = 0xFFFF_0000_0000 | UInt64(v4.rawValue)
    }

    /// `::`.
    public static let any = IPv6Address(high: 0, low: 0)
    /// `::1`.
    public static let loopback = IPv6Address(high: 0, low: 1)

    /// Whether this is a link-local unicast address (`fe80::/10`): one that needs its interface.
    @inlinable
    public var isLinkLocal: Bool { high >> 54 == 0x3FA }

    /// The embedded IPv4 address when this is an IPv4-mapped address.
    @inlinable
    public var mappedIPv4: IPv4Address? {
        guard high == 0, low >> 32 == 0xFFFF else { return nil }
        return IPv4Address(rawValue: UInt32(truncatingIfNeeded: low))
    }

    /// The eight 16-bit groups, most significant first.
    public var groups: [UInt16] {
        (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64($0))) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64($0))) }
    }

    /// Reads an address stored in network order at `pointer`.
    @inlinable
    public init(networkBytesAt pointer: UnsafeRawPointer) {
        high = UInt64(bigEndian: pointer.loadUnaligned(as: UInt64.self))
        low = UInt64(bigEndian: pointer.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }

    /// Stores the address in network order at `pointer`.
    @inlinable
    public func store(networkBytesAt pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: high.bigEndian, as: UInt64.self)
        pointer.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Parses RFC 4291 text: full, `::`-compressed, and with a trailing dotted quad.
    public init?(_ text: some StringProtocol) {
        guard let (high, low) = Self.parse(text.utf8) else { return nil }
        self.init(high: high, low: low)
    }

    /// RFC 4291 text's two halves, read in one pass over the bytes.
    static func parse<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> (high: UInt64, low: UInt64)? {
        guard !bytes.isEmpty, bytes.count <= 45 else { return nil }
        let colon = UInt8(ascii: ":")
        var groups = InlineArray<8, UInt16>(repeating: 0)
        var count = 0
        // Where `::` stands, in groups; -1 for none.
        var gap = -1
        var i = bytes.startIndex
        if bytes[i] == colon {
            i = bytes.index(after: i)
            guard i != bytes.endIndex, bytes[i] == colon else { return nil }
            gap = 0
            i = bytes.index(after: i)
        }
        while i != bytes.endIndex {
            let start = i
            var value: UInt16 = 0
            var digits = 0
            while i != bytes.endIndex, let digit = hexDigitValue(bytes[i]) {
                if digits < 4 { value = value << 4 | digit }
                digits += 1
                i = bytes.index(after: i)
            }
            if i != bytes.endIndex, bytes[i] == UInt8(ascii: ".") {
                // A dotted quad ends the address, as its last two groups.
                guard count <= 6, let v4 = IPv4Address.parse(bytes[start...]) else { return nil }
                groups[count] = UInt16(truncatingIfNeeded: v4 >> 16)
                groups[count + 1] = UInt16(truncatingIfNeeded: v4)
                count += 2
                break
            }
            guard (1...4).contains(digits), count < 8 else { return nil }
            groups[count] = value
            count += 1
            guard i != bytes.endIndex else { break }
            guard bytes[i] == colon else { return nil }
            i = bytes.index(after: i)
            guard i != bytes.endIndex else { return nil }
            if bytes[i] == colon {
                guard gap < 0 else { return nil }
                gap = count
                i = bytes.index(after: i)
            }
        }
        if gap >= 0 {
            // The groups after `::` move to the end; the zeros it stands for fill the gap.
            guard count <= 7 else { return nil }
            for k in 0..<(count - gap) {
                groups[7 - k] = groups[count - 1 - k]
                groups[count - 1 - k] = 0
            }
        } else {
            guard count == 8 else { return nil }
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for k in 0..<4 {
            high = high << 16 | UInt64(groups[k])
            low = low << 16 | UInt64(groups[k + 4])
        }
        return (high, low)
    }

    /// RFC 5952 text: lower case, leading zeros dropped, the longest run of two or more
    /// zero groups written `::`, and IPv4-mapped addresses as `::ffff:a.b.c.d`.
    public var description: String {
        if let v4 = mappedIPv4 { return "::ffff:\(v4)" }
        let g = groups
        var bestStart = -1
        var bestLength = 1
        var i = 0
        while i < 8 {
            guard g[i] == 0 else { i += 1; continue }
            var j = i
            while j < 8, g[j] == 0 { j += 1 }
            if j - i > bestLength { bestStart = i; bestLength = j - i }
            i = j
        }
        func hex(_ range: Range<Int>) -> String { g[range].map { String($0, radix: 16) }.joined(separator: ":") }
        guard bestStart >= 0 else { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    /// Orders addresses numerically.
    public static func < (lhs: IPv6Address, rhs: IPv6Address) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// An IPv4 address.
    case v4(IPv4Address)
    /// An IPv6 address.
    case v6(IPv6Address)

    /// Parses either family's text form.
    public init?(_ text: some StringProtocol) {
        if let a = IPv4Address(text) {
            self = .v4(a)
        } else if let a = IPv6Address(text) {
            self = .v6(a)
        } else {
            return nil
        }
    }

    /// The socket address family: `AF_INET` for IPv4, `AF_INET6` for IPv6 (an IPv4-mapped IPv6
    /// address included; see ``unmapped``).
    @inlinable
    public var family: Int32 {
        switch self {
        case .v4: Int32(AF_INET)
        case .v6: Int32(AF_INET6)
        }
    }

    /// Whether this is a multicast address (224.0.0.0/4, ff00::/8) or the limited broadcast
    /// 255.255.255.255: a destination a reply never leaves from.
    @inlinable
    public var isMulticastOrBroadcast: Bool {
        switch self {
        case .v4(let a): a.rawValue >> 28 == 0xE || a.rawValue == 0xFFFF_FFFF
        case .v6(let a): a.high >> 56 == 0xFF
        }
    }

    /// The unspecified address of this family (`0.0.0.0` or `::`).
    @inlinable
    public var unspecified: IPAddress {
        switch self {
        case .v4: .v4(.any)
        case .v6: .v6(.any)
        }
    }

    /// Whether `other` is of this family and its first `prefixLength` bits are this address's:
    /// whether it lies in this address's subnet of that length.
    public func sharesPrefix(with other: IPAddress, length prefixLength: Int) -> Bool {
        func same(_ a: UInt64, _ b: UInt64, bits: Int) -> Bool { bits <= 0 || (a ^ b) >> (64 - UInt64(min(bits, 64))) == 0 }
        switch (self, other) {
        case let (.v4(a), .v4(b)):
            return same(UInt64(a.rawValue) << 32, UInt64(b.rawValue) << 32, bits: min(prefixLength, 32))
        case let (.v6(a), .v6(b)):
            return same(a.high, b.high, bits: prefixLength) && same(a.low, b.low, bits: prefixLength - 64)
        default:
            return false
        }
    }

    /// An IPv4-mapped IPv6 address turned into plain IPv4; anything else unchanged.
    @inlinable
    public var unmapped: IPAddress {
        if case .v6(let a) = self, let v4 = a.mappedIPv4 { return .v4(v4) }
        return self
    }

    /// The address in its family's text form.
    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }
}

/// An IP address and a UDP or TCP port.
public struct IPEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// The address.
    public var address: IPAddress
    /// The port, in host order.
    public var port: UInt16

    /// Creates an endpoint.
    @inlinable
    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `198.18.0.1:53`, `[2001:2::1]:53`, or `:53` (any IPv4 address).
    public init?(_ text: some StringProtocol) {
        let s = String(text)
        let hostPart: Substring
        let portPart: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].hasPrefix(":") else { return nil }
            hostPart = s[s.index(after: s.startIndex)..<close]
            portPart = s[s.index(close, offsetBy: 2)...]
            guard let a = IPv6Address(hostPart), isDecimalDigits(portPart), let p = UInt16(portPart) else { return nil }
            self.init(address: .v6(a), port: p)
            return
        }
        guard let colon = s.lastIndex(of: ":") else { return nil }
        hostPart = s[..<colon]
        portPart = s[s.index(after: colon)...]
        guard isDecimalDigits(portPart), let p = UInt16(portPart) else { return nil }
        if hostPart.isEmpty {
            self.init(address: .v4(.any), port: p)
            return
        }
        guard let a = IPv4Address(hostPart) else { return nil }
        self.init(address: .v4(a), port: p)
    }

    /// `198.18.0.1:53` or `[2001:2::1]:53`.
    public var description: String {
        switch address {
        case .v4(let a): "\(a):\(port)"
        case .v6(let a): "[\(a)]:\(port)"
        }
    }
}

/// An Ethernet MAC address, held in the low 48 bits of an integer, first byte most significant.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    /// The 48-bit value.
    public var rawValue: UInt64

    /// Creates an address from its 48-bit value (the upper 16 bits must be zero).
    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    /// Creates an address from its six bytes.
    @inlinable
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ e: UInt8, _ f: UInt8) {
        rawValue = UInt64(a) << 40 | UInt64(b) << 32 | UInt64(c) << 24 | UInt64(d) << 16 | UInt64(e) << 8 | UInt64(f)
    }

    /// Parses `aa:bb:cc:dd:ee:ff`.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var v: UInt64 = 0
        for p in parts {
            guard p.count == 2, isHexDigits(p), let b = UInt8(p, radix: 16) else { return nil }
            v = v << 8 | UInt64(b)
        }
        rawValue = v
    }

    /// ff:ff:ff:ff:ff:ff.
    public static let broadcast = MACAddress(rawValue: 0xFFFF_FFFF_FFFF)

    /// Reads six bytes at `pointer`.
    @inlinable
    public init(networkBytesAt pointer: UnsafeRawPointer) {
        let hi = UInt64(UInt16(bigEndian: pointer.loadUnaligned(as: UInt16.self)))
        let lo = UInt64(UInt32(bigEndian: pointer.loadUnaligned(fromByteOffset: 2, as: UInt32.self)))
        rawValue = hi << 32 | lo
    }

    /// Writes the six bytes at `pointer`.
    @inlinable
    public func store(networkBytesAt pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: UInt16(truncatingIfNeeded: rawValue >> 32).bigEndian, as: UInt16.self)
        pointer.storeBytes(of: UInt32(truncatingIfNeeded: rawValue).bigEndian, toByteOffset: 2, as: UInt32.self)
    }

    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    public var description: String {
        (0..<6).map { i -> String in
            let b = UInt8(truncatingIfNeeded: rawValue >> (40 - 8 * UInt64(i)))
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined(separator: ":")
    }
}

/// The value of an ASCII hex digit, or nil.
private func hexDigitValue(_ byte: UInt8) -> UInt16? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt16(byte &- UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt16(byte &- UInt8(ascii: "a") &+ 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt16(byte &- UInt8(ascii: "A") &+ 10)
    default: nil
    }
}

/// True for a non-empty run of ASCII hex digits. Integer parsing alone would also take a
/// leading `+` or `-`, which no address or port text allows.
private func isHexDigits(_ text: some StringProtocol) -> Bool {
    !text.isEmpty && text.utf8.allSatisfy {
        switch $0 {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
             UInt8(ascii: "A")...UInt8(ascii: "F"): true
        default: false
        }
    }
}

/// True for a non-empty run of ASCII decimal digits.
private func isDecimalDigits(_ text: some StringProtocol) -> Bool {
    !text.isEmpty && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
}
