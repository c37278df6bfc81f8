// CSluiceXDP: libxdp (Debian 12: 1.3.1) and libbpf (1.1.2), and the uapi they speak.
#ifndef CSLUICE_XDP_H
#define CSLUICE_XDP_H

#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#endif
