#!/usr/bin/env bash
# Steady cost of the report (issue 16): fills a throwaway namespace's conntrack table
# with N unreplied UDP entries (default 100000), runs the daemon there in observe mode
# for SECONDS (default 60) after a 10 s warm-up, and prints its CPU time (user + system,
# from /proc/PID/stat: the kernel's dump work is charged to it) as a share of one core,
# its RSS, `status` latency (p50/p99 of 50 calls), and the peak RSS and wall time of an
# `offloadd flows --json` client against `conntrack -L`, with what that listing added to
# the daemon's peak RSS (VmHWM, reset before it through clear_refs). With a second binary (an older
# build) it runs both, one after the other on the same table, and prints the ratios.
#   sudo tests/bench/steady.sh [ENTRIES] [SECONDS] [OLD_BINARY]
# Needs root; touches only the namespace it creates.
set -eu
. "$(dirname "$0")/ns.sh"
N=${1:-100000}
SECS=${2:-60}
OLD=${3:-}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
NS=odsteady-$$
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (sudo $0)" >&2; exit 2; }
cd "$REPO"
cargo build --release --quiet --bin offloadd
NEW=$REPO/target/release/offloadd
DIR=$(mktemp -d /tmp/offloadd-steady.XXXXXX)
cleanup() { ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$NS" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
bench_ns "$NS"
bench_fill "$NS" "$N"
have=$(ip netns exec "$NS" conntrack -C)
printf 'mode = "observe"\n[offload]\ndevices = ["lo"]\n' >"$DIR/observe.toml"
HZ=$(getconf CLK_TCK)

# run BIN LABEL: prints "LABEL cpu_pct rss_kib status_p50_ms status_p99_ms
#   flows_client_peak_kib flows_s daemon_extra_kib"
run() {
    local bin=$1 label=$2 pid t0 t1 c0 c1
    ip netns exec "$NS" "$bin" --socket "$DIR/s.sock" run --config "$DIR/observe.toml" 2>"$DIR/$label.log" &
    pid=$!
    sleep 10
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t0=$(date +%s%N)
    sleep "$SECS"
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t1=$(date +%s%N)
    local rss lat
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    lat=$(for _ in $(seq 50); do
        s=$(date +%s%N); "$bin" --socket "$DIR/s.sock" status --json >/dev/null; e=$(date +%s%N)
        echo $(((e - s) / 1000))
    done | sort -n | awk '{v[NR] = $1} END {printf "%.1f %.1f", v[int(NR / 2) + 1] / 1000, v[int(NR * 0.99)] / 1000}')
    # `offloadd flows --json` through the daemon: the client's peak RSS and wall time.
    local fl rss0 hwm
    echo 5 >"/proc/$pid/clear_refs"
    rss0=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    fl=$( { /usr/bin/time -f '%M %e' "$bin" --socket "$DIR/s.sock" flows --json >/dev/null; } 2>&1 | tail -1)
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    awk -v c=$((c1 - c0)) -v hz="$HZ" -v ns=$((t1 - t0)) -v l="$label" -v r="$rss" -v lat="$lat" -v fl="$fl" -v x=$((hwm - rss0)) \
        'BEGIN {printf "%s %.3f %d %s %s %d\n", l, 100 * c / hz / (ns / 1e9), r, lat, fl, x}'
}
show() { # show LABEL LINE
    set -- "$1" $2
    echo "$1 CPU $3 % of one core, RSS $4 KiB, status p50/p99 $5/$6 ms, flows --json client peak RSS $7 KiB in $8 s, daemon peak +$9 KiB during it"
}

echo "conntrack entries: $have (none offloaded: this kernel has no flowtables); ${SECS} s after a 10 s warm-up"
ct_list=$( { /usr/bin/time -f '%e' ip netns exec "$NS" conntrack -L >/dev/null; } 2>&1 | tail -1)
echo "conntrack -L: $ct_list s"
new=$(run "$NEW" new)
show "this build: " "$new"
if [ -n "$OLD" ]; then
    old=$(run "$OLD" old)
    show "older build:" "$old"
    awk -v a="$(echo "$new" | cut -d' ' -f2)" -v b="$(echo "$old" | cut -d' ' -f2)" \
        'BEGIN {if (b > 0) printf "ratio this / older CPU: %.2f (target: 0.2 %% of a core at 100k entries)\n", a / b}'
fi
grep -h "conntrack event buffer" "$DIR/new.log" | sed 's/^/log: /'
