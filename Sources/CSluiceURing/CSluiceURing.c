#include "CSluiceURing.h"

unsigned sluice_uring_flush_sq(struct io_uring *ring) {
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        // The SQPOLL thread reads the tail concurrently: publish the SQEs before it.
        io_uring_smp_store_release(sq->ktail, tail);
    }
    return tail - io_uring_smp_load_acquire(sq->khead);
}

int sluice_uring_sq_needs_wakeup(struct io_uring *ring) {
    io_uring_smp_mb();
    return (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_NEED_WAKEUP) != 0;
}

int sluice_uring_cq_needs_flush(struct io_uring *ring) {
    return (IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) != 0;
}
