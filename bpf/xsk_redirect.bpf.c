// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
// Sluice's XDP program: steers UDP (IPv4 or IPv6, optionally behind one VLAN tag) whose
// destination port is in `ports`, or whose destination is a listener's, into the AF_XDP socket
// bound to the receiving queue (for a listener, only one its own server holds), and passes
// everything else (ARP, NDP, ICMP, TCP, other ports, fragments, IPv4 options and IPv6 extension
// headers, another host's or device's frames) to the kernel so the host keeps working. No
// CO-RE: it touches only packet bytes, so it loads on kernels without BTF.
//
// Built twice (by the package's SluiceBPFPlugin, and by `make bpf` for SLUICE_BPF_DIR): plain
// (SEC "xdp") and with -DSLUICE_FRAGS (SEC "xdp.frags", for multi-buffer frames; headers are
// read from the first buffer only).
// sluice-bpf-variant: xsk_redirect_frags -DSLUICE_FRAGS
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 256

// Verdict counters, one slot each, per CPU. Keep in step with XDPProgram.Verdict in Swift.
enum verdict {
    VERDICT_REDIRECTED = 0,     // handed to the queue's XSK
    VERDICT_PASS_NOT_UDP = 1,   // ARP, NDP, ICMP, TCP, other EtherTypes
    VERDICT_PASS_PORT = 2,      // UDP to a port not in the map
    VERDICT_PASS_NO_SOCKET = 3, // port matched but no XSK (of the listener's owner) on this queue
    VERDICT_PASS_FRAGMENT = 4,  // IP fragments (no UDP header to look at, or not ours to reassemble)
    VERDICT_PASS_MALFORMED = 5, // truncated headers: the kernel decides what to do with them
    VERDICT_PASS_NOT_OURS = 6,  // another host's MAC, an address not the interface's, a group address, a VLAN with its own device
    VERDICT_PASS_OPTIONS = 7,   // IPv4 options or IPv6 extension headers: the kernel processes (and answers) them
    VERDICT_PASS_TOO_LARGE = 8, // longer than an XSK frame holds (a link MTU past it): the kernel socket takes it
    VERDICT_COUNT = 9,
};

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, MAX_QUEUES);
    __type(key, __u32);
    __type(value, __u32);
} xsks_map SEC(".maps");

// Indexed by UDP destination port (host order); non-zero means "steer to the XSK".
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u8);
} ports SEC(".maps");

// A listen address: family (4 or 6), port (host order), and the address (IPv4 in the first four
// bytes), all zero for a wildcard of the family. Keep in step with sluice_listener_key in
// Sources/CSluiceXDP/CSluiceXDP.h.
struct listener_key {
    __u16 port;
    __u8 family;
    __u8 pad;
    __u8 addr[16];
};

// Listen addresses steered to the XSKs, each to its owner's (the process id of the server that
// listens on it); a port in `ports` is steered on every other address to any XSK.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct listener_key);
    __type(value, __u32);
} listeners SEC(".maps");

// Each queue's XSK owner (a process id), so a listener's frames go only to its own server's
// sockets: one arriving on a queue another server's XSK holds is left to the kernel, whose
// socket on the listen address (every sluice server holds one) takes it.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_QUEUES);
    __type(key, __u32);
    __type(value, __u32);
} queue_owners SEC(".maps");

// The listeners of a port at a glance, so the common case (one address per family on a port)
// costs an array lookup, which the JIT inlines, instead of a hash lookup (about 55 ns a packet
// under generic XDP on veth). User space derives it from `listeners` on every change. Keep in
// step with sluice_port_listeners in CSluiceXDP.h.
#define PORT_V4 1       // v4 is a listen address on this port
#define PORT_V6 2       // v6 is a listen address on this port
#define PORT_LOOKUP 4   // more listeners (wildcards, further addresses): look in `listeners`
struct port_listeners {
    __u8 flags;
    __u8 pad[3];
    __u8 v4[4];
    __u8 v6[16];
    __u32 v4_owner;
    __u32 v6_owner;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, struct port_listeners);
} port_listeners SEC(".maps");

// The interface as the kernel sees it, so the program leaves to the kernel what only the kernel
// should see (the kernel drops frames for another MAC as PACKET_OTHERHOST, and hands a VLAN tag
// with a device to that device). Keep in step with sluice_link_filter in CSluiceXDP.h.
struct link_filter {
    __u8 mac[6];
    __u8 checks_mac;        // non-zero: a unicast frame for another MAC is passed
    __u8 checks_addresses;  // non-zero: a wildcard listener takes only addresses in local_addresses
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct link_filter);
} link SEC(".maps");

