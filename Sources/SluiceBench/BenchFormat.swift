import Foundation

/// Number formats shared by the table, the progress line and the chart. `String(format:)` without a
/// locale always writes `.` as the decimal separator, whatever the user's locale.
enum BenchFormat {
    /// Written where a value was not measured.
    static let absent = "-"

    /// Packets per second in thousands: one decimal below 1000 kpps, none above.
    static func kpps(_ pps: Double) -> String {
        let k = pps / 1000
        return String(format: k < 1000 ? "%.1f" : "%.0f", k)
    }

    /// A rate short enough to print above a bar: `950`, `8.1k`, `812k`, `1.23M`, `12.3M`.
    static func compactRate(_ pps: Double) -> String {
        switch pps {
        case ..<1000: String(format: "%.0f", pps)
        case ..<10_000: String(format: "%.1fk", pps / 1e3)
        case ..<999_500: String(format: "%.0fk", pps / 1e3)
        case ..<9_995_000: String(format: "%.2fM", pps / 1e6)
        default: String(format: "%.1fM", pps / 1e6)
        }
    }

    /// `2.31x`, or `-`.
    static func ratio(_ value: Double?) -> String {
        value.map { String(format: "%.2fx", $0) } ?? absent
    }

    /// A percentage with no decimals (the `%` sign is left to the caller).
    static func percent(_ value: Double) -> String {
        String(format: "%.0f", value)
    }

    /// A small measurement with as many decimals as it needs to show three digits or so:
    /// `1234`, `123.4`, `12.3`, `1.23`, `0.016`.
    static func measurement(_ value: Double?) -> String {
        guard let value else { return absent }
        let format = switch abs(value) {
        case 100...: "%.0f"
        case 10...: "%.1f"
        case 1...: "%.2f"
        case 0: "%.0f"
        default: "%.3f"
        }
        return String(format: format, value)
    }

    /// A packet count, exact up to 99 999, then `123.4k`, `4.19M`, `1.20G`.
    static func count(_ value: UInt64) -> String {
        switch value {
        case ..<100_000: String(value)
        case ..<999_950: String(format: "%.1fk", Double(value) / 1e3)
        case ..<999_995_000: String(format: "%.2fM", Double(value) / 1e6)
        default: String(format: "%.2fG", Double(value) / 1e9)
        }
    }

    /// Seconds: `5 s`, `2.5 s`.
    static func seconds(_ value: Double) -> String {
        (value.rounded() == value ? String(format: "%.0f", value) : String(format: "%.1f", value)) + " s"
    }
}

extension BenchCell {
    /// All drops added up (saturating: the counters are 64-bit, so this never happens in practice
    /// but must not trap).
    var totalDrops: UInt64 {
        drops.values.reduce(0) { sum, value in
            let (result, overflow) = sum.addingReportingOverflow(value)
            return overflow ? .max : result
        }
    }

    /// The cause with the most drops (ties go to the name first in alphabetical order), or nil when
    /// nothing was dropped.
    var largestDropCause: String? {
        drops.filter { $0.value > 0 }
            .min { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }?
            .key
    }
}

extension BenchScenario {
    /// What the scenario does, in a few words, for headings.
    var summary: String {
        switch self {
        case .rxdrop: "receive and count"
        case .echo: "reply from the same frame"
        case .txonly: "transmit only, counted where it arrives"
        case .dns: "answer one DNS question from a zone, next to Knot DNS"
        }
    }
}

extension Double {
    /// The value, or 0 if it is NaN or infinite: JSON cannot carry those, and a table or chart of
    /// them says nothing.
    var finiteOrZero: Double { isFinite ? self : 0 }
}
