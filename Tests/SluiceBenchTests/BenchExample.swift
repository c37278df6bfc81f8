import SluiceBench

/// A report shaped like a real two-CPU veth run: four backends × three scenarios × two sizes, an
/// XDP_DROP ceiling per size, drops, one generator-bound cell and one failed echo cell with a note
/// and no latency.
enum BenchExample {
    static let backends = ["socket", "uring", "xdp-native", "xdp-generic"]
    static let sizes = [64, 1518]
    static let ceilings = [64: 1_182_400.0, 1518: 761_300.0]

    static let environment = BenchEnvironment(
        kernel: "6.1.0-28-amd64", cpus: 2, link: "veth pair between two network namespaces",
        generator: "AF_XDP TX (generic, copy) on sc1a2b, cpu 0", durationSeconds: 5, queues: 1,
        startedAt: "2025-03-14T09:26:53Z")

    /// Handled packets per second by scenario, backend and size.
    static let rates: [BenchScenario: [String: [Int: Double]]] = [
        .rxdrop: [
            "socket": [64: 412_345.6, 1518: 351_002.25], "uring": [64: 523_876.1, 1518: 418_220.9],
            "xdp-native": [64: 1_051_230.4, 1518: 758_900.0], "xdp-generic": [64: 688_410.7, 1518: 519_640.3],
        ],
        .echo: [
            "socket": [64: 281_400.5, 1518: 240_118.0], "uring": [64: 362_905.2, 1518: 301_447.6],
            "xdp-native": [64: 744_812.9, 1518: 530_260.1], "xdp-generic": [64: 468_127.4, 1518: 0],
        ],
        .txonly: [
            "socket": [64: 598_214.8, 1518: 402_337.3], "uring": [64: 701_553.0, 1518: 455_904.4],
            "xdp-native": [64: 1_402_220.6, 1518: 811_400.2], "xdp-generic": [64: 902_117.9, 1518: 620_003.5],
        ],
    ]

    static func report() -> BenchReport {
        var report = BenchReport(environment: environment)
        for size in sizes {
            report.baselines.append(BenchBaseline(
                name: "xdp-drop-native", detail: "XDP_DROP (native mode) on sc1a2a: the in-kernel ceiling",
                size: size, offeredPPS: size == 64 ? 1_250_000 : 762_000, pps: ceilings[size] ?? 0,
                generatorCPUPercent: size == 64 ? 99.2 : 100.0))
        }
        for scenario in BenchScenario.standard {
            for size in sizes {
                for backend in backends {
                    report.cells.append(cell(backend: backend, scenario: scenario, size: size))
                }
            }
        }
        return report
    }

    static func cell(backend: String, scenario: BenchScenario, size: Int) -> BenchCell {
        let pps = rates[scenario]?[backend]?[size] ?? 0
        let socketPPS = rates[scenario]?["socket"]?[size] ?? 1
        let offered = scenario == .txonly ? pps : (size == 64 ? 1_250_000.0 : 762_000.0)
        let isXDP = backend.hasPrefix("xdp")
        if backend == "xdp-generic", scenario == .echo, size == 1518 {
            return BenchCell(
                backend: backend, scenario: scenario, size: size, mode: "-", offeredPPS: 0, pps: 0, nsPerPacket: 0,
                cpuPercent: 0, generatorCPUPercent: 0, generatorBound: false,
                note: "not measured: xsk bind refused (EOPNOTSUPP): generic mode with a 1518 B frame and echo")
        }
        let generatorBound = backend == "xdp-native" && scenario == .rxdrop && size == 1518
        var drops: [String: UInt64] = [:]
        if scenario != .txonly, offered > pps {
            let lost = UInt64((offered - pps) * 5)
            if isXDP {
                drops = ["xsk rx ring full": lost - lost / 50, "xsk fill ring empty": lost / 50]
            } else {
                drops = ["socket receive buffer": lost - 12, "not handled": 12]
            }
        }
        return BenchCell(
            backend: backend, scenario: scenario, size: size,
            mode: isXDP ? (backend == "xdp-native" ? "zero-copy" : "copy") : (backend == "uring" ? "io_uring" : "kernel socket"),
            offeredPPS: offered, pps: pps, nsPerPacket: 1e9 / max(pps, 1) * 0.97,
            cpuPercent: isXDP ? 99.6 : 100.2, generatorCPUPercent: generatorBound ? 100.0 : 97.4,
            generatorBound: generatorBound, drops: drops,
            ratioToCeiling: scenario == .txonly ? nil : pps / (ceilings[size] ?? 1),
            ratioToSocket: pps / socketPPS,
            syscallsPerPacket: isXDP ? 0.0163 : (backend == "uring" ? 0.031 : 0.0157),
            latency: scenario == .echo
                ? BenchLatency(ratePPS: 10_000, samples: 49_998, lost: backend == "socket" ? 2 : 0,
                               p50Microseconds: isXDP ? 21.4 : 38.25, p99Microseconds: isXDP ? 48.9 : 96.1,
                               p999Microseconds: isXDP ? 112.7 : 241.5)
                : nil)
    }
}
