/// Internationalized names as the DNS carries them: each label with characters beyond ASCII,
/// lower-cased, becomes `xn--` and its Punycode (RFC 3492, RFC 5891 section 4.4), as kdig and
/// libidn2 write it. No Unicode normalization is done: names are taken as they are typed.
public enum DNSPunycode {
    /// `name` with every non-ASCII label in its ASCII form; `nil` when a label cannot be encoded.
    public static func asciiName(_ name: String) -> String? {
        guard name.utf8.contains(where: { $0 >= 0x80 }) else { return name }
        var labels: [String] = []
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard label.utf8.contains(where: { $0 >= 0x80 }) else {
                labels.append(String(label))
                continue
            }
            guard let encoded = encode(Array(label.lowercased().unicodeScalars.map(\.value))) else { return nil }
            labels.append("xn--" + encoded)
        }
        return labels.joined(separator: ".")
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
