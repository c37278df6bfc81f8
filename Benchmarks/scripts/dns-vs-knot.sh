#!/bin/bash
# Sluice's authoritative DNS next to Knot DNS, same zone, same veth pair, one run: kxdpgun (AF_XDP
# generator) and dnsperf against Knot on sockets, Knot in XDP mode, `sluice dns serve` on sockets
# and on AF_XDP. Each server is pinned to cpu 1 with one worker, the generator to cpu 0.
# Needs root, knot, knot-dnsutils (kxdpgun), dnsperf, and a release build (swift build -c release).
#
#   Benchmarks/scripts/dns-vs-knot.sh [rounds]
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
sluice=$root/.build/release/sluice
zone=$root/Tests/SluiceDNSTests/Fixtures/example.test.zone
rounds=${1:-2}
work=$(mktemp -d /tmp/sluice-dns-bench.XXXXXX)
suffix=db$$
server=sluice-s$suffix client=sluice-c$suffix interface=ss$suffix
trap '"$sluice" netns down --suffix $suffix >/dev/null 2>&1; rm -rf "$work"' EXIT
"$sluice" netns up --suffix $suffix >/dev/null || exit 1
printf "host.deep.example.test A\nwww.example.test A\nnothing.example.test A\nhost.deep.example.test AAAA\nexample.test SOA\nx.wild.example.test A\nexample.test MX\nfoo.sub.example.test A\n" > "$work/queries.txt"
mkdir -p "$work/run" "$work/db"
knot_conf() { # $1: listen line, $2: extra
    printf 'server:\n    listen: %s\n    rundir: %s/run\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\nlog:\n  - target: stderr\n    any: error\ndatabase:\n    storage: %s/db\nzone:\n  - domain: example.test\n    file: %s\n    journal-content: none\n    semantic-checks: off\n%s' "$1" "$work" "$work" "$zone" "$2"
}
knot_conf "198.18.0.1@53" "" > "$work/knot-socket.conf"
knot_conf "127.0.0.1@53" "$(printf 'xdp:\n    listen: %s@53\n    udp: on\n' $interface)" > "$work/knot-xdp.conf"

# run NAME GENERATOR SERVER...: the server in the server namespace, the generator for 5 s from the client's.
run() {
    local name=$1 generator=$2; shift 2
    nsenter --net=/run/netns/$server taskset -c 1 "$@" > "$work/$name.log" 2>&1 &
    local pid=$!
    sleep 2
    if [ "$generator" = kxdpgun ]; then
        out=$(ip netns exec $client taskset -c 0 kxdpgun -t 5 -Q 2000000 -i "$work/queries.txt" 198.18.0.1 2>&1)
        echo "$name kxdpgun: $(echo "$out" | grep 'total queries' | xargs) | $(echo "$out" | grep 'total replies' | xargs)"
    else
        limit=""; [ "$generator" != dnsperf ] && limit="-Q ${generator#dnsperf@}"
        out=$(ip netns exec $client taskset -c 0 dnsperf -s 198.18.0.1 -d "$work/queries.txt" -l 5 -c 4 -q 500 $limit 2>&1)
        echo "$name $generator: $(echo "$out" | grep 'Queries per second' | xargs) | $(echo "$out" | grep 'Average Latency' | xargs)"
    fi
    kill -INT $pid
    for _ in 1 2 3 4 5 6; do kill -0 $pid 2>/dev/null || break; sleep 0.5; done
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    ip -n $server link set dev $interface xdp off 2>/dev/null
}
for round in $(seq "$rounds"); do
    for generator in kxdpgun dnsperf dnsperf@20000; do
        run knot-socket $generator knotd -c "$work/knot-socket.conf"
        run sluice-socket $generator "$sluice" dns serve --zone "$zone" --listen 198.18.0.1:53 --stats-interval 0 --duration 30
        run knot-xdp $generator knotd -c "$work/knot-xdp.conf"
        run sluice-xdp $generator "$sluice" dns serve --zone "$zone" --backend xdp --dev $interface --listen 198.18.0.1:53 \
            --stats-interval 0 --duration 30
    done
done
