@testable import SluiceBench
import Testing

/// The arithmetic of `sluice bench`, without a network.
@Suite struct BenchArithmeticTests {
    @Test func dropsAreDisjointAndAddUpToWhatWasNotHandled() {
        let drops = BenchRunner.attributeDrops(unhandled: 1000, known: [("ring full", 300), ("no frame", 200)],
                                               remainder: "lost on the way")
        #expect(drops == ["ring full": 300, "no frame": 200, "lost on the way": 500])
    }

    @Test func knownCausesAreCappedByWhatIsLeftInOrder() {
        // Kernel counters can run ahead of the window (they also count the settle time).
        let drops = BenchRunner.attributeDrops(unhandled: 250, known: [("ring full", 200), ("no frame", 200)],
                                               remainder: "lost")
        #expect(drops == ["ring full": 200, "no frame": 50])
        #expect(BenchRunner.attributeDrops(unhandled: 0, known: [("ring full", 7)], remainder: "lost").isEmpty)
    }

    @Test func countersThatWentBackwardsGiveZero() {
        #expect(BenchRunner.difference(10, 4) == 6)
        #expect(BenchRunner.difference(4, 10) == 0)
    }

    @Test func cellRatesAndCostsComeFromTheRightClocks() {
        let generated = BenchRunner.Transmission(sent: 2_000_000, seconds: 2, cpuNanoseconds: 1_960_000_000, calls: nil)
        let cell = BenchRunner.makeCell(
            backend: "socket", scenario: .rxdrop, size: 64, mode: "kernel socket", generated: generated,
            handled: 1_990_000, workerCPU: 1_000_000_000, workerSeconds: 2.5, drops: [:], syscallsPerPacket: 0.1,
            latency: nil)
        #expect(cell.offeredPPS == 1_000_000)
        #expect(cell.pps == 995_000)
        #expect(abs(cell.nsPerPacket - 1_000_000_000.0 / 1_990_000) < 1e-9)
        #expect(cell.cpuPercent == 40)          // worker CPU over the worker's own window
        #expect(cell.generatorCPUPercent == 98)
        #expect(cell.generatorBound)            // flat out, and the backend took ≥ 97 % of it
        let slow = BenchRunner.makeCell(
            backend: "socket", scenario: .rxdrop, size: 64, mode: "kernel socket", generated: generated,
            handled: 1_000_000, workerCPU: 2_500_000_000, workerSeconds: 2.5, drops: [:], syscallsPerPacket: nil,
            latency: nil)
        #expect(!slow.generatorBound)
        let paced = BenchRunner.Transmission(sent: 100_000, seconds: 2, cpuNanoseconds: 100_000_000, calls: nil)
        let atRate = BenchRunner.makeCell(
            backend: "socket", scenario: .rxdrop, size: 64, mode: "kernel socket", generated: paced, handled: 100_000,
            workerCPU: 1, workerSeconds: 2, drops: [:], syscallsPerPacket: nil, latency: nil, rateLimited: true)
        #expect(atRate.generatorBound)          // a fixed rate the backend kept up with
    }

    @Test func sendersAddUp() {
        let a = BenchRunner.Transmission(sent: 100, seconds: 1, cpuNanoseconds: 900_000_000, calls: 10)
        let b = BenchRunner.Transmission(sent: 50, seconds: 1.1, cpuNanoseconds: 800_000_000, calls: 5)
        let sum = a + b
        #expect(sum.sent == 150 && sum.seconds == 1.1 && sum.calls == 15)
        #expect(abs(sum.cpuPercent - 1_700_000_000 / 1.1e9 * 100) < 1e-9)
    }

    @Test func ratiosSkipCellsAndBaselinesThatWereNotMeasured() {
        func cell(_ backend: String, _ pps: Double, note: String? = nil) -> BenchCell {
            BenchCell(backend: backend, scenario: .rxdrop, size: 64, mode: "m", offeredPPS: 1000, pps: pps,
                      nsPerPacket: 1, cpuPercent: 1, generatorCPUPercent: 1, generatorBound: false, note: note)
        }
        let baselines = [
            BenchBaseline(name: "xdp-drop-native", detail: "", size: 64, offeredPPS: 1000, pps: 800, generatorCPUPercent: 99),
            BenchBaseline(name: "xdp-drop-generic", detail: "not measured: x", size: 64, offeredPPS: 0, pps: 0,
                          generatorCPUPercent: 0),
        ]
        let cells = BenchRunner.withRatios(
            [cell("socket", 400), cell("uring", 200), cell("xdp-generic", 600), cell("xdp-native", 0, note: "not measured: y")],
            baselines: baselines)
        #expect(cells[0].ratioToSocket == nil && cells[0].ratioToCeiling == 0.5)
        #expect(cells[1].ratioToSocket == 0.5 && cells[1].ratioToCeiling == 0.25)
        #expect(cells[2].ratioToSocket == 1.5 && cells[2].ratioToCeiling == nil)   // its ceiling was not measured
        #expect(cells[3].ratioToSocket == nil && cells[3].ratioToCeiling == nil)
    }
}
