// CSluiceXDP: libxdp (Debian 12: 1.3.1) and libbpf (1.1.2), and the uapi they speak.
#ifndef CSLUICE_XDP_H
#define CSLUICE_XDP_H

#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

// The key of the XDP program's `listeners` map; keep in step with bpf/xsk_redirect.bpf.c.
struct sluice_listener_key {
    __u16 port;
    __u8 family;
    __u8 pad;
    __u8 addr[16];
};

// The value of the XDP program's `port_listeners` map (indexed by port); keep in step with
// bpf/xsk_redirect.bpf.c.
#define SLUICE_PORT_V4 1
#define SLUICE_PORT_V6 2
#define SLUICE_PORT_LOOKUP 4
struct sluice_port_listeners {
    __u8 flags;
    __u8 pad[3];
    __u8 v4[4];
    __u8 v6[16];
    __u32 v4_owner;
    __u32 v6_owner;
};

// The value of the XDP program's `link` map; keep in step with bpf/xsk_redirect.bpf.c.
struct sluice_link_filter {
    __u8 mac[6];
    __u8 checks_mac;
    __u8 checks_addresses;
};

#endif