// The longest frame the XSKs' frames hold, the smallest of the servers sharing the program; a
// longer one is passed (the server's kernel socket takes it). 0: any. A map of its own, so a
// server of an older build, which writes `link` as it knew it, never touches it.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} frame_limit SEC(".maps");

// Indexed by VLAN ID: non-zero when a VLAN device on the interface owns that ID.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u8);
} vlan_devices SEC(".maps");

// The interface's unicast and broadcast addresses, keyed as listeners with port 0.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 256);
    __type(key, struct listener_key);
    __type(value, __u8);
} local_addresses SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, VERDICT_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} verdicts SEC(".maps");

static __always_inline int count(__u32 verdict, int action)
{
    __u64 *slot = bpf_map_lookup_elem(&verdicts, &verdict);
    if (slot)
        *slot += 1;
    return action;
}

// Word loads: the Ethernet header is packed, and byte-wise compares cost a load per byte on
// every frame. Packet and map-value loads need no alignment here.
static __always_inline __u32 load32(const void *p) { return *(const __u32 *)p; }
static __always_inline __u16 load16(const void *p) { return *(const __u16 *)p; }

static __always_inline int same_mac(const __u8 *a, const __u8 *b)
{
    return ((load32(a) ^ load32(b)) | (load16(a + 4) ^ load16(b + 4))) == 0;
}

static __always_inline int same_v6(const __u8 *a, const __u8 *b)
{
    return ((load32(a) ^ load32(b)) | (load32(a + 4) ^ load32(b + 4)) | (load32(a + 8) ^ load32(b + 8)) |
            (load32(a + 12) ^ load32(b + 12))) == 0;
}

// What the headers say: the UDP header, and where the destination address is.
struct headers {
    struct udphdr *udp;
    const __u8 *destination;
    __u8 family;
};

// Finds the UDP header and the destination address: VERDICT_REDIRECTED when it found them (a
// candidate for an XSK), otherwise the verdict for passing the frame.
static __always_inline int find_udp(void *data, void *end, struct headers *found, const struct link_filter *filter)
{
    struct ethhdr *eth = data;
    void *cursor = eth + 1;
    if (cursor > end)
        return VERDICT_PASS_MALFORMED;
    // The group bit: broadcast and multicast frames are for every host on the link.
    if (filter && filter->checks_mac && !(eth->h_dest[0] & 1) && !same_mac(eth->h_dest, filter->mac))
        return VERDICT_PASS_NOT_OURS;
    __u16 proto = load16(&eth->h_proto);
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        struct { __be16 tci; __be16 proto; } *tag = cursor;
        if ((void *)(tag + 1) > end)
            return VERDICT_PASS_MALFORMED;
        __u32 vid = bpf_ntohs(tag->tci) & 0x0FFF;
        __u8 *device = bpf_map_lookup_elem(&vlan_devices, &vid);
        if (device && *device)
            return VERDICT_PASS_NOT_OURS;
        proto = tag->proto;
        cursor = tag + 1;
    }
    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = cursor;
        if ((void *)(ip + 1) > end)
            return VERDICT_PASS_MALFORMED;
        __u8 first = *(__u8 *)ip;   // version and header length
        if (first != 0x45) {
            if ((first >> 4) != 4 || (first & 0x0F) < 5)
                return VERDICT_PASS_MALFORMED;
            if (ip->protocol != IPPROTO_UDP)
                return VERDICT_PASS_NOT_UDP;
            if (ip->frag_off & bpf_htons(0x3FFF))
                return VERDICT_PASS_FRAGMENT;
            // Options are the kernel's to process, and to answer with a parameter problem when
            // it finds them wrong; what passes reaches the server's kernel socket.
            return VERDICT_PASS_OPTIONS;
        }
        if (ip->protocol != IPPROTO_UDP)
            return VERDICT_PASS_NOT_UDP;
        if (ip->frag_off & bpf_htons(0x3FFF))   // MF set or a non-zero offset
            return VERDICT_PASS_FRAGMENT;
        found->family = 4;
        found->destination = (const __u8 *)&ip->daddr;
        cursor = ip + 1;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = cursor;
        if ((void *)(ip6 + 1) > end)
            return VERDICT_PASS_MALFORMED;
        __u8 next = ip6->nexthdr;
        // Extension headers, as IPv4 options: the kernel processes them (RFC 8200 section 4)
        // and sends the parameter problems they earn.
        if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS)
            return VERDICT_PASS_OPTIONS;
        if (next == IPPROTO_FRAGMENT)
            return VERDICT_PASS_FRAGMENT;
        if (next != IPPROTO_UDP)
            return VERDICT_PASS_NOT_UDP;
        found->family = 6;
        found->destination = (const __u8 *)&ip6->daddr;
        cursor = ip6 + 1;
    } else {
        return VERDICT_PASS_NOT_UDP;
    }
    struct udphdr *udp = cursor;
    if ((void *)(udp + 1) > end)
        return VERDICT_PASS_MALFORMED;
    found->udp = udp;
    return VERDICT_REDIRECTED;
}

