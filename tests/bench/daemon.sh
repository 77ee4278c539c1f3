#!/usr/bin/env bash
# Daemon benchmark (issue 7): event intake, RSS idle and with N tracked flows, CPU per
# periodic resync. Runs offloadd (observe mode) in a throwaway namespace and fills its
# conntrack table with N UDP entries in one burst. Prints `key value` lines.
#   sudo tests/bench/daemon.sh [ENTRIES]
set -eu
. "$(dirname "$0")/ns.sh"
N=${1:-100000}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$REPO/target/release/offloadd
NS=odbench-d$$
SOCK=/run/odbench-$$.sock
T=$(mktemp -d)
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root" >&2; exit 2; }
cleanup() { [ -z "${PID:-}" ] || kill "$PID" 2>/dev/null || true; ip netns del "$NS" 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
bench_ns "$NS"
printf 'mode = "observe"\n[offload]\ndevices = []\n[conntrack]\nresync_interval = "250ms"\n' >"$T/bench.toml"
ip netns exec "$NS" "$BIN" run --config "$T/bench.toml" --socket "$SOCK" 2>"$T/daemon.log" &
PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
sleep 1
st() { OFFLOADD_SOCKET=$SOCK "$BIN" status --json; }
field() { st | python3 -c "import json,sys; c=json.load(sys.stdin)['conntrack']; print($1)"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
TCK=$(getconf CLK_TCK)
# RSS counts the binary's and libc's resident code pages too (clean, shared, dropped
# first under memory pressure); the anonymous part is the daemon's own memory.
anon_kib() { awk '/^Anonymous:/ {print $2}' "/proc/$PID/smaps_rollup"; }
pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$PID/smaps_rollup"; }
echo "rss_idle_kib $(rss_kib)"
echo "anon_idle_kib $(anon_kib)"
echo "pss_idle_kib $(pss_kib)"

# Event intake: one burst of N new UDP entries, as fast as one Python process sends.
ev0=$(field "c['events']"); cpu0=$(cpu_ticks); t0=$(date +%s%N)
bench_fill "$NS" "$N"
t_sent=$(date +%s%N)
have=$(ip netns exec "$NS" conntrack -C)
for _ in $(seq 300); do
    tot=$(field "c['slow'] + c['sw'] + c['hw']")
    [ "$tot" -ge "$have" ] && break
    sleep 0.1
done
t1=$(date +%s%N); cpu1=$(cpu_ticks); ev1=$(field "c['events']")
tot=$(field "c['slow'] + c['sw'] + c['hw']")
overruns=$(field "c['overruns']")
ms() { echo $((($2 - $1) / 1000000)); }
cpu_ms=$(((cpu1 - cpu0) * 1000 / TCK))
echo "burst_entries $have"
echo "burst_send_ms $(ms "$t0" "$t_sent")"
echo "burst_caught_up_ms $(ms "$t0" "$t1")"
echo "events_received $((ev1 - ev0))"
echo "daemon_cpu_ms_during_burst $cpu_ms"
echo "events_per_cpu_second $(awk -v e=$((ev1 - ev0)) -v c="$cpu_ms" 'BEGIN {printf "%d", (c > 0 ? e * 1000 / c : 0)}')"
echo "events_per_wall_second $(awk -v e=$((ev1 - ev0)) -v t="$(ms "$t0" "$t1")" 'BEGIN {printf "%d", (t > 0 ? e * 1000 / t : 0)}')"
echo "overruns $overruns"
echo "tracked_after_burst $tot"
echo "lost_unrecovered $((have - tot))"
sleep 2
echo "rss_tracked_kib $(rss_kib)"
echo "anon_tracked_kib $(anon_kib)"

# CPU per periodic resync at N flows (filtered on IPS_OFFLOAD, every 30th full).
d0=$(field "c['dumps']"); f0=$(field "c['full_dumps']"); cpu0=$(cpu_ticks)
sleep 15
d1=$(field "c['dumps']"); f1=$(field "c['full_dumps']"); cpu1=$(cpu_ticks)
echo "resyncs $((d1 - d0)) full $((f1 - f0))"
echo "cpu_ms_per_resync $(awk -v c=$(((cpu1 - cpu0) * 1000 / TCK)) -v d=$((d1 - d0)) 'BEGIN {printf "%.2f", (d > 0 ? c / d : 0)}')"
