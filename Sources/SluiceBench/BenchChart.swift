import Foundation

extension BenchReport {
    /// The report as a self-contained SVG grouped bar chart (no external fonts, scripts or style
    /// sheets), readable without the table.
    ///
    /// One panel per scenario present, one group of bars per frame size, one bar per backend
    /// (coloured the same in every panel, with a legend). A bar's height is the handled rate and its
    /// value is printed above it; the offered rate is a dark tick over a pale bar of the same
    /// colour; generator-bound bars are hatched; each baseline of that size is a dashed line across the
    /// group, labelled with its name and rate; cells with a note are starred and the notes listed
    /// under the panel.
    ///
    /// Every bar is a `rect` with `class="bar"` and `data-cell="backend/scenario/size"`; every
    /// baseline line has `class="baseline"` and `data-baseline="name/size"`.
    /// - Parameter title: The heading; by default `"sluice bench: packets handled per second"`.
    public func svg(title: String? = nil) -> String {
        BenchChart(report: sanitized(), title: title ?? "sluice bench: packets handled per second").render()
    }
}

/// Lays out and writes the chart of ``BenchReport/svg(title:)``.
private struct BenchChart {
    let report: BenchReport
    let title: String

    static let width = 1100.0
    static let plotLeft = 86.0
    static let plotRight = width - 24
    static let plotHeight = 250.0
    /// Approximate advance of one character, as a fraction of the font size (DejaVu Sans, the
    /// widest of the fonts named), to lay out text without measuring it.
    static let characterWidth = 0.6
    static let fontFamily = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"
    static let hatchID = "gen-bound-hatch"

    /// Colours kept for the backends `sluice bench` knows, so a backend looks the same in every
    /// chart; other backends take the spare ones in order of appearance.
    static let knownColours = [
        "socket": "#E69F00", "uring": "#56B4E9", "xdp-native": "#009E73", "xdp-generic": "#0072B2",
    ]
    static let spareColours = ["#CC79A7", "#D55E00", "#8C6BB1", "#999933", "#882255", "#44AA99"]

    /// Baseline lines take these in order of first appearance, one per baseline name.
    static let baselineColours = ["#C0392B", "#6A3D9A", "#4D4D4D", "#B15928"]

    /// Backends in order of first appearance.
    let backends: [String]
    let backendColours: [String: String]
    /// Names of the baselines drawn, in order of first appearance.
    let baselineNames: [String]
    let baselineColours: [String: String]

    init(report: BenchReport, title: String) {
        self.report = report
        self.title = title
        backends = Self.inOrderOfAppearance(report.cells.map(\.backend))
        var spare = 0
        backendColours = Dictionary(uniqueKeysWithValues: backends.map { backend in
            if let colour = Self.knownColours[backend] { return (backend, colour) }
            defer { spare += 1 }
            return (backend, Self.spareColours[spare % Self.spareColours.count])
        })
        // Only baselines of a size some cell has are drawn, so only those are in the legend.
        let sizes = Set(report.cells.map(\.size))
        baselineNames = Self.inOrderOfAppearance(report.baselines.filter { sizes.contains($0.size) }.map(\.name))
        baselineColours = Dictionary(uniqueKeysWithValues: baselineNames.enumerated().map { index, name in
            (name, Self.baselineColours[index % Self.baselineColours.count])
        })
    }

