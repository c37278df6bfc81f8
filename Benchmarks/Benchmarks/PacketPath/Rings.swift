// Benchmarks of the rings Sluice shares with the kernel, over the fixtures of KernelRings:
//
// - xsk-ring-reserve-submit: libxdp's producer functions, as `XDPPort.transmit` calls them, on
//   an AF_XDP TX ring laid out in ordinary memory (no socket: the kernel's side is played by
//   one store per batch);
// - xsk-ring-peek-release: libxdp's consumer functions, as `XDPPort.receive` calls them, on such
//   an RX ring;
// - uring-sqe-prep-submit: `URing.nextSubmission()` and `io_uring_prep_nop` per request, and one
//   `URing.submit()` (one `io_uring_enter`) and `drainCompletions` per batch, on a real ring.
//
// Each moves `packetsPerIteration` packets per iteration in batches of 64 (see `forEachBatch`), so
// per-batch costs, the io_uring syscall among them, are spread over the packets of their batch.

import Benchmark
import KernelRings

/// Registers the ring benchmarks; called from `benchmarks`.
func registerRingBenchmarks() {
    registerRingBenchmark("xsk-ring-reserve-submit") { XSKProducerFixture() }
    registerRingBenchmark("xsk-ring-peek-release") { XSKConsumerFixture() }
    registerRingBenchmark("uring-sqe-prep-submit") { try URingNOPFixture() }
}

/// One benchmark over the fixture `make` returns. The fixture is made in setup, so that where
/// io_uring is refused that benchmark fails with the reason; teardown checks that every packet
/// of every iteration went through.
func registerRingBenchmark<Fixture: RingFixture>(_ name: String, _ make: @escaping () throws -> Fixture) {
    var fixture: Fixture?
    var packets = 0
    Benchmark(
        name, configuration: configuration(),
        closure: { benchmark in
            let fixture = fixture!
            for _ in 0..<benchmark.scaledIterations.count / packetsPerIteration {
                do {
                    try forEachBatch { (count: Int) throws in try fixture.runBatch(count) }
                } catch {
                    benchmark.error("\(name): \(error)")
                    return
                }
                packets += packetsPerIteration
            }
        },
        setup: {
            fixture = try make()
        },
        teardown: {
            fixture!.verify(packets: packets)
        })
}
