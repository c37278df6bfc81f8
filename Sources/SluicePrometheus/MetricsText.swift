/// One sample of the Prometheus text exposition format: `name{label="value",…} value`.
public struct MetricsSample: Sendable, Equatable {
    /// The metric's name.
    public var name: String
    /// Its labels, in the order written.
    public var labels: [String: String]
    /// The value (`NaN`, `+Inf` and `-Inf` included).
    public var value: Double

    /// A sample.
    public init(name: String, labels: [String: String], value: Double) {
        self.name = name
        self.labels = labels
        self.value = value
    }
}

/// Why a page is not in the text exposition format.
public struct MetricsTextError: Error, Equatable, CustomStringConvertible {
    /// The line, from 1.
    public var line: Int
    /// What is wrong with it.
    public var reason: String

    public var description: String { "line \(line): \(reason)" }
}

/// The Prometheus text exposition format (version 0.0.4), read: what `sluice top` makes of a
/// scraped page. Comment lines (`# HELP`, `# TYPE`) and blank lines are skipped; a timestamp
/// after the value is accepted and ignored.
public enum MetricsText {
    /// The longest line read, against a page that never ends a line.
    public static let maximumLineLength = 65536

    /// Every sample of `text`, in order.
    ///
    /// - Throws: ``MetricsTextError`` at the first line that is not a sample, a comment or blank.
    public static func parse(_ text: String) throws(MetricsTextError) -> [MetricsSample] {
        var samples: [MetricsSample] = []
        var number = 0
        for line in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            guard line.count <= maximumLineLength else { throw MetricsTextError(line: number, reason: "longer than \(maximumLineLength) bytes") }
            var reader = LineReader(bytes: Array(line), line: number)
            reader.skipSpaces()
            if reader.atEnd || reader.peek == UInt8(ascii: "#") { continue }
            samples.append(try reader.sample())
        }
        return samples
    }
}

/// One line being read.
struct LineReader {
    let bytes: [UInt8]
    let line: Int
    var index = 0

    var atEnd: Bool { index >= bytes.count || (bytes[index] == UInt8(ascii: "\r") && index == bytes.count - 1) }
    var peek: UInt8 { bytes[index] }

    func fail(_ reason: String) -> MetricsTextError { MetricsTextError(line: line, reason: reason) }

    mutating func skipSpaces() {
        while index < bytes.count, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") { index += 1 }
    }

    mutating func sample() throws(MetricsTextError) -> MetricsSample {
        let name = try identifier(allowingColon: true)
        var labels: [String: String] = [:]
        skipSpaces()
        if !atEnd, peek == UInt8(ascii: "{") {
            index += 1
            while true {
                skipSpaces()
                guard !atEnd else { throw fail("labels not closed") }
                if peek == UInt8(ascii: "}") { index += 1; break }
                let label = try identifier(allowingColon: false)
                skipSpaces()
                guard !atEnd, peek == UInt8(ascii: "=") else { throw fail("no '=' after label \(label)") }
                index += 1
                skipSpaces()
                guard labels[label] == nil else { throw fail("label \(label) twice") }
                labels[label] = try quoted()
                skipSpaces()
                guard !atEnd else { throw fail("labels not closed") }
                if peek == UInt8(ascii: ",") { index += 1 } else if peek != UInt8(ascii: "}") { throw fail("expected ',' or '}' in the labels") }
            }
        }
        skipSpaces()
        let value = try number()
        skipSpaces()
        if !atEnd {
            // A timestamp in milliseconds may follow.
            let start = index
            if peek == UInt8(ascii: "-") { index += 1 }
            while !atEnd, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(peek) { index += 1 }
            skipSpaces()
            guard index > start, atEnd else { throw fail("unexpected text after the value") }
        }
        return MetricsSample(name: name, labels: labels, value: value)
    }

    mutating func identifier(allowingColon: Bool) throws(MetricsTextError) -> String {
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            let letter = (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || byte == UInt8(ascii: "_") || (allowingColon && byte == UInt8(ascii: ":"))
            let digit = (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            guard letter || (digit && index > start) else { break }
            index += 1
        }
        guard index > start else { throw fail(allowingColon ? "expected a metric name" : "expected a label name") }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// A label value: double quotes, with `\\`, `\"` and `\n` escaped.
    mutating func quoted() throws(MetricsTextError) -> String {
        guard !atEnd, peek == UInt8(ascii: "\"") else { throw fail("a label value must be quoted") }
        index += 1
        var value: [UInt8] = []
        while true {
            guard index < bytes.count else { throw fail("label value not closed") }
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") {
                guard index < bytes.count else { throw fail("label value not closed") }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "n"): value.append(UInt8(ascii: "\n"))
                case UInt8(ascii: "\\"), UInt8(ascii: "\""): value.append(escaped)
                default: throw fail("unknown escape \\\(Character(Unicode.Scalar(escaped)))")
                }
            } else {
                value.append(byte)
            }
        }
        return String(decoding: value, as: UTF8.self)
    }

    mutating func number() throws(MetricsTextError) -> Double {
        let start = index
        while index < bytes.count, bytes[index] != UInt8(ascii: " "), bytes[index] != UInt8(ascii: "\t"), bytes[index] != UInt8(ascii: "\r") {
            index += 1
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        switch text {
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default:
            guard let value = Double(text), text.utf8.allSatisfy({ !(UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0 | 0x20) || $0 | 0x20 == UInt8(ascii: "e") }) else {
                throw fail(text.isEmpty ? "no value" : "'\(text)' is not a number")
            }
            return value
        }
    }
}
