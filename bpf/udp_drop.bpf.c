// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
// `sluice bench`'s counting sink: drops IPv4/IPv6 UDP whose destination port is in `ports` at
// the earliest point the kernel offers (XDP_DROP in the driver, or in generic mode right after
// the skb is made) and counts it per CPU; everything else (ARP, NDP, other ports) passes.
// Attached to the receiving interface it measures the in-kernel ceiling of that path, the
// role `xdp-bench drop` plays elsewhere (xdp-bench needs kernel BTF for its tracepoints);
// attached to the generator's side it counts replies without waking the stack.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Indexed by UDP destination port (host order); non-zero means "drop and count".
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u8);
} ports SEC(".maps");

// Packets dropped, one slot.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int sluice_udp_drop(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    struct udphdr *udp;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl < 5)
            return XDP_PASS;
        udp = (void *)ip + ((__u32)ip->ihl & 0xF) * 4;
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
            return XDP_PASS;
        udp = (void *)(ip6 + 1);
    } else {
        return XDP_PASS;
    }
    if ((void *)(udp + 1) > end)
        return XDP_PASS;
    __u32 port = bpf_ntohs(udp->dest);
    __u8 *wanted = bpf_map_lookup_elem(&ports, &port);
    if (!wanted || !*wanted)
        return XDP_PASS;
    __u32 slot = 0;
    __u64 *packets = bpf_map_lookup_elem(&counts, &slot);
    if (packets)
        *packets += 1;
    return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
