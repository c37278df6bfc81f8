// Functions that need _GNU_SOURCE, which the shared header must not define.
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include "CSluiceSystem.h"

_Static_assert(sizeof(struct sluice_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(offsetof(struct sluice_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr layout");
_Static_assert(sizeof(struct sluice_in_pktinfo) == sizeof(struct in_pktinfo), "in_pktinfo layout");
_Static_assert(offsetof(struct sluice_in_pktinfo, ipi_spec_dst) == offsetof(struct in_pktinfo, ipi_spec_dst), "in_pktinfo layout");
_Static_assert(offsetof(struct sluice_in_pktinfo, ipi_addr) == offsetof(struct in_pktinfo, ipi_addr), "in_pktinfo layout");
_Static_assert(sizeof(struct sluice_in6_pktinfo) == sizeof(struct in6_pktinfo), "in6_pktinfo layout");
_Static_assert(offsetof(struct sluice_in6_pktinfo, ipi6_ifindex) == offsetof(struct in6_pktinfo, ipi6_ifindex), "in6_pktinfo layout");
_Static_assert(sizeof(struct sluice_sockaddr_ll) == sizeof(struct sockaddr_ll), "sockaddr_ll layout");
_Static_assert(offsetof(struct sluice_sockaddr_ll, sll_addr) == offsetof(struct sockaddr_ll, sll_addr), "sockaddr_ll layout");
_Static_assert(sluice_MSG_WAITFORONE == MSG_WAITFORONE, "MSG_WAITFORONE");

int sluice_recvmmsg(int fd, struct sluice_mmsghdr *messages, unsigned int count, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)messages, count, flags, NULL);
}

int sluice_sendmmsg(int fd, struct sluice_mmsghdr *messages, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)messages, count, flags);
}

int sluice_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int sluice_current_cpu(void) { return sched_getcpu(); }

void sluice_set_thread_name(const char *name) { pthread_setname_np(pthread_self(), name); }

int sluice_thread_id(void) { return gettid(); }

void sluice_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

int sluice_enter_network_namespace(int fd) { return setns(fd, CLONE_NEWNET); }

int sluice_ioctl_pointer(int fd, unsigned long request, void *argument) {
    return ioctl(fd, request, argument);
}

int sluice_ioctl_value(int fd, unsigned long request, unsigned long value) {
    return ioctl(fd, request, value);
}
