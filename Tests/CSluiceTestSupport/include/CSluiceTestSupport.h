#ifndef CSLUICE_TEST_SUPPORT_H
#define CSLUICE_TEST_SUPPORT_H

/// Makes `io_uring_setup` fail with EPERM for the calling thread and every process it spawns
/// from now on (a seccomp filter, as a sandbox would install). Irrevocable: call it on a thread
/// made for the purpose. Returns 0, or -1 with errno set.
int sluice_test_deny_io_uring_setup(void);

#endif
