import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import SluiceBench
import SluiceTestSupport
import Testing

@Suite struct BenchReportJSONTests {
    @Test func roundTripsThroughJSON() throws {
        var report = BenchExample.report()
        report.cells[0].syscallsPerPacket = .nan
        report.cells[1].nsPerPacket = .infinity
        report.baselines[0].pps = -.infinity

        let sanitized = report.sanitized()
        #expect(sanitized.cells[0].syscallsPerPacket == 0)
        #expect(sanitized.cells[1].nsPerPacket == 0)
        #expect(sanitized.baselines[0].pps == 0)

        let decoded = try BenchReport.decode(report.jsonData())
        #expect(decoded == sanitized)
    }

    @Test func usesSnakeCaseKeysAndLeavesOutNil() throws {
        let report = BenchExample.report()
        let data = try report.jsonData()
        let text = String(decoding: data, as: UTF8.self)
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cells = try #require(root["cells"] as? [[String: Any]])
        let echo = try #require(cells.first { $0["scenario"] as? String == "echo" && $0["note"] == nil })
        let latency = try #require(echo["latency"] as? [String: Any])
        let baseline = try #require((root["baselines"] as? [[String: Any]])?.first)
        let environment = try #require(root["environment"] as? [String: Any])

        #expect(Set(root.keys) == ["environment", "cells", "baselines"])
        #expect(Set(echo.keys) == [
            "backend", "scenario", "size", "mode", "offered_pps", "pps", "gbps", "ns_per_packet", "cpu_percent",
            "generator_cpu_percent", "generator_bound", "drops", "ratio_to_ceiling", "ratio_to_socket",
            "syscalls_per_packet", "latency",
        ])
        #expect(Set(latency.keys) == [
            "rate_pps", "samples", "lost", "p50_microseconds", "p99_microseconds", "p999_microseconds",
        ])
        #expect(Set(baseline.keys) == ["name", "detail", "size", "offered_pps", "pps", "generator_cpu_percent"])
        #expect(Set(environment.keys) == [
            "kernel", "cpus", "link", "generator", "duration_seconds", "queues", "started_at",
        ])
        // Drop causes are data, not keys to convert.
        let causes = Set(cells.flatMap { ($0["drops"] as? [String: Any])?.keys.map { $0 } ?? [] })
        #expect(causes == ["xsk rx ring full", "xsk fill ring empty", "socket receive buffer", "not handled"])

        let failed = try #require(cells.first { $0["note"] != nil })
        #expect(failed["latency"] == nil)
        #expect(!text.contains("null"))

        // Sorted keys, pretty printed.
        let order = ["\"baselines\"", "\"cells\"", "\"environment\""].compactMap { text.range(of: $0)?.lowerBound }
        #expect(order.count == 3 && order == order.sorted())
        #expect(text.contains("\n  \"baselines\" : ["))
    }
}

@Suite struct BenchSchemaTests {
    @Test func acceptsTheReport() throws {
        let validator = try SchemaValidator(schema: "Benchmarks/sluice-bench.schema.json")
        let result = try validator.validate(BenchExample.report().jsonData())
        #expect(result.valid, "\(result.output)")
    }

    @Test(arguments: Drift.allCases)
    func rejectsDrift(_ drift: Drift) throws {
        let validator = try SchemaValidator(schema: "Benchmarks/sluice-bench.schema.json")
        let data = try BenchExample.report().jsonData()
        var root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var cells = try #require(root["cells"] as? [[String: Any]])
        let echo = try #require(cells.firstIndex { $0["scenario"] as? String == "echo" && $0["note"] == nil })
        switch drift {
        case .cellWithoutPPS:
            cells[0]["pps"] = nil
        case .echoWithoutLatencyOrNote:
            cells[echo]["latency"] = nil
        case .unknownCellKey:
            cells[0]["packets_per_second"] = 1000
        case .unknownEnvironmentKey:
            var environment = try #require(root["environment"] as? [String: Any])
            environment["hostname"] = "bench-1"
            root["environment"] = environment
        case .negativeRate:
            cells[0]["offered_pps"] = -1
        case .unknownScenario:
            cells[0]["scenario"] = "forward"
        }
        root["cells"] = cells
        let broken = try JSONSerialization.data(withJSONObject: root)
        let result = try validator.validate(broken)
        #expect(!result.valid, "the schema accepted a report with \(drift)")
    }

