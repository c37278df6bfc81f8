import Foundation

extension BenchReport {
    /// The report as a fixed-width text table for a terminal: the conditions, one line per
    /// baseline, then one section per scenario with a row per cell (grouped by frame size, in the
    /// order the cells ran), a cell's note on the line under its row, and a legend.
    public func table() -> String {
        let report = sanitized()
        var lines = report.environmentLines()
        if !report.baselines.isEmpty {
            lines.append("")
            lines.append("baselines")
            lines += report.baselineTable().render().map(Self.indented)
        }
        for scenario in BenchScenario.allCases {
            let scenarioCells = report.cells.filter { $0.scenario == scenario }
            guard !scenarioCells.isEmpty else { continue }
            lines.append("")
            lines.append("\(scenario.rawValue): \(scenario.summary)")
            lines += Self.cellTable(scenario: scenario, cells: scenarioCells).render().map(Self.indented)
        }
        lines.append("")
        lines.append(Self.tableLegend)
        return lines.joined(separator: "\n") + "\n"
    }

    /// Width of every ``progressLine(done:total:current:lastCell:)``, so that each one printed
    /// after `"\r"` covers the one before, and stays on one line of an 80-column terminal.
    public static let progressLineWidth = 79

    /// A single line for a live progress display, e.g.
    /// `[12/24] echo uring 64 B | last: socket 812.3 kpps, cpu 98 %, gen-bound`.
    ///
    /// It contains no control characters and is always ``progressLineWidth`` characters long
    /// (padded with spaces, or shortened with `…`): the caller prints `"\r"` before it and a newline
    /// once the run is over.
    /// - Parameters:
    ///   - done: Cells finished.
    ///   - total: Cells in the run.
    ///   - current: What is running now, e.g. `"echo uring 64 B"`.
    ///   - lastCell: The cell that finished last, if any.
    public static func progressLine(done: Int, total: Int, current: String, lastCell: BenchCell?) -> String {
        let counter = String(repeating: " ", count: max(0, String(total).count - String(done).count)) + "\(done)/\(total)"
        var line = "[\(counter)] \(current)"
        if let lastCell {
            line += " | last: \(lastCell.backend) \(BenchFormat.kpps(lastCell.pps.finiteOrZero)) kpps"
            line += ", cpu \(BenchFormat.percent(lastCell.cpuPercent.finiteOrZero)) %"
            if lastCell.generatorBound { line += ", gen-bound" }
        }
        let width = progressLineWidth
        if line.count > width {
            return String(line.prefix(width - 1)) + "…"
        }
        return line + String(repeating: " ", count: width - line.count)
    }

    private static func indented(_ line: String) -> String {
        line.isEmpty ? line : "  " + line
    }

    private static let tableLegend = """
        kpps = thousands of packets per second; vs socket / vs ceiling = handled rate over the socket \
        backend's / the in-kernel ceiling's at the same size; sys/pkt = system calls per handled packet; \
        gen-bound = the generator, not the backend, set the rate; - = not measured
        """

    private func environmentLines() -> [String] {
        let queueWord = environment.queues == 1 ? "queue" : "queues"
        let cpuWord = environment.cpus == 1 ? "CPU" : "CPUs"
        return [
            "sluice bench: kernel \(environment.kernel), \(environment.cpus) \(cpuWord), "
                + "\(environment.queues) \(queueWord), \(BenchFormat.seconds(environment.durationSeconds)) per cell, "
                + "started \(environment.startedAt)",
            "link: \(environment.link); generator: \(environment.generator)",
        ]
    }

    private func baselineTable() -> TextTable {
        var table = TextTable(columns: [
            .init("name", align: .left), .init("size", "B"), .init("offered", "kpps"), .init("handled", "kpps"),
            .init("gen cpu", "%"), .init("what", align: .left),
        ])
        for baseline in baselines {
            table.rows.append(.cells([
                baseline.name, String(baseline.size), BenchFormat.kpps(baseline.offeredPPS),
                BenchFormat.kpps(baseline.pps), BenchFormat.percent(baseline.generatorCPUPercent), baseline.detail,
            ]))
        }
        return table
    }

