#!/bin/bash
# `sluice tls serve` next to OpenSSL on loopback, one run, rounds alternating:
#  - bulk TLS 1.3 AES-128-GCM, 16 KiB records: the C reference client (tlsbench.c, built here)
#    against its own C server and against `sluice tls serve --sink` / `--bench-echo` (server on cpu 1,
#    client on cpu 0); MB/s and server CPU seconds per GiB;
#  - full handshakes (ECDSA P-256, X25519): `openssl s_time -new` for 5 s against `openssl
#    s_server` and against `sluice tls serve`; server CPU per handshake (from /proc).
# Needs root, openssl, gcc, libssl-dev and a release build (swift build -c release).
#
#   Benchmarks/scripts/tls-vs-openssl.sh [rounds] [MiB per bulk run]
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
sluice=$root/.build/release/sluice
fixtures=$root/Tests/SluiceTLSTests/Fixtures
rounds=${1:-3}
mib=${2:-2048}
work=$(mktemp -d /tmp/sluice-tls-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
gcc -O2 -o "$work/tlsbench" "$root/../shared/reference/peers/tlsbench.c" -lssl -lcrypto 2>/dev/null \
    || gcc -O2 -o "$work/tlsbench" "$root/Benchmarks/scripts/tlsbench.c" -lssl -lcrypto || exit 1
port=$((20000 + $$ % 20000))

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)

# bulk NAME MODE SERVER...: the server on cpu 1, tlsbench's client on cpu 0.
bulk() {
    local name=$1 mode=$2; shift 2
    port=$((port + 1))
    taskset -c 1 "$@" > "$work/server.log" 2>&1 &
    local pid=$!
    sleep 0.7
    local before; before=$(cpu_ticks $pid)
    local out; out=$(taskset -c 0 "$work/tlsbench" client 127.0.0.1 $port tls $mode $mib 2>&1)
    local after; after=$(cpu_ticks $pid)
    kill -TERM $pid; wait $pid 2>/dev/null
    local rate; rate=$(echo "$out" | sed -n 's/.*= \([0-9.]*\) MB\/s.*/\1/p')
    echo "$name $mode: $rate MB/s; server CPU $(echo "scale=3; ($after - $before) / $ticks * 1024 / $mib" | bc) s per GiB"
}

# handshakes NAME SERVER...: s_time -new for 5 s on cpu 0, the server on cpu 1.
handshakes() {
    local name=$1; shift
    port=$((port + 1))
    taskset -c 1 "$@" > "$work/server.log" 2>&1 &
    local pid=$!
    sleep 0.7
    local before; before=$(cpu_ticks $pid)
    local out; out=$(taskset -c 0 openssl s_time -connect 127.0.0.1:$port -new -time 5 2>&1)
    local after; after=$(cpu_ticks $pid)
    kill -TERM $pid; wait $pid 2>/dev/null
    local count; count=$(echo "$out" | sed -n 's/^\([0-9]*\) connections in.*/\1/p' | head -1)
    echo "$name handshakes: $count in 5 s; server CPU $(echo "scale=3; ($after - $before) * 1000 / $ticks / $count" | bc) ms per handshake"
}

C() { echo "$work/tlsbench" server $port tls "$1" "$fixtures/server.pem" "$fixtures/server.key"; }
S() { echo "$sluice" tls serve --cert "$fixtures/server.pem" --key "$fixtures/server.key" --listen 127.0.0.1:$port --"$1" --duration 120; }
for round in $(seq "$rounds"); do
    echo "round $round"
    for mode in sink echo; do
        bulk "tlsbench-c" $mode $(port=$((port + 1)); C $mode)
        bulk "sluice" $mode $(port=$((port + 1)); S $([ $mode = echo ] && echo bench-echo || echo sink))
    done
    handshakes "openssl-s_server" $(port=$((port + 1)); echo openssl s_server -accept 127.0.0.1:$port -cert "$fixtures/server.pem" -key "$fixtures/server.key" -quiet)
    handshakes "sluice" $(port=$((port + 1)); S echo)
done