    enum Drift: CaseIterable, Sendable {
        case cellWithoutPPS, echoWithoutLatencyOrNote, unknownCellKey, unknownEnvironmentKey, negativeRate,
             unknownScenario
    }
}

@Suite struct BenchChartTests {
    @Test func isWellFormedWithABarPerCellAndTheBaselines() throws {
        let report = BenchExample.report()
        let svg = report.svg(title: "veth, 2 CPUs")
        let document = try SVGDocument(svg)

        let bars = document.elements.filter { $0.name == "rect" && $0.attributes["data-cell"] != nil }
        #expect(bars.count == report.cells.count)
        #expect(Set(bars.compactMap { $0.attributes["data-cell"] })
            == Set(report.cells.map { "\($0.backend)/\($0.scenario.rawValue)/\($0.size)" }))
        #expect(bars.allSatisfy { $0.attributes["class"] == "bar" })

        // The ceiling of each size, in each of the three panels.
        let baselines = document.elements.filter { $0.attributes["class"] == "baseline" }
        #expect(baselines.count == report.baselines.count * 3)
        #expect(Set(baselines.compactMap { $0.attributes["data-baseline"] })
            == ["xdp-drop-native/64", "xdp-drop-native/1518"])
        #expect(document.texts.filter { $0 == "xdp-drop-native 1182 kpps" }.count == 3)
        #expect(document.texts.filter { $0 == "xdp-drop-native 761.3 kpps" }.count == 3)

        #expect(document.texts.contains("veth, 2 CPUs"))
        #expect(document.texts.contains { $0.contains("kernel 6.1.0-28-amd64") })
        #expect(document.texts.contains { $0.contains("xsk bind refused") })
        for backend in BenchExample.backends {
            #expect(document.texts.contains(backend))
        }
        #expect(document.elements.filter { $0.attributes["class"] == "gen-bound" }.count == 1)
        #expect(!svg.contains("http-equiv") && !svg.contains("<script") && !svg.contains("@import"))
    }

    @Test func escapesText() throws {
        var report = BenchExample.report()
        let name = #"a<&>"b"#
        report.cells[0].backend = name
        report.cells[0].note = "x < y & 'z'\n\u{1}"
        let svg = report.svg(title: "<&>")
        #expect(svg.contains("a&lt;&amp;&gt;&quot;b"))
        #expect(!svg.contains(name))

        let document = try SVGDocument(svg)
        #expect(document.elements.contains { $0.attributes["data-cell"] == "\(name)/rxdrop/64" })
        #expect(document.texts.contains(name))
        #expect(document.texts.contains("<&>"))
    }

    @Test func drawsSeveralBaselinesPerSizeAndUnknownBackends() throws {
        var report = BenchExample.report()
        for size in BenchExample.sizes {
            report.baselines.append(BenchBaseline(
                name: "xdp-drop-generic", detail: "XDP_DROP (generic mode)", size: size, offeredPPS: 1_250_000,
                pps: (BenchExample.ceilings[size] ?? 0) * 0.97, generatorCPUPercent: 99))
        }
        // A size no cell has: not drawn, and not in the legend.
        report.baselines.append(BenchBaseline(
            name: "unmatched", detail: "", size: 256, offeredPPS: 1, pps: 1, generatorCPUPercent: 1))
        for size in [64, 512] {
            report.cells.append(BenchCell(
                backend: "dpdk", scenario: .rxdrop, size: size, mode: "poll", offeredPPS: 4e6, pps: 3.9e6,
                nsPerPacket: 250, cpuPercent: 100, generatorCPUPercent: 100, generatorBound: true))
        }
        let document = try SVGDocument(report.svg())

        #expect(document.elements.filter { $0.attributes["class"] == "bar" }.count == report.cells.count)
        // rxdrop has three sizes, the others two; each of the two measured sizes has two baselines.
        #expect(document.elements.filter { $0.attributes["class"] == "baseline" }.count == 12)
        #expect(document.texts.filter { $0.hasPrefix("xdp-drop-generic ") && $0.hasSuffix(" kpps") }.count == 6)
        #expect(document.texts.contains("xdp-drop-generic: XDP_DROP (generic mode)"))
        #expect(!document.texts.contains { $0.contains("unmatched") })
        #expect(document.texts.contains("dpdk"))
        #expect(document.texts.contains("512 B frames"))
        #expect(document.texts.contains("handled (Mpps)"))
    }

    @Test func drawsAnEmptyReport() throws {
        let document = try SVGDocument(BenchReport(environment: BenchExample.environment).svg())
        #expect(document.texts.contains("no cells measured"))
    }
}

