// CSluiceURing: liburing (Debian 12: 2.3) and the few steps it keeps private.
#ifndef CSLUICE_URING_H
#define CSLUICE_URING_H

#include <sys/select.h>   // before liburing.h, or Swift fails on fd_set
// The kernel's io_uring.h first: liburing ships its own copy under the same include guard, and
// swift-system's CSystem module includes the kernel's; two differing definitions of one struct
// in one Swift module do not import.
#include <linux/io_uring.h>
#include <liburing.h>

/// Publishes the SQEs got since the last call to the kernel (liburing 2.3 keeps this step
/// private to io_uring_submit) and returns how many the kernel has not consumed yet.
unsigned sluice_uring_flush_sq(struct io_uring *ring);

/// Whether an SQPOLL ring's kernel thread sleeps and needs IORING_ENTER_SQ_WAKEUP.
int sluice_uring_sq_needs_wakeup(struct io_uring *ring);

/// Whether completions wait in the kernel (CQ overflow or deferred task work) and need an
/// io_uring_enter with IORING_ENTER_GETEVENTS to reach the CQ ring.
int sluice_uring_cq_needs_flush(struct io_uring *ring);

#endif