// The owner of a listener on the frame's address and port (a wildcard's only for the host's own
// addresses), or 0 with *why set to the verdict for passing the frame.
static __always_inline __u32 listener_owner(const struct headers *found, __u32 port, const struct link_filter *filter,
                                            __u32 *why)
{
    struct listener_key key = {};
    key.port = port;
    key.family = found->family;
    if (found->family == 4)
        __builtin_memcpy(key.addr, found->destination, 4);
    else
        __builtin_memcpy(key.addr, found->destination, 16);
    __u32 *listener = bpf_map_lookup_elem(&listeners, &key);
    if (!listener || !*listener) {
        struct listener_key wildcard = key;
        __builtin_memset(wildcard.addr, 0, sizeof(wildcard.addr));
        listener = bpf_map_lookup_elem(&listeners, &wildcard);
        if (listener && *listener && filter && filter->checks_addresses) {
            // A socket bound to a wildcard takes only the host's addresses.
            key.port = 0;
            __u8 *local = bpf_map_lookup_elem(&local_addresses, &key);
            if (!local || !*local) {
                *why = VERDICT_PASS_NOT_OURS;
                return 0;
            }
        }
    }
    if (!listener || !*listener) {
        *why = VERDICT_PASS_PORT;
        return 0;
    }
    return *listener;
}

static __always_inline int steer(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    const struct link_filter *filter = bpf_map_lookup_elem(&link, &zero);
    struct headers found;
    __u32 why = find_udp(data, end, &found, filter);
    if (why != VERDICT_REDIRECTED)
        return count(why, XDP_PASS);
    // A group destination is the kernel's: it knows which groups the interface joined, and its
    // socket answers them from an own address (a port taken by `ports` alone would steer it to
    // a stage that drops it as not local).
    if (found.family == 6 ? found.destination[0] == 0xFF : (found.destination[0] & 0xF0) == 0xE0)
        return count(VERDICT_PASS_NOT_OURS, XDP_PASS);
    __u32 port = bpf_ntohs(found.udp->dest);
    __u32 owner = 0;   // 0: any XSK on the queue (a port in `ports`)
    // The common case first: the one listen address of the frame's family on its port.
    const struct port_listeners *at_port = bpf_map_lookup_elem(&port_listeners, &port);
    __u8 flags = at_port ? at_port->flags : 0;
    if (at_port && found.family == 4 && (flags & PORT_V4) && load32(at_port->v4) == load32(found.destination)) {
        owner = at_port->v4_owner;
    } else if (at_port && found.family == 6 && (flags & PORT_V6) && same_v6(at_port->v6, found.destination)) {
        owner = at_port->v6_owner;
    } else {
        // A listener's owner first: on a port in `ports` too, a server's own address goes to its
        // own socket; the port's other addresses go to any socket on the queue.
        if (flags & PORT_LOOKUP)
            owner = listener_owner(&found, port, filter, &why);
        if (!owner) {
            __u8 *wanted = bpf_map_lookup_elem(&ports, &port);
            if (!wanted || !*wanted)
                return count((flags & PORT_LOOKUP) ? why : VERDICT_PASS_PORT, XDP_PASS);
        }
    }
    // The whole frame: every buffer of a multi-buffer one in the frags build; in the plain build
    // the one buffer, measured without a helper call.
    const __u32 *limit = bpf_map_lookup_elem(&frame_limit, &zero);
#ifdef SLUICE_FRAGS
    __u64 length = bpf_xdp_get_buff_len(ctx);
#else
    __u64 length = end - data;
#endif
    if (limit && *limit && length > *limit)
        return count(VERDICT_PASS_TOO_LARGE, XDP_PASS);
    __u32 queue = ctx->rx_queue_index;
    if (owner) {
        __u32 *serving = bpf_map_lookup_elem(&queue_owners, &queue);
        if (!serving || *serving != owner)
            return count(VERDICT_PASS_NO_SOCKET, XDP_PASS);
    }
    int action = bpf_redirect_map(&xsks_map, queue, XDP_PASS);
    return count(action == XDP_REDIRECT ? VERDICT_REDIRECTED : VERDICT_PASS_NO_SOCKET, action);
}

#ifdef SLUICE_FRAGS
SEC("xdp.frags")
int sluice_xsk_redirect_frags(struct xdp_md *ctx) { return steer(ctx); }
#else
SEC("xdp")
int sluice_xsk_redirect(struct xdp_md *ctx) { return steer(ctx); }
#endif

char _license[] SEC("license") = "Dual BSD/GPL";
