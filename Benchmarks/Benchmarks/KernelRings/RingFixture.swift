// Fixtures for the ring benchmarks of PacketPath (its Rings.swift): the AF_XDP descriptor rings
// an `XDPPort` drives and the io_uring queues a `URing` drives.
//
// They live in a module of their own because they need the C modules of liburing and libxdp
// (CSluiceURing, CSluiceXDP), imported only internally here, so the benchmark module sees no C
// types of theirs; its API has none.

/// A ring the benchmarks drive one batch at a time.
public protocol RingFixture: AnyObject {
    /// Moves `count` packets (at most 64) through the ring: one batch of the port's hot path.
    func runBatch(_ count: Int) throws

    /// Checks, outside the measurement, that exactly `packets` packets went through whole.
    func verify(packets: Int)
}

/// A ring call that returned fewer entries than the batch asked for.
struct ShortRingError: Error, CustomStringConvertible {
    let operation: StaticString
    var description: String { "\(operation) came back short" }
}