    private static func cellTable(scenario: BenchScenario, cells: [BenchCell]) -> TextTable {
        var columns: [TextTable.Column] = [
            .init("backend", align: .left), .init("mode", align: .left), .init("size", "B"),
            .init("offered", "kpps"), .init("handled", "kpps"), .init("Gbit/s"), .init("ns/pkt"),
            .init("cpu", "%"), .init("gen cpu", "%"), .init("drops"), .init("top drop cause", align: .left),
            .init("vs", "socket"), .init("vs", "ceiling"), .init("sys/pkt"),
        ]
        let showsLatency = scenario == .echo
        if showsLatency {
            columns += [.init("p50", "µs"), .init("p99", "µs"), .init("p99.9", "µs")]
        }
        columns.append(.init("flags", align: .left))

        var table = TextTable(columns: columns)
        // Stable: cells of one size stay in the order they ran.
        let sorted = cells.enumerated().sorted { ($0.element.size, $0.offset) < ($1.element.size, $1.offset) }
        var previousSize: Int?
        for cell in sorted.map(\.element) {
            if let previousSize, previousSize != cell.size { table.rows.append(.separator) }
            previousSize = cell.size
            var row = [
                cell.backend, cell.mode, String(cell.size),
                BenchFormat.kpps(cell.offeredPPS), BenchFormat.kpps(cell.pps),
                String(format: "%.2f", cell.gbps), BenchFormat.measurement(cell.nsPerPacket),
                BenchFormat.percent(cell.cpuPercent), BenchFormat.percent(cell.generatorCPUPercent),
                BenchFormat.count(cell.totalDrops), cell.largestDropCause ?? BenchFormat.absent,
                BenchFormat.ratio(cell.ratioToSocket), BenchFormat.ratio(cell.ratioToCeiling),
                BenchFormat.measurement(cell.syscallsPerPacket),
            ]
            if showsLatency {
                row += [
                    BenchFormat.measurement(cell.latency?.p50Microseconds),
                    BenchFormat.measurement(cell.latency?.p99Microseconds),
                    BenchFormat.measurement(cell.latency?.p999Microseconds),
                ]
            }
            row.append(cell.generatorBound ? "gen-bound" : "")
            table.rows.append(.cells(row))
            if let note = cell.note {
                table.rows.append(.note("  note: \(note)"))
            }
        }
        return table
    }
}

/// Columns padded to their widest entry, two spaces apart, with a two-line heading (name, then unit).
private struct TextTable {
    enum Alignment { case left, right }

    struct Column {
        var title: String
        var unit: String
        var align: Alignment

        /// Numbers (the default) align right.
        init(_ title: String, _ unit: String = "", align: Alignment = .right) {
            self.title = title
            self.unit = unit
            self.align = align
        }
    }

    enum Row {
        case cells([String])
        /// A line of its own, not held to the columns.
        case note(String)
        case separator
    }

    var columns: [Column]
    var rows: [Row] = []

    func render() -> [String] {
        var widths = columns.map { max($0.title.count, $0.unit.count) }
        for case .cells(let values) in rows {
            for (index, value) in values.enumerated() where index < widths.count {
                widths[index] = max(widths[index], value.count)
            }
        }
        func line(_ values: [String]) -> String {
            let padded = zip(columns, zip(values, widths)).map { column, entry in
                let (value, width) = entry
                let padding = String(repeating: " ", count: width - value.count)
                return column.align == .left ? value + padding : padding + value
            }
            return Self.trimmingTrailingSpaces(padded.joined(separator: "  "))
        }
        var lines = [line(columns.map(\.title))]
        if columns.contains(where: { !$0.unit.isEmpty }) {
            lines.append(line(columns.map(\.unit)))
        }
        for row in rows {
            switch row {
            case .cells(let values): lines.append(line(values))
            case .note(let text): lines.append(text)
            case .separator: lines.append("")
            }
        }
        return lines
    }

    private static func trimmingTrailingSpaces(_ text: String) -> String {
        String(text.reversed().drop { $0 == " " }.reversed())
    }
}
