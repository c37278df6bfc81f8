// CSluiceSystem: the Linux uapi as Swift needs it, and nothing else (no library beyond libc).
// It re-exports, as functions and constants, what Swift cannot import from macros (ioctl
// numbers, CMSG_* helpers) or what Debian 12's 6.1 uapi headers lack.
#ifndef CSLUICE_SYSTEM_H
#define CSLUICE_SYSTEM_H

#include <sys/select.h>
#include <sys/types.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <netinet/tcp.h>
#include <net/if.h>
#include <sched.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <linux/if_tun.h>
#include <linux/time_types.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef UDP_MAX_SEGMENTS
#define UDP_MAX_SEGMENTS 64
#endif

static const int sluice_UDP_SEGMENT = UDP_SEGMENT;
static const int sluice_UDP_GRO = UDP_GRO;
/// The kernel's cap on segments in one UDP GSO send (64 on 6.1 headers; 128 on 6.9+ kernels).
static const int sluice_UDP_MAX_SEGMENTS = UDP_MAX_SEGMENTS;
static const unsigned long sluice_TUNSETIFF = TUNSETIFF;
static const unsigned long sluice_TUNSETOFFLOAD = TUNSETOFFLOAD;
static const unsigned long sluice_TUNSETVNETHDRSZ = TUNSETVNETHDRSZ;
static const unsigned long sluice_TUNGETVNETHDRSZ = TUNGETVNETHDRSZ;
static const unsigned long sluice_TUNSETPERSIST = TUNSETPERSIST;
static const unsigned long sluice_TUNSETOWNER = TUNSETOWNER;
static const unsigned long sluice_TUNSETGROUP = TUNSETGROUP;
static const unsigned long sluice_TUNGETFEATURES = TUNGETFEATURES;
static const unsigned long sluice_TUNGETIFF = TUNGETIFF;
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif
static const unsigned int sluice_TUN_F_USO4 = TUN_F_USO4;
static const unsigned int sluice_TUN_F_USO6 = TUN_F_USO6;

/// ioctl with a pointer argument (ioctl is variadic: Swift cannot call it).
int sluice_ioctl_pointer(int fd, unsigned long request, void *argument);
/// ioctl with an integer argument.
int sluice_ioctl_value(int fd, unsigned long request, unsigned long value);

// CMSG_* are macros; Swift sees none of them.
static inline struct cmsghdr *sluice_cmsg_firsthdr(struct msghdr *msg) { return CMSG_FIRSTHDR(msg); }
static inline struct cmsghdr *sluice_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *c) { return CMSG_NXTHDR(msg, c); }
static inline unsigned char *sluice_cmsg_data(struct cmsghdr *c) { return CMSG_DATA(c); }
static inline size_t sluice_cmsg_space(size_t len) { return CMSG_SPACE(len); }
static inline size_t sluice_cmsg_len(size_t len) { return CMSG_LEN(len); }

/// Starts loading the cache line at `address` for a write soon (Swift has no prefetch).
static inline void sluice_prefetch_for_write(const void *address) { __builtin_prefetch(address, 1, 3); }

// struct in_pktinfo and in6_pktinfo, which glibc shows only under _GNU_SOURCE (and defining
// that here would clash with Swift's own Glibc module); CSluiceSystem.c checks the layouts.
struct sluice_in_pktinfo {
    int ipi_ifindex;
    struct in_addr ipi_spec_dst;
    struct in_addr ipi_addr;
};
struct sluice_in6_pktinfo {
    struct in6_addr ipi6_addr;
    unsigned int ipi6_ifindex;
};

/// `struct sockaddr_ll` (an AF_PACKET address, as getifaddrs reports a link), whose glibc and
/// uapi definitions clash in one module; CSluiceSystem.c checks the layout.
struct sluice_sockaddr_ll {
    unsigned short sll_family;
    unsigned short sll_protocol;
    int sll_ifindex;
    unsigned short sll_hatype;
    unsigned char sll_pkttype;
    unsigned char sll_halen;
    unsigned char sll_addr[8];
};

/// `struct mmsghdr`, which glibc shows only under _GNU_SOURCE; same layout.
struct sluice_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
static const int sluice_MSG_WAITFORONE = 0x10000;

/// `recvmmsg(2)` without a timeout (use SO_RCVTIMEO); returns -1 and sets errno on failure.
int sluice_recvmmsg(int fd, struct sluice_mmsghdr *messages, unsigned int count, int flags);

/// `sendmmsg(2)`; returns -1 and sets errno on failure.
int sluice_sendmmsg(int fd, struct sluice_mmsghdr *messages, unsigned int count, int flags);

/// Pins the calling thread to one CPU; returns 0 or an errno value.
int sluice_pin_current_thread(int cpu);

/// Makes stdout line-buffered, so progress lines show at once through a pipe.
void sluice_line_buffer_stdout(void);

/// The receive queues `name` has in use (ethtool's channels, RX and combined, as
/// `ethtool -l` shows them); -errno when the driver does not say (ethtool_channels unsupported).
int sluice_receive_queue_count(const char *name);

/// Flushes stdout; returns 0, or -1 when this (errno set) or an earlier write to it (errno 0) failed.
int sluice_flush_stdout(void);

/// The calling thread's kernel ID (gettid), as /proc/self/task names it.
int sluice_thread_id(void);

/// 1 when the real, effective and saved user and group IDs are all `uid` and `gid`.
int sluice_ids_are(uid_t uid, gid_t gid);

/// Sets the capability sets of every thread of the process (capabilities are per thread): the
/// others through a real-time signal whose handler calls capset, then the calling one. Inheritable
/// and ambient sets are cleared. Returns 0, or a negative errno (-ETIMEDOUT when a thread did
/// not answer within two seconds, for instance because it blocks the signal).
int sluice_set_process_capabilities(uint64_t permitted, uint64_t effective);

/// prctl(PR_SET_KEEPCAPS, keep) in every thread (the flag is per thread, as signals above):
/// whether permitted capabilities survive a change away from uid 0. Returns 0 or a negative errno.
int sluice_keep_capabilities(int keep);

/// Names the calling thread (15 characters show in ps/top).
void sluice_set_thread_name(const char *name);

/// Moves the calling thread into the network namespace open at `fd` (setns with CLONE_NEWNET,
/// which glibc shows only under _GNU_SOURCE). Returns 0, or -1 with errno set.
int sluice_enter_network_namespace(int fd);

/// The CPU the calling thread runs on now, or -1.
int sluice_current_cpu(void);

#endif
