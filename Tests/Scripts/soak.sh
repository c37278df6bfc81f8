#!/usr/bin/env bash
# The soak (`make soak MINUTES=N`): the UDP echo at the highest rate the client drives, on each
# backend in turn (socket, uring, xdp), N minutes in all, on two network namespaces of its own.
# Every 10 s it reads the server's /metrics: resident memory, datagrams, drops. It fails if memory
# grows past BOUND_MIB after the first 20 s, if a reply comes back corrupt, or if a frame is missing
# at the end (the summary's frames_balanced).
#
# usage: soak.sh SLUICE MINUTES [BOUND_MIB]
set -euo pipefail
export LC_ALL=C
sluice=$(realpath "$1")
minutes=$2
bound_mib=${3:-16}
suffix=k$$
server_ns=sluice-s$suffix client_ns=sluice-c$suffix device=ss$suffix
work=$(mktemp -d /tmp/sluice-soak.XXXXXX)
cleanup() {
  jobs -p | xargs -r kill -TERM 2>/dev/null || true
  wait 2>/dev/null || true
  "$sluice" netns down --suffix "$suffix" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$sluice" netns up --suffix "$suffix" >/dev/null
backends=(socket uring xdp)
seconds=$(( minutes * 60 / ${#backends[@]} ))
(( seconds >= 40 )) || { echo "soak: give at least 2 minutes"; exit 2; }
failed=0
printf '%-7s %8s %14s %12s %10s %10s %8s %7s\n' backend seconds echoed replies/s rss_start rss_end drops frames
for backend in "${backends[@]}"; do
  extra=(); [ "$backend" = xdp ] && extra=(--dev "$device")
  nsenter --net=/run/netns/$server_ns "$sluice" udp-echo --backend "$backend" "${extra[@]}" --listen 198.18.0.1:9000 \
    --duration "$seconds" --stats-interval 0 --json --metrics-listen 127.0.0.1:9464 > "$work/$backend.json" 2> "$work/$backend.err" &
  server=$!
  sleep 2
  ip netns exec $client_ns "$sluice" udp-client --target 198.18.0.1:9000 --duration $(( seconds - 5 )) --window 512 --json \
    > "$work/$backend.client.json" &
  client=$!
  : > "$work/$backend.samples"
  for (( t = 10; t < seconds - 5; t += 10 )); do
    sleep 10
    nsenter --net=/run/netns/$server_ns curl -s --max-time 5 http://127.0.0.1:9464/metrics \
      | awk -v t="$t" '/^sluice_process_resident_memory_bytes/ {rss=$2}
                      /^sluice_port_received_packets_total/ {rx+=$2}
                      /^sluice_drops_total/ {drops+=$2}
                      END {printf "%d %.0f %.0f %.0f\n", t, rss, rx, drops}' >> "$work/$backend.samples"
  done
  wait $client || true
  wait $server || { echo "soak: $backend server failed:"; cat "$work/$backend.err"; failed=1; continue; }
  read -r rss_start < <(awk '$1 >= 20 {print $2; exit}' "$work/$backend.samples")
  rss_end=$(awk 'END {print $2}' "$work/$backend.samples")
  summary=$(cat "$work/$backend.json")
  client_report=$(cat "$work/$backend.client.json")
  row=$(python3 - "$summary" "$client_report" "$rss_start" "$rss_end" "$bound_mib" "$backend" "$seconds" <<'PY'
import json, sys
summary, client = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rss_start, rss_end, bound, backend, seconds = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
drops = sum(d["count"] for d in summary["drops"])
growth = (rss_end - rss_start) / 2**20
ok = summary["frames_balanced"] and client["corrupt"] == 0 and growth <= bound
print(f'{backend:<7} {seconds:>8} {int(summary["counters"]["port_transmitted_packets"]):>14} {client["reply_rate"]:>12.0f} '
      f'{rss_start / 2**20:>9.1f}M {rss_end / 2**20:>9.1f}M {drops:>8} {"all" if summary["frames_balanced"] else "MISSING":>7}'
      + ("" if ok else f'  FAIL (memory +{growth:.1f} MiB, corrupt {client["corrupt"]})'))
sys.exit(0 if ok else 1)
PY
  ) && echo "$row" || { echo "$row"; failed=1; }
done
exit $failed
