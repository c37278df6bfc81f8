internal import CSluiceURing
internal import SluiceURing

/// A `URing` (plain mode, 64 submission entries) running batches of NOPs: per request,
/// `nextSubmission()`, `io_uring_prep_nop` and its `user_data`; per batch, one `submit()` (one
/// `io_uring_enter`, in which the kernel completes every NOP) and `drainCompletions` reaping the
/// batch's completions, all of which must be there by then.
///
/// A NOP is the cheapest request there is, so this is what the ring itself costs per request,
/// its one syscall per batch included, with no socket work in it.
public final class URingNOPFixture: RingFixture {
    let ring: URing
    var batches = 0
    var completed = 0

    /// Sets up the ring; throws where io_uring is refused (disabled, or a seccomp sandbox).
    public init() throws {
        ring = try URing(entries: 64)
    }

    public func runBatch(_ count: Int) throws {
        for i in 0..<count {
            let sqe = try ring.nextSubmission()
            io_uring_prep_nop(sqe)
            sqe.pointee.user_data = UInt64(i)
        }
        try ring.submit()
        let reaped = ring.drainCompletions { completion in
            if completion.result == 0 { completed &+= 1 }
        }
        guard reaped == count else { throw ShortRingError(operation: "io_uring_peek_batch_cqe") }
        batches &+= 1
    }

    /// Also checks that there was exactly one `io_uring_enter` per batch.
    public func verify(packets: Int) {
        precondition(completed == packets, "io_uring completed \(completed) of \(packets) NOPs")
        precondition(ring.enterCalls == UInt64(batches), "io_uring made \(ring.enterCalls) syscalls for \(batches) batches")
    }
}
