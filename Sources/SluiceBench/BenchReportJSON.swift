import Foundation

extension BenchReport {
    /// The report as pretty-printed JSON with sorted, snake_case keys (`offered_pps`,
    /// `generator_cpu_percent`, `p999_microseconds`, ...), the format
    /// `Benchmarks/sluice-bench.schema.json` describes.
    ///
    /// The report is ``sanitized()`` first, so a NaN or infinite measurement is written as 0 rather
    /// than failing the encode. Optional fields that are nil are left out.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(sanitized())
    }

    /// Reads a report written by ``jsonData()``.
    public static func decode(_ data: Data) throws -> BenchReport {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in
            BenchJSONKey(camelCase(fromSnakeCase: path.last?.stringValue ?? ""))
        }
        return try decoder.decode(BenchReport.self, from: data)
    }

    /// A copy in which every NaN or infinite number is replaced by 0, since JSON has no way to
    /// write them.
    public func sanitized() -> BenchReport {
        var copy = self
        copy.environment.durationSeconds = copy.environment.durationSeconds.finiteOrZero
        copy.cells = cells.map { $0.sanitized() }
        copy.baselines = baselines.map { $0.sanitized() }
        return copy
    }

    /// `offered_pps` → `offeredPPS`. The inverse of `.convertToSnakeCase` for this model's keys:
    /// `.convertFromSnakeCase` alone would give `offeredPps`, which matches no property, so the
    /// words that the properties spell as acronyms are upper-cased. A new acronym in a property name
    /// needs adding here (the JSON round-trip test fails until it is).
    static func camelCase(fromSnakeCase key: String) -> String {
        let acronyms: Set<Substring> = ["pps", "cpu"]
        let words = key.split(separator: "_", omittingEmptySubsequences: true)
        guard let first = words.first else { return key }
        return words.dropFirst().reduce(String(first)) { result, word in
            result + (acronyms.contains(word) ? word.uppercased() : word.prefix(1).uppercased() + word.dropFirst())
        }
    }
}

/// A coding key made from a string, for the decoder's key strategy.
private struct BenchJSONKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }

    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension BenchCell {
    fileprivate func sanitized() -> BenchCell {
        var copy = self
        copy.offeredPPS = offeredPPS.finiteOrZero
        copy.pps = pps.finiteOrZero
        copy.gbps = gbps.finiteOrZero
        copy.nsPerPacket = nsPerPacket.finiteOrZero
        copy.cpuPercent = cpuPercent.finiteOrZero
        copy.generatorCPUPercent = generatorCPUPercent.finiteOrZero
        copy.ratioToCeiling = ratioToCeiling?.finiteOrZero
        copy.ratioToSocket = ratioToSocket?.finiteOrZero
        copy.syscallsPerPacket = syscallsPerPacket?.finiteOrZero
        copy.latency = latency?.sanitized()
        return copy
    }
}

extension BenchLatency {
    fileprivate func sanitized() -> BenchLatency {
        var copy = self
        copy.ratePPS = ratePPS.finiteOrZero
        copy.p50Microseconds = p50Microseconds.finiteOrZero
        copy.p99Microseconds = p99Microseconds.finiteOrZero
        copy.p999Microseconds = p999Microseconds.finiteOrZero
        return copy
    }
}

extension BenchBaseline {
    fileprivate func sanitized() -> BenchBaseline {
        var copy = self
        copy.offeredPPS = offeredPPS.finiteOrZero
        copy.pps = pps.finiteOrZero
        copy.generatorCPUPercent = generatorCPUPercent.finiteOrZero
        return copy
    }
}