    static func inOrderOfAppearance(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    func render() -> String {
        var body = SVGWriter()
        var y = 34.0
        body.text(title, x: Self.plotLeft - 60, y: y, size: 20, attributes: [("font-weight", "bold")])
        y += 6
        for line in subtitleLines() {
            y += 17
            body.text(line, x: Self.plotLeft - 60, y: y, size: 12.5, attributes: [("fill", "#444444")])
        }
        y = drawLegend(into: &body, top: y + 16)

        let scenarios = BenchScenario.allCases.filter { scenario in report.cells.contains { $0.scenario == scenario } }
        if scenarios.isEmpty {
            y += 40
            body.text("no cells measured", x: Self.plotLeft - 60, y: y, size: 14, attributes: [("fill", "#444444")])
        }
        for scenario in scenarios {
            y = drawPanel(scenario, into: &body, top: y + 36)
        }
        let height = (y + 24).rounded(.up)

        // The body is laid out first because the root element needs the height it comes to.
        var svg = SVGWriter()
        svg.raw(#"<?xml version="1.0" encoding="UTF-8"?>"#)
        svg.open("svg", [
            ("xmlns", "http://www.w3.org/2000/svg"), ("width", SVGWriter.number(Self.width)),
            ("height", SVGWriter.number(height)),
            ("viewBox", "0 0 \(SVGWriter.number(Self.width)) \(SVGWriter.number(height))"),
            ("font-family", Self.fontFamily), ("role", "img"),
        ])
        svg.element("title", [], text: title)
        svg.open("defs", [])
        svg.open("pattern", [
            ("id", Self.hatchID), ("width", "6"), ("height", "6"), ("patternUnits", "userSpaceOnUse"),
            ("patternTransform", "rotate(45)"),
        ])
        svg.element("rect", [("width", "2.5"), ("height", "6"), ("fill", "#ffffff"), ("fill-opacity", "0.8")])
        svg.close("pattern")
        svg.close("defs")
        svg.element("rect", [("width", "100%"), ("height", "100%"), ("fill", "#ffffff")])
        svg.append(body)
        svg.close("svg")
        return svg.output
    }

    // MARK: - Heading

    func subtitleLines() -> [String] {
        let environment = report.environment
        let first = [
            "kernel \(environment.kernel)", "\(environment.cpus) CPU\(environment.cpus == 1 ? "" : "s")",
            "\(environment.queues) queue\(environment.queues == 1 ? "" : "s")",
            "\(BenchFormat.seconds(environment.durationSeconds)) per cell", "started \(environment.startedAt)",
        ].joined(separator: " · ")
        let second = "link: \(environment.link) · generator: \(environment.generator)"
        let maxCharacters = Int((Self.width - 2 * (Self.plotLeft - 60)) / (12.5 * Self.characterWidth))
        return wrap(first, maxCharacters: maxCharacters) + wrap(second, maxCharacters: maxCharacters)
    }

    /// One row of swatches (wrapping when full): the backends, what the marks mean, and the
    /// baselines. Returns the bottom of the legend.
    func drawLegend(into svg: inout SVGWriter, top: Double) -> Double {
        let fontSize = 12.5
        let left = Self.plotLeft - 60
        var x = left
        var y = top
        func place(label: String, swatchWidth: Double = 14, swatch: (inout SVGWriter, Double, Double) -> Void) {
            let itemWidth = swatchWidth + 6 + Self.textWidth(label, size: fontSize) + 20
            if x + itemWidth > Self.width - 10, x > left {
                x = left
                y += 22
            }
            swatch(&svg, x, y)
            svg.text(label, x: x + swatchWidth + 6, y: y + 11.5, size: fontSize)
            x += itemWidth
        }
        for backend in backends {
            place(label: backend) { svg, x, y in
                svg.element("rect", [
                    ("x", SVGWriter.number(x)), ("y", SVGWriter.number(y)), ("width", "14"), ("height", "14"),
                    ("fill", backendColours[backend] ?? "#888888"),
                ])
            }
        }
        place(label: "generator-bound (the generator, not the backend, set the rate)") { svg, x, y in
            for fill in ["#888888", "url(#\(Self.hatchID))"] {
                svg.element("rect", [
                    ("x", SVGWriter.number(x)), ("y", SVGWriter.number(y)), ("width", "14"), ("height", "14"),
                    ("fill", fill),
                ])
            }
        }
        place(label: "offered rate", swatchWidth: 18) { svg, x, y in
            svg.element("rect", offeredShadowAttributes(x: x + 2, y: y + 2, width: 14, height: 12, colour: "#888888"))
            svg.element("line", offeredTickAttributes(x: x + 2, y: y + 2, width: 14))
        }
        for name in baselineNames {
            let detail = report.baselines.first { $0.name == name }?.detail ?? ""
            let label = detail.isEmpty ? name : "\(name): \(detail)"
            place(label: truncated(label, maxCharacters: 120), swatchWidth: 24) { svg, x, y in
                svg.element("line", baselineAttributes(x1: x, x2: x + 24, y: y + 7, colour: baselineColours[name]))
            }
        }
        if report.cells.contains(where: { $0.note != nil }) {
            place(label: "* = see the note under the panel", swatchWidth: 0) { _, _, _ in }
        }
        return y + 14
    }

    // MARK: - Panels

    /// A scenario's panel: its heading, axis, groups of bars, baselines and notes. Returns its bottom.
    func drawPanel(_ scenario: BenchScenario, into svg: inout SVGWriter, top: Double) -> Double {
        let cells = report.cells.filter { $0.scenario == scenario }
        let sizes = Array(Set(cells.map(\.size))).sorted()
        let panelBackends = backends.filter { backend in cells.contains { $0.backend == backend } }
        let baselines = report.baselines.filter { sizes.contains($0.size) }

        svg.text("\(scenario.rawValue): \(scenario.summary)", x: Self.plotLeft - 60, y: top, size: 15,
                 attributes: [("font-weight", "bold")])
        let plotTop = top + 24
        let plotBottom = plotTop + Self.plotHeight
        let peak = (cells.flatMap { [$0.pps, $0.offeredPPS] } + baselines.map(\.pps)).max() ?? 0
        let axis = RateAxis(peak: peak)
        func yPosition(_ pps: Double) -> Double { plotBottom - min(pps / axis.top, 1) * Self.plotHeight }

        drawAxis(axis, into: &svg, plotTop: plotTop, plotBottom: plotBottom)

        let groupWidth = (Self.plotRight - Self.plotLeft) / Double(sizes.count)
        let groupPadding = groupWidth * 0.1
        let slotWidth = (groupWidth - 2 * groupPadding) / Double(max(panelBackends.count, 1))
        let barWidth = min(slotWidth * 0.78, 64)
        var notes: [String] = []

        for (groupIndex, size) in sizes.enumerated() {
            let groupLeft = Self.plotLeft + Double(groupIndex) * groupWidth
            svg.text("\(size) B frames", x: groupLeft + groupWidth / 2, y: plotBottom + 20, size: 13,
                     attributes: [("text-anchor", "middle")])
            if groupIndex > 0 {
                svg.element("line", [
                    ("x1", SVGWriter.number(groupLeft)), ("x2", SVGWriter.number(groupLeft)),
                    ("y1", SVGWriter.number(plotTop)), ("y2", SVGWriter.number(plotBottom + 6)),
                    ("stroke", "#cccccc"),
                ])
            }

            var occupied: [Box] = []
            for cell in cells where cell.size == size {
                guard let slot = panelBackends.firstIndex(of: cell.backend) else { continue }
                let x = groupLeft + groupPadding + (Double(slot) + 0.5) * slotWidth - barWidth / 2
                let barTop = yPosition(cell.pps)
                let offeredTop = yPosition(cell.offeredPPS)
                if let note = cell.note {
                    notes.append("\(cell.backend), \(size) B: \(note)")
                }
                occupied += drawBar(cell, colour: backendColours[cell.backend] ?? "#888888", x: x, width: barWidth,
                                    top: barTop, offeredTop: offeredTop, bottom: plotBottom, into: &svg)
            }

            // Baselines last, so their labels stay on top of the bars. A label goes just above its
            // line, or the nearest free place above or below it, clear of the values over the bars
            // and of the other labels.
            for baseline in baselines.filter({ $0.size == size }).sorted(by: { $0.pps > $1.pps }) {
                let lineY = yPosition(baseline.pps)
                svg.element("line", [("class", "baseline"), ("data-baseline", "\(baseline.name)/\(size)")]
                    + baselineAttributes(x1: groupLeft + 6, x2: groupLeft + groupWidth - 6, y: lineY,
                                         colour: baselineColours[baseline.name]))
                let label = "\(baseline.name) \(BenchFormat.kpps(baseline.pps)) kpps"
                let right = groupLeft + groupWidth - 8
                let left = right - Self.textWidth(label, size: 11)
                let offsets: [Double] = [-4, 13, -17, 26, -30, 39, -43, 52]
                let boxes = offsets.map { Box(left: left, right: right, top: lineY + $0 - 10, bottom: lineY + $0 + 2) }
                let box = boxes.first { box in
                    box.top >= plotTop - 14 && box.bottom <= plotBottom - 2 && !occupied.contains { $0.overlaps(box) }
                } ?? boxes[0]
                occupied.append(box)
                svg.text(label, x: right, y: box.bottom - 2, size: 11,
                         attributes: [("text-anchor", "end"), ("fill", baselineColours[baseline.name] ?? "#222222"),
                                      ("class", "baseline-label")]
                            + SVGWriter.halo)
            }
        }

        var bottom = plotBottom + 24
        let noteCharacters = Int((Self.plotRight - Self.plotLeft) / (11.5 * Self.characterWidth))
        for note in notes {
            for (index, line) in wrap("* " + note, maxCharacters: noteCharacters).enumerated() {
                bottom += 16
                svg.text((index > 0 ? "  " : "") + line, x: Self.plotLeft, y: bottom, size: 11.5,
                         attributes: [("fill", "#444444")])
            }
        }
        return bottom
    }

    /// Gridlines and tick labels from 0 to the axis top, and the unit on the side.
    func drawAxis(_ axis: RateAxis, into svg: inout SVGWriter, plotTop: Double, plotBottom: Double) {
        for tick in axis.ticks {
            let y = plotBottom - tick / axis.top * Self.plotHeight
            svg.element("line", [
                ("x1", SVGWriter.number(Self.plotLeft)), ("x2", SVGWriter.number(Self.plotRight)),
                ("y1", SVGWriter.number(y)), ("y2", SVGWriter.number(y)),
                ("stroke", tick == 0 ? "#333333" : "#e3e3e3"), ("stroke-width", tick == 0 ? "1.2" : "1"),
            ])
            svg.text(axis.label(tick), x: Self.plotLeft - 8, y: y + 4, size: 11.5,
                     attributes: [("text-anchor", "end"), ("fill", "#444444")])
        }
        let middle = (plotTop + plotBottom) / 2
        svg.text("handled (\(axis.unit))", x: Self.plotLeft - 58, y: middle, size: 12.5, attributes: [
            ("text-anchor", "middle"), ("fill", "#444444"),
            ("transform", "rotate(-90 \(SVGWriter.number(Self.plotLeft - 58)) \(SVGWriter.number(middle)))"),
        ])
    }

    /// A cell's bar: a pale bar up to the offered rate behind it, the bar, the hatch if
    /// generator-bound, the offered tick, and the value above whichever is higher. Returns where the
    /// tick and the value are, for other labels to keep clear of.
    func drawBar(_ cell: BenchCell, colour: String, x: Double, width: Double, top: Double, offeredTop: Double,
                 bottom: Double, into svg: inout SVGWriter) -> [Box] {
        let tooltip = "\(cell.backend) \(cell.scenario.rawValue) \(cell.size) B: handled \(BenchFormat.kpps(cell.pps)) kpps"
            + " of \(BenchFormat.kpps(cell.offeredPPS)) kpps offered" + (cell.generatorBound ? " (generator-bound)" : "")
            + (cell.note.map { ". \($0)" } ?? "")
        if cell.offeredPPS > 0 {
            svg.element("rect", offeredShadowAttributes(x: x, y: offeredTop, width: width, height: bottom - offeredTop,
                                                        colour: colour))
        }
        svg.open("rect", [
            ("class", "bar"), ("data-cell", "\(cell.backend)/\(cell.scenario.rawValue)/\(cell.size)"),
            ("x", SVGWriter.number(x)), ("y", SVGWriter.number(top)), ("width", SVGWriter.number(width)),
            ("height", SVGWriter.number(bottom - top)), ("fill", colour),
        ])
        svg.element("title", [], text: tooltip)
        svg.close("rect")
        if cell.generatorBound {
            svg.element("rect", [
                ("class", "gen-bound"), ("x", SVGWriter.number(x)), ("y", SVGWriter.number(top)),
                ("width", SVGWriter.number(width)), ("height", SVGWriter.number(bottom - top)),
                ("fill", "url(#\(Self.hatchID))"),
            ])
        }
        var drawn: [Box] = []
        if cell.offeredPPS > 0 {
            svg.element("line", offeredTickAttributes(x: x, y: offeredTop, width: width))
            drawn.append(Box(left: x - 3, right: x + width + 3, top: offeredTop - 1.5, bottom: offeredTop + 1.5))
        }
        let label = BenchFormat.compactRate(cell.pps) + (cell.note != nil ? "*" : "")
        let labelBaseline = min(top, offeredTop) - 5
        svg.text(label, x: x + width / 2, y: labelBaseline, size: 11,
                 attributes: [("text-anchor", "middle"), ("fill", "#222222")] + SVGWriter.halo)
        let labelWidth = Self.textWidth(label, size: 11)
        drawn.append(Box(left: x + width / 2 - labelWidth / 2, right: x + width / 2 + labelWidth / 2,
                         top: labelBaseline - 10, bottom: labelBaseline + 2))
        return drawn
    }

    func offeredShadowAttributes(x: Double, y: Double, width: Double, height: Double,
                                 colour: String) -> [(String, String)] {
        [
            ("class", "offered-shadow"), ("x", SVGWriter.number(x)), ("y", SVGWriter.number(y)),
            ("width", SVGWriter.number(width)), ("height", SVGWriter.number(height)), ("fill", colour),
            ("fill-opacity", "0.22"),
        ]
    }

    /// Roughly how wide `text` is drawn at `size`.
    static func textWidth(_ text: String, size: Double) -> Double {
        Double(text.count) * size * characterWidth
    }

    func offeredTickAttributes(x: Double, y: Double, width: Double) -> [(String, String)] {
        [
            ("class", "offered"), ("x1", SVGWriter.number(x - 3)), ("x2", SVGWriter.number(x + width + 3)),
            ("y1", SVGWriter.number(y)), ("y2", SVGWriter.number(y)), ("stroke", "#222222"), ("stroke-width", "2"),
        ]
    }

    func baselineAttributes(x1: Double, x2: Double, y: Double, colour: String?) -> [(String, String)] {
        [
            ("x1", SVGWriter.number(x1)), ("x2", SVGWriter.number(x2)), ("y1", SVGWriter.number(y)),
            ("y2", SVGWriter.number(y)), ("stroke", colour ?? "#222222"), ("stroke-width", "1.6"),
            ("stroke-dasharray", "7 4"),
        ]
    }

    func truncated(_ text: String, maxCharacters: Int) -> String {
        text.count > maxCharacters ? text.prefix(maxCharacters - 1) + "…" : text
    }

    /// Greedy word wrap; a word longer than a line gets a line of its own.
    func wrap(_ text: String, maxCharacters: Int) -> [String] {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ") {
            if current.isEmpty {
                current = String(word)
            } else if current.count + 1 + word.count <= maxCharacters {
                current += " " + word
            } else {
                lines.append(current)
                current = String(word)
            }
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }
}

/// A rectangle of the chart, for keeping labels apart.
private struct Box {
    var left: Double
    var right: Double
    var top: Double
    var bottom: Double

    func overlaps(_ other: Box) -> Bool {
        left < other.right && other.left < right && top < other.bottom && other.top < bottom
    }
}

/// A 0-based rate axis with round ticks, in kpps, or in Mpps from 2 Mpps up.
private struct RateAxis {
    /// The axis's top, in packets per second: a whole number of ticks, above the peak.
    let top: Double
    /// Distance between ticks, in packets per second.
    let step: Double
    let unit: String
    let divisor: Double

    init(peak: Double) {
        // Room above the tallest bar for its value; the cap keeps absurd input from overflowing the
        // tick arithmetic (no link carries 10¹⁸ packets per second).
        let target = min(max(peak, 1), 1e18) * 1.1
        let rough = target / 5
        let magnitude = pow(10, (log10(rough)).rounded(.down))
        let step = [1, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
        self.step = step
        top = (target / step).rounded(.up) * step
        (unit, divisor) = top >= 2e6 ? ("Mpps", 1e6) : ("kpps", 1e3)
    }

    var ticks: [Double] {
        (0...Int((top / step).rounded())).map { Double($0) * step }
    }

    /// A tick's value in the axis unit, with as many decimals as the step needs.
    func label(_ tick: Double) -> String {
        let stepInUnit = step / divisor
        let decimals = (0...3).first { digits in
            let scaled = stepInUnit * pow(10, Double(digits))
            return abs(scaled - scaled.rounded()) < 1e-6
        } ?? 3
        return String(format: "%.\(decimals)f", tick / divisor)
    }
}

/// Collects SVG markup, escaping every text and attribute value.
private struct SVGWriter {
    private(set) var output = ""
    private var depth = 0

    /// A white outline behind text, to keep it legible where it crosses gridlines or bars.
    static let halo = [
        ("stroke", "#ffffff"), ("stroke-width", "3"), ("stroke-linejoin", "round"), ("paint-order", "stroke"),
    ]

    /// A coordinate with at most one decimal.
    static func number(_ value: Double) -> String {
        let text = String(format: "%.1f", value)
        return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
    }

    /// `text` with XML's special characters escaped, and control characters (which XML 1.0 does not
    /// allow, and which would only be whitespace in SVG text) turned into spaces, so that every
    /// element stays on one line.
    static func escaped(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&apos;"
            case "\u{0}"..<" ": result += " "
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    mutating func raw(_ line: String) {
        output += String(repeating: "  ", count: depth) + line + "\n"
    }

    mutating func open(_ name: String, _ attributes: [(String, String)]) {
        raw("<\(name)\(Self.attributeList(attributes))>")
        depth += 1
    }

    mutating func close(_ name: String) {
        depth -= 1
        raw("</\(name)>")
    }

    mutating func element(_ name: String, _ attributes: [(String, String)], text: String? = nil) {
        if let text {
            raw("<\(name)\(Self.attributeList(attributes))>\(Self.escaped(text))</\(name)>")
        } else {
            raw("<\(name)\(Self.attributeList(attributes))/>")
        }
    }

    mutating func text(_ text: String, x: Double, y: Double, size: Double, attributes: [(String, String)] = []) {
        element("text", [("x", Self.number(x)), ("y", Self.number(y)), ("font-size", Self.number(size))] + attributes,
                text: text)
    }

    /// Appends another writer's markup at this one's depth.
    mutating func append(_ other: SVGWriter) {
        let indent = String(repeating: "  ", count: depth)
        for line in other.output.split(separator: "\n", omittingEmptySubsequences: true) {
            output += indent + line + "\n"
        }
    }

    private static func attributeList(_ attributes: [(String, String)]) -> String {
        attributes.map { " \($0.0)=\"\(escaped($0.1))\"" }.joined()
    }
}