@Suite struct BenchTableTests {
    @Test func showsEveryCellBaselineFlagAndNote() {
        let table = BenchExample.report().table()
        for backend in BenchExample.backends {
            #expect(table.contains(backend))
        }
        #expect(table.contains("xdp-drop-native"))
        #expect(table.contains("gen-bound"))
        #expect(table.contains("note: not measured: xsk bind refused"))
        #expect(table.contains("p99.9"))

        let lines = table.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let headings = ["rxdrop:", "echo:", "txonly:"].compactMap { heading in lines.firstIndex { $0.hasPrefix(heading) } }
        #expect(headings.count == 3 && headings == headings.sorted())

        // The generator-bound row is xdp-native rxdrop 1518 B, with its ratio and its drops' top cause.
        let boundRows = lines.filter { $0.hasSuffix("gen-bound") }
        #expect(boundRows.count == 1)
        #expect(boundRows.first?.contains("xdp-native") == true)
        #expect(boundRows.first?.contains("1518") == true)
        #expect(boundRows.first?.contains("2.16x") == true)
        #expect(lines.contains { $0.contains("socket receive buffer") })

    }

    @Test func progressLineHasAFixedWidth() {
        let cell = BenchExample.cell(backend: "xdp-native", scenario: .rxdrop, size: 1518)
        let first = BenchReport.progressLine(done: 0, total: 24, current: "rxdrop socket 64 B", lastCell: nil)
        let middle = BenchReport.progressLine(done: 12, total: 24, current: "echo uring 64 B", lastCell: cell)
        let long = BenchReport.progressLine(done: 24, total: 24, current: String(repeating: "x", count: 200),
                                            lastCell: cell)
        for line in [first, middle, long] {
            #expect(line.count == BenchReport.progressLineWidth)
            #expect(!line.contains("\u{1B}") && !line.contains("\r") && !line.contains("\n"))
        }
        #expect(first.hasPrefix("[ 0/24] rxdrop socket 64 B "))
        #expect(middle.hasPrefix("[12/24] echo uring 64 B | last: xdp-native 758.9 kpps, cpu 100 %, gen-bound "))
        #expect(long.hasSuffix("…"))
    }
}

// MARK: - Helpers

/// The elements (with attributes) and the text contents of an XML document, or an error if it is
/// not well-formed.
struct SVGDocument {
    struct Element {
        var name: String
        var attributes: [String: String]
    }

    let elements: [Element]
    let texts: [String]

    init(_ svg: String) throws {
        let collector = Collector()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = collector
        guard parser.parse() else {
            throw ParseError(description: "\(parser.parserError.map { "\($0)" } ?? "unknown error") at line \(parser.lineNumber)")
        }
        elements = collector.elements
        texts = collector.texts
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    private final class Collector: NSObject, XMLParserDelegate {
        var elements: [Element] = []
        var texts: [String] = []
        private var text = ""

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?, attributes: [String: String] = [:]) {
            elements.append(Element(name: elementName, attributes: attributes))
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?) {
            if elementName == "text" || elementName == "title" {
                texts.append(text)
            }
            text = ""
        }
    }
}
