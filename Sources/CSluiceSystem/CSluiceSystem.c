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
#include <dirent.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
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

int sluice_ids_are(uid_t uid, gid_t gid) {
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0) return 0;
    return ruid == uid && euid == uid && suid == uid && rgid == gid && egid == gid && sgid == gid;
}

static uint64_t capability_permitted, capability_effective;
static volatile sig_atomic_t capability_keep = -1;
static sem_t capability_answers;
static volatile sig_atomic_t capability_failures;

static int set_thread_capabilities(uint64_t permitted, uint64_t effective) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = {
        { (uint32_t)effective, (uint32_t)permitted, 0 },
        { (uint32_t)(effective >> 32), (uint32_t)(permitted >> 32), 0 },
    };
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    return syscall(SYS_capset, &header, data) == 0 ? 0 : -errno;
}

// Only async-signal-safe calls: capset, prctl, sem_post.
static void capability_handler(int signal) {
    (void)signal;
    int saved = errno;
    if (capability_keep >= 0) {
        if (prctl(PR_SET_KEEPCAPS, capability_keep, 0, 0, 0) != 0) capability_failures++;
    } else if (set_thread_capabilities(capability_permitted, capability_effective) != 0) {
        capability_failures++;
    }
    sem_post(&capability_answers);
    errno = saved;
}

// Runs the handler's action in every other thread, then returns 0 or a negative errno.
static int run_in_other_threads(void) {
    int signal = SIGRTMAX - 1;
    capability_failures = 0;
    sem_init(&capability_answers, 0, 0);
    // The handler stays installed: a thread that answers late must not die of the signal.
    struct sigaction action = { 0 };
    action.sa_handler = capability_handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(signal, &action, NULL) != 0) return -errno;
    pid_t self = gettid();
    int asked = 0;
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks) return -errno;
    struct dirent *entry;
    while ((entry = readdir(tasks)) != NULL) {
        pid_t thread = (pid_t)atoi(entry->d_name);
        if (thread <= 0 || thread == self) continue;
        if (syscall(SYS_tgkill, getpid(), thread, signal) == 0) asked++;
    }
    closedir(tasks);
    for (int i = 0; i < asked; i++) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 2;
        while (sem_timedwait(&capability_answers, &deadline) != 0) {
            if (errno != EINTR) return -ETIMEDOUT;
        }
    }
    return capability_failures ? -EPERM : 0;
}

int sluice_keep_capabilities(int keep) {
    capability_keep = keep ? 1 : 0;
    int result = run_in_other_threads();
    if (prctl(PR_SET_KEEPCAPS, keep, 0, 0, 0) != 0) result = -errno;
    return result;
}

int sluice_set_process_capabilities(uint64_t permitted, uint64_t effective) {
    capability_permitted = permitted;
    capability_effective = effective;
    capability_keep = -1;
    int result = run_in_other_threads();
    int own = set_thread_capabilities(permitted, effective);
    return own != 0 ? own : result;
}

void sluice_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

int sluice_receive_queue_count(const char *name) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct ethtool_channels channels = { .cmd = ETHTOOL_GCHANNELS };
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_data = (void *)&channels;
    int result = ioctl(fd, SIOCETHTOOL, &request);
    int code = errno;
    close(fd);
    if (result < 0)
        return -code;
    return (int)(channels.rx_count + channels.combined_count);
}

int sluice_flush_stdout(void) {
    if (fflush(stdout) != 0)
        return -1;
    if (ferror(stdout)) {
        errno = 0;   /* an earlier write failed; its errno is gone by now */
        return -1;
    }
    return 0;
}

int sluice_enter_network_namespace(int fd) { return setns(fd, CLONE_NEWNET); }

int sluice_ioctl_pointer(int fd, unsigned long request, void *argument) {
    return ioctl(fd, request, argument);
}

int sluice_ioctl_value(int fd, unsigned long request, unsigned long value) {
    return ioctl(fd, request, value);
}
