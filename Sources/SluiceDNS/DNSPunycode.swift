/// Internationalized names as the DNS carries them: each label with characters beyond ASCII,
/// lower-cased, becomes `xn--` and its Punycode (RFC 3492, RFC 5891 section 4.4), as kdig and
/// libidn2 write it. No Unicode normalization is done: names are taken as they are typed.
public enum DNSPunycode {
    /// `name` with every non-ASCII label in its ASCII form; `nil` when a label cannot be an
    /// IDNA label (as kdig refuses it): a character IDNA2008 disallows (a symbol, punctuation,
    /// a space), or an `xn--` label whose Punycode does not decode to such a label.
    public static func asciiName(_ name: String) -> String? {
        var labels: [String] = []
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard label.utf8.contains(where: { $0 >= 0x80 }) else {
                if label.utf8.count > 4, label.lowercased().hasPrefix("xn--") {
                    guard let scalars = decode(Array(label.utf8.dropFirst(4))), !scalars.isEmpty, isIDNALabel(scalars) else { return nil }
                }
                labels.append(String(label))
                continue
            }
            let scalars = Array(label.lowercased().unicodeScalars)
            guard isIDNALabel(scalars), let encoded = encode(scalars.map(\.value)) else { return nil }
            labels.append("xn--" + encoded)
        }
        return labels.joined(separator: ".")
    }

    /// Whether an internationalized label's characters are ones IDNA2008 takes (RFC 5892, in
    /// outline: letters, combining marks, decimal digits, the hyphen; not a leading mark).
    static func isIDNALabel(_ scalars: [Unicode.Scalar]) -> Bool {
        let marks: [Unicode.GeneralCategory] = [.nonspacingMark, .spacingMark, .enclosingMark]
        guard let first = scalars.first, !marks.contains(first.properties.generalCategory) else { return false }
        return scalars.contains { $0.value >= 0x80 } && scalars.allSatisfy { scalar in
            switch scalar.properties.generalCategory {
            case .lowercaseLetter, .otherLetter, .modifierLetter, .nonspacingMark, .spacingMark, .decimalNumber: true
            default: scalar == "-" || (scalar.value < 0x80 && scalar.properties.isAlphabetic)
            }
        }
    }

    /// RFC 3492 section 6.2; `nil` for anything that is not Punycode.
    static func decode(_ input: [UInt8]) -> [Unicode.Scalar]? {
        let split = input.lastIndex(of: UInt8(ascii: "-"))
        var output: [UInt32] = split.map { input[..<$0].map(UInt32.init) } ?? []
        guard output.allSatisfy({ $0 < 0x80 }) else { return nil }
        var index = split.map { $0 + 1 } ?? 0
        var n = 128, i = 0, bias = 72
        while index < input.count {
            let old = i
            var weight = 1
            var k = base
            while true {
                guard index < input.count, let value = digitValue(input[index]) else { return nil }
                index += 1
                let (step, overflow) = value.multipliedReportingOverflow(by: weight)
                guard !overflow, i <= Int(UInt32.max) - step else { return nil }
                i += step
                let t = k <= bias ? tMin : k >= bias + tMax ? tMax : k - bias
                if value < t { break }
                let (next, wide) = weight.multipliedReportingOverflow(by: base - t)
                guard !wide, next <= Int(UInt32.max) else { return nil }
                weight = next
                k += base
            }
            bias = adapt(i - old, points: output.count + 1, first: old == 0)
            n += i / (output.count + 1)
            i %= output.count + 1
            guard n <= 0x10FFFF else { return nil }
            output.insert(UInt32(n), at: i)
            i += 1
        }
        let scalars = output.compactMap(Unicode.Scalar.init)
        return scalars.count == output.count ? scalars : nil
    }

    static func digitValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"): Int(byte - UInt8(ascii: "a"))
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): Int(byte - UInt8(ascii: "A"))
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0")) + 26
        default: nil
        }
    }

    static let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700

    /// RFC 3492 section 6.3; `nil` on overflow.
    static func encode(_ input: [UInt32]) -> String? {
        var output = input.filter { $0 < 0x80 }.map { Character(Unicode.Scalar($0)!) }
        let basic = output.count
        var handled = basic
        if basic > 0 { output.append("-") }
        var n = 128, delta = 0, bias = 72
        while handled < input.count {
            guard let next = input.lazy.map({ Int($0) }).filter({ $0 >= n }).min() else { return nil }
            let (step, overflow) = (next - n).multipliedReportingOverflow(by: handled + 1)
            guard !overflow, delta <= Int(UInt32.max) - step else { return nil }
            delta += step
            n = next
            for scalar in input.map({ Int($0) }) {
                if scalar < n { delta += 1 }
                guard scalar == n else { continue }
                var q = delta
                var k = base
                while true {
                    let t = k <= bias ? tMin : k >= bias + tMax ? tMax : k - bias
                    if q < t { break }
                    output.append(digit(t + (q - t) % (base - t)))
                    q = (q - t) / (base - t)
                    k += base
                }
                output.append(digit(q))
                bias = adapt(delta, points: handled + 1, first: handled == basic)
                delta = 0
                handled += 1
            }
            delta += 1
            n += 1
        }
        return String(output)
    }

    static func adapt(_ delta: Int, points: Int, first: Bool) -> Int {
        var delta = first ? delta / damp : delta / 2
        delta += delta / points
        var k = 0
        while delta > ((base - tMin) * tMax) / 2 {
            delta /= base - tMin
            k += base
        }
        return k + (base - tMin + 1) * delta / (delta + skew)
    }

    static func digit(_ value: Int) -> Character {
        Character(Unicode.Scalar(UInt8(value < 26 ? 97 + value : 22 + value)))
    }
}
