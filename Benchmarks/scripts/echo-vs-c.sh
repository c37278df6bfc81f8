#!/bin/bash
# Sluice's UDP echoes next to the same echoes written in C (shared/reference/peers), one run, the
# procedure of the peers' README: namespaces pa/pb joined by veth0/veth1, the C AF_XDP blaster on
# cpu 0 sending 60-byte frames to 198.18.0.2:4242, each echo pinned to cpu 1, echoes counted and
# dropped by xdp_drop on veth0, `measure 5` in the middle of each 7 s run, C and Sluice alternated (odd rounds C first).
# The socket and io_uring echoes use the kernel's default socket buffers, as the C echo does.
# Needs root, gcc, clang, libxdp-dev, and a release build (swift build -c release).
#
#   Benchmarks/scripts/echo-vs-c.sh [rounds]      (PEERS=path/to/shared/reference if not ../shared/reference)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
sluice=$root/.build/release/sluice
reference=${PEERS:-$root/../shared/reference}
rounds=${1:-2}
work=$(mktemp -d /tmp/sluice-echo-bench.XXXXXX)
trap 'ip netns del pa 2>/dev/null; ip netns del pb 2>/dev/null; [ -n "${KEEP:-}" ] && echo "logs in $work" || rm -rf "$work"' EXIT
for name in pa pb; do
    if ip netns list | grep -qw $name; then echo "namespace $name exists: another run? (ip netns del $name)"; exit 1; fi
done
include=/usr/include/$(uname -m)-linux-gnu
(cd "$work" &&
    gcc -O2 -o xdpecho "$reference/peers/xdpecho.c" -lxdp -lbpf &&
    gcc -O2 -o udpbench "$reference/peers/udpbench.c" &&
    gcc -O2 -o xsk_probe "$reference/probe/xsk_probe.c" -lxdp -lbpf &&
    clang -O2 -g -target bpf -I"$include" -c "$reference/probe/xdp_xsk.bpf.c" -o xdp_xsk.bpf.o &&
    clang -O2 -g -target bpf -I"$include" -c "$reference/peers/xdp_drop.bpf.c" -o xdp_drop.bpf.o) || exit 1
bash "$reference/probe/setup_netns.sh" >/dev/null || exit 1
ip -n pa link set dev veth0 xdpgeneric obj "$work/xdp_drop.bpf.o" sec xdp || exit 1
. "$reference/peers/measure.sh"

# run NAME COMMAND...: the echo for 9 s, the blaster for 7 s, the veth counters over 5 s of it.
run() {
    local name=$1; shift
    [ -n "$only" ] && [[ ! $name =~ $only ]] && return
    (cd "$work" && exec "$@") > "$work/$name.log" 2>&1 &
    local pid=$!
    sleep 1
    (cd "$work" && XSKTX=1 ./xsk_probe bench-none 7 > "$work/blaster.log" 2>&1) &
    local blaster=$!
    sleep 1
    echo "$name: $(measure 5 | grep counters | sed 's/.*veth0.tx=/offered=/; s/veth1.rx=.*veth0.rx(echo)=/echoed=/')"
    wait $blaster
    kill -INT $pid 2>/dev/null
    for _ in 1 2 3 4 5 6; do kill -0 $pid 2>/dev/null || break; sleep 0.5; done
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    ip -n pb link set dev veth1 xdpgeneric off 2>/dev/null; ip -n pb link set dev veth1 xdpdrv off 2>/dev/null
}
only=${ONLY:-}
c_xdp() { run c-xdp ./xdpecho skb 9 1; }
sluice_xdp() {
    run sluice-xdp "$sluice" udp-echo --backend xdp --mode generic --netns pb --dev veth1 \
        --listen 198.18.0.2:4242 --cpus 1 --duration 9 --stats-interval 0
}
c_socket() { run c-socket ip netns exec pb ./udpbench echo 198.18.0.2 4242 9 1; }
sluice_socket() {
    run sluice-socket "$sluice" udp-echo --backend socket --netns pb --listen 198.18.0.2:4242 --cpus 1 \
        --socket-buffer 0 --duration 9 --stats-interval 0
}
# Odd rounds run C first, even rounds Sluice first, so neither side always gets the machine as
# the other leaves it.
for round in $(seq "$rounds"); do
    echo "round $round"
    if ((round % 2)); then c_xdp; sluice_xdp; c_socket; sluice_socket
    else sluice_xdp; c_xdp; sluice_socket; c_socket; fi
    run sluice-uring "$sluice" udp-echo --backend uring --netns pb --listen 198.18.0.2:4242 --cpus 1 \
        --socket-buffer 0 --duration 9 --stats-interval 0
    run sluice-uring-defer "$sluice" udp-echo --backend uring --defer-taskrun --netns pb --listen 198.18.0.2:4242 \
        --cpus 1 --socket-buffer 0 --duration 9 --stats-interval 0
done
