// Fixtures for the ring benchmarks of PacketPath (its Rings.swift): the AF_XDP descriptor rings
// an `XDPPort` drives and the io_uring queues a `URing` drives.
//
// They live in a module of their own because they need CSluice (liburing and libxdp), and
// package-benchmark's CSystem module declares `struct io_uring_sqe` from <linux/io_uring.h>
// while CSluice gets it from liburing's own copy: Clang refuses the two definitions in one
// module. This module imports CSluice only internally, and its API has no C types.

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
