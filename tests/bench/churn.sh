#!/usr/bin/env bash
# Busy-gateway churn (issue 16): a throwaway namespace's conntrack table holds ENTRIES
# long-lived unreplied UDP entries (default 150000); then RATE new connections a second
# (default 10000) arrive for SECONDS (default 60), each a new unreplied UDP entry that
# the kernel expires 5 s later (so the table stays near ENTRIES + 5 × RATE and every
# entry is a NEW and a DESTROY event). The daemon runs in observe mode; prints its CPU
# share (user + system from /proc/PID/stat: the kernel's dump work is charged to it),
# event overruns and full dumps during the churn, RSS, and whether its count equals the
# kernel's at the end. With a second binary it runs both on the same table.
#   sudo tests/bench/churn.sh [ENTRIES] [RATE] [SECONDS] [OLD_BINARY]
# Needs root; touches only the namespace it creates.
set -eu
. "$(dirname "$0")/ns.sh"
N=${1:-150000}
RATE=${2:-10000}
SECS=${3:-60}
OLD=${4:-}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
NS=odchurn-$$
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (sudo $0)" >&2; exit 2; }
cd "$REPO"
cargo build --release --quiet --bin offloadd
NEW=$REPO/target/release/offloadd
DIR=$(mktemp -d /tmp/offloadd-churn.XXXXXX)
cleanup() { ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$NS" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
bench_ns "$NS"
# The base entries keep the hour they were created with; the churn gets 5 s.
bench_fill "$NS" "$N"
ip netns exec "$NS" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=5
printf 'mode = "observe"\n[offload]\ndevices = ["lo"]\n' >"$DIR/observe.toml"
HZ=$(getconf CLK_TCK)

# churn SECONDS FIRST: RATE new entries a second from index FIRST on (ports above the
# base entries' addresses), paced in 10 ms steps.
churn() {
    ip netns exec "$NS" python3 - "$RATE" "$1" "$2" <<'PY'
import socket, sys, time
rate, secs, first = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
step, per = 0.01, max(1, int(sys.argv[1]) // 100)
t0, i = time.monotonic(), first
while time.monotonic() - t0 < secs:
    for _ in range(per):
        s.sendto(b"x", ("127.1.%d.%d" % (i // 60000 // 250 % 250, 1 + i // 60000 % 250), 1024 + i % 60000))
        i += 1
    late = t0 + (i - first) / rate - time.monotonic()
    if late > 0:
        time.sleep(late)
print(i - first)
PY
}

field() { "$1" --socket "$DIR/s.sock" status --json | python3 -c "import json,sys; c=json.load(sys.stdin)['conntrack']; print($2)"; }

# run BIN LABEL FIRST: prints the figures of one run.
run() {
    local bin=$1 label=$2 pid c0 c1 t0 t1 o0 o1 f0 f1 sent rss ours kernel
    ip netns exec "$NS" "$bin" --socket "$DIR/s.sock" run --config "$DIR/observe.toml" 2>"$DIR/$label.log" &
    pid=$!
    sleep 10
    o0=$(field "$bin" "c['overruns']"); f0=$(field "$bin" "c['full_dumps']")
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t0=$(date +%s%N)
    sent=$(churn "$SECS" "$3")
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t1=$(date +%s%N)
    o1=$(field "$bin" "c['overruns']"); f1=$(field "$bin" "c['full_dumps']")
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    # After the churn: the last entries expire within 5 s (plus the kernel's GC), then
    # the daemon's count must be the kernel's.
    sleep 12
    ours=$(field "$bin" "c['slow'] + c['sw'] + c['hw']")
    kernel=$(ip netns exec "$NS" conntrack -C)
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    awk -v c=$((c1 - c0)) -v hz="$HZ" -v ns=$((t1 - t0)) -v l="$label" -v s="$sent" \
        -v o=$((o1 - o0)) -v f=$((f1 - f0)) -v r="$rss" -v ours="$ours" -v k="$kernel" \
        'BEGIN {printf "%s: %d new connections in %.0f s: CPU %.1f %% of one core, %d overruns, %d full dumps, RSS %d KiB at the end of the churn; then counted %d, conntrack -C %d\n", l, s, ns / 1e9, 100 * c / hz / (ns / 1e9), o, f, r, ours, k}'
}

echo "conntrack: $(ip netns exec "$NS" conntrack -C) long-lived entries, then $RATE new a second for $SECS s"
run "$NEW" "this build" 0
if [ -n "$OLD" ]; then
    # A second run's churn uses new tuples (the first run's have expired by now).
    run "$OLD" "older build" $((RATE * SECS + 1))
fi
