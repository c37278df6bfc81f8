// Functions that need _GNU_SOURCE, which the shared header must not define.
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdio.h>
#include "CSluice.h"

_Static_assert(sizeof(struct sluice_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(offsetof(struct sluice_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr layout");
_Static_assert(sluice_MSG_WAITFORONE == MSG_WAITFORONE, "MSG_WAITFORONE");

int sluice_recvmmsg(int fd, struct sluice_mmsghdr *messages, unsigned int count, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)messages, count, flags, NULL);
}

int sluice_sendmmsg(int fd, struct sluice_mmsghdr *messages, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)messages, count, flags);
}

int sluice_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int sluice_current_cpu(void) { return sched_getcpu(); }

void sluice_set_thread_name(const char *name) { pthread_setname_np(pthread_self(), name); }

void sluice_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

int sluice_enter_network_namespace(int fd) { return setns(fd, CLONE_NEWNET); }

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
