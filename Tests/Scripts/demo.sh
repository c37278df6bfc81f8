#!/usr/bin/env bash
# The demo: two network namespaces joined by a veth pair (addresses from 198.18.0.0/15),
# `sluice udp-echo` in one (kernel sockets, then AF_XDP), a bounded `sluice udp-client` in the other. Everything it makes
# carries a per-run suffix and is removed on exit, even on failure.
set -euo pipefail
SLUICE=${1:?usage: demo.sh path/to/sluice}
SLUICE=$(realpath "$SLUICE")
RUN=$$
SERVER_NS=sluice-demo-s$RUN
CLIENT_NS=sluice-demo-c$RUN
SERVER_PID=

cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  ip netns del "$SERVER_NS" 2>/dev/null || true
  ip netns del "$CLIENT_NS" 2>/dev/null || true
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root to create network namespaces (run: sudo make demo)" >&2
  exit 1
fi

ip netns add "$SERVER_NS"
ip netns add "$CLIENT_NS"
ip link add "sd$RUN" netns "$SERVER_NS" type veth peer name "cd$RUN" netns "$CLIENT_NS"
ip -n "$SERVER_NS" addr add 198.18.0.1/24 dev "sd$RUN"
ip -n "$CLIENT_NS" addr add 198.18.0.2/24 dev "cd$RUN"
ip -n "$SERVER_NS" addr add 2001:2::1/64 dev "sd$RUN" nodad
ip -n "$CLIENT_NS" addr add 2001:2::2/64 dev "cd$RUN" nodad
for ns in "$SERVER_NS" "$CLIENT_NS"; do ip -n "$ns" link set lo up; done
ip -n "$SERVER_NS" link set "sd$RUN" up
ip -n "$CLIENT_NS" link set "cd$RUN" up

# Drives the server started last with a bounded client (IPv4 small and large, IPv6), then stops it.
drive_and_stop() {
  sleep 1
  for size in 64 1400; do
    ip netns exec "$CLIENT_NS" taskset -c 0 "$SLUICE" udp-client --target 198.18.0.1:9000 --size $size --duration 3
  done
  ip netns exec "$CLIENT_NS" taskset -c 0 "$SLUICE" udp-client --target '[2001:2::1]:9000' --size 512 --duration 2
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=
}

echo "== sluice udp-echo (socket backend) in $SERVER_NS on [::]:9000, client in $CLIENT_NS over veth"
ip netns exec "$SERVER_NS" "$SLUICE" udp-echo --backend socket --listen '[::]:9000' --workers 1 --cpus 1 \
  --duration 30 --stats-interval 0 &
SERVER_PID=$!
drive_and_stop

echo
echo "== the same service on AF_XDP (generic XDP, copy mode): sluice's XDP program steers port 9000 to the XSK"
"$SLUICE" udp-echo --backend xdp --dev "sd$RUN" --netns "$SERVER_NS" --mode generic --cpus 1 \
  --listen '[::]:9000' --duration 30 --stats-interval 0 &
SERVER_PID=$!
drive_and_stop
