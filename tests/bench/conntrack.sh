#!/usr/bin/env bash
# Conntrack benchmark (issue 3): fills a throwaway namespace's conntrack table with
# N UDP entries (default 100000) and prints median times and the ratios docs/benchmarks.md
# quotes. Needs root; touches only the namespace it creates.
#   sudo tests/bench/conntrack.sh [ENTRIES] [REPS]
set -eu
. "$(dirname "$0")/ns.sh"
N=${1:-100000}
REPS=${2:-7}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
NS=odbench-$$
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (sudo $0)" >&2; exit 2; }
cd "$REPO"
cargo build --release --quiet --bin offloadd --example ct_bench
BIN=$REPO/target/release/offloadd
CT_BENCH=$REPO/target/release/examples/ct_bench
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
bench_ns "$NS"
ip -n "$NS" addr add 127.0.0.2/8 dev lo 2>/dev/null || true
bench_fill "$NS" "$N"
have=$(ip netns exec "$NS" conntrack -C)
echo "conntrack entries in the bench namespace: $have (0 offloaded: this kernel has no flowtables)"

# Median wall time (ms) of a command over REPS runs, output discarded.
median_ms() {
    local t0 times=()
    for _ in $(seq "$REPS"); do
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1
        times+=($((($(date +%s%N) - t0) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v m=$((REPS / 2 + 1)) 'NR == m {printf "%.2f", $1 / 1000}'
}
export OFFLOADD_SOCKET=/nonexistent/offloadd.sock   # no daemon: direct dumps
ct_list=$(median_ms ip netns exec "$NS" conntrack -L)
flows_off=$(median_ms ip netns exec "$NS" "$BIN" flows --path offloaded)
proc_grep=$(median_ms ip netns exec "$NS" grep -c OFFLOAD /proc/net/nf_conntrack)
flows_all=$(median_ms ip netns exec "$NS" "$BIN" flows)
inproc=$(ip netns exec "$NS" "$CT_BENCH" "$REPS")
get() { echo "$inproc" | awk -v k="$1" '$1 == k {print $2}'; }
raw=$(get raw); snap=$(get snapshot); cold=$(get resync_cold); warm=$(get resync_warm); offl=$(get offloaded_dump)
[ "$(get listed)" -ge "$N" ] || { echo "bench: the snapshot listed $(get listed) of $N entries" >&2; exit 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
cat <<OUT
medians over $REPS runs, $have entries (ms):
  conntrack -L > /dev/null                      $ct_list
  grep -c OFFLOAD /proc/net/nf_conntrack        $proc_grep
  offloadd flows --path offloaded (process)     $flows_off
  offloadd flows (process, all, printed)        $flows_all
  raw netlink dump, nothing parsed (floor)      $raw
  full snapshot, every entry classified         $snap
  daemon full resync, tracker already warm      $warm
  daemon full resync, empty tracker             $cold
  daemon resync filtered on IPS_OFFLOAD         $offl
ratios:
  flows --path offloaded / conntrack -L         $(ratio "$flows_off" "$ct_list")   (target <= 0.3)
  flows --path offloaded / grep /proc           $(ratio "$flows_off" "$proc_grep")
  full classified snapshot / raw floor          $(ratio "$snap" "$raw")   (target <= 1.3)
  daemon full resync (warm) / raw floor         $(ratio "$warm" "$raw")
  daemon filtered resync / full resync (warm)   $(ratio "$offl" "$warm")
OUT
