#!/usr/bin/env bash
# Benchmarks (issue 7), side by side in one run, as ratios; writes docs/bench.png.
# Installs what it needs (tests/setup.sh, matplotlib). Host part in throwaway
# namespaces; forwarding and apply-with-flowtable in the VM (virtme-ng, TCG).
#   sudo tests/bench.sh [ENTRIES]        (default 100000; takes about 15 minutes;
#   BENCH_SCALE=1 adds 100k and 1M entries in the VM, about 20 more)
set -eu
N=${1:-100000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (sudo $0)" >&2; exit 2; }
. tests/lab/env.sh
vm_sees "$REPO" || exit 2
tests/setup.sh
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib 2>&1 | grep -v "Running pip as the 'root' user" || true
cargo build --release --quiet --bin offloadd --example ct_bench --example apply_bench
BIN=$REPO/target/release/offloadd
APPLY=$REPO/target/release/examples/apply_bench
OUT=$(mktemp -d /tmp/offloadd-bench.XXXXXX)
chmod 777 "$OUT"

echo "bench: conntrack queries and snapshots ($N entries) ..."
tests/bench/conntrack.sh "$N" 7 >"$OUT/conntrack.txt"
echo "bench: daemon intake, memory, resync CPU ..."
tests/bench/daemon.sh "$N" >"$OUT/daemon.txt"

echo "bench: apply latency on the host kernel (no flowtable) ..."
NS=odbench-a$$
ip netns add "$NS"; trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
ip -n "$NS" link set lo up
printf '[offload]\ndevices = ["lo"]\nhardware = "off"\n[[offload.exclude]]\nl4proto = "udp"\ndport = ["5060", "10000-20000"]\n[[offload.exclude]]\nsaddr = ["192.0.2.10", "2001:db8::/32"]\n' >"$OUT/apply.toml"
host_apply=$(ip netns exec "$NS" "$APPLY" "$OUT/apply.toml" 21 --no-flowtable | awk '{print $2}')
# The same ruleset for nft -f, without the flowtable and its rule (this kernel has none).
"$BIN" plan --config "$OUT/apply.toml" | grep -v '^#' | python3 -c '
import sys
out, skip = [], False
for line in sys.stdin:
    if line.strip().startswith("flowtable "): skip = True
    if not skip and "flow add" not in line: out.append(line)
    if skip and line.strip() == "}": skip = False
print("".join(out), end="")' >"$OUT/a.nft"
sed 's|policy accept;|policy accept;\n\t\ttcp dport 9 return|' "$OUT/a.nft" >"$OUT/b.nft"
for f in a b; do { echo 'table inet offloadd'; echo 'delete table inet offloadd'; cat "$OUT/$f.nft"; } >"$OUT/$f.full.nft"; done
ip netns exec "$NS" nft -f "$OUT/a.full.nft"
times=()
for i in $(seq 21); do
    f=$([ $((i % 2)) -eq 0 ] && echo a || echo b)
    t0=$(date +%s%N); ip netns exec "$NS" nft -f "$OUT/$f.full.nft"; t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
done
host_nft=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 11p | awk '{printf "%.2f", $1 / 1000}')

echo "bench: forwarding and apply in the VM (a few minutes under TCG) ..."
kernel=$(tests/vm/kernel.sh)
timeout 1200 vng --verbose --disable-kvm --cpus 2 --memory 1G --rwdir "$OUT" --run "$kernel" \
    --append softlockup_panic=1 --exec "$REPO/tests/bench/guest.sh $OUT $BIN $APPLY" >"$OUT/vng.log" 2>&1 || true
[ -f "$OUT/done" ] || echo "bench: the VM part did not finish (see $OUT/vng.log)" >&2

python3 tests/bench/report.py "$OUT" "$host_apply" "$host_nft" "$(stat -c %s "$BIN")" "$REPO/docs/bench.png"

# Gateway scale (issue 16): the report's steady cost and a busy gateway's churn on the
# host at ENTRIES; 100k and 1M entries with offloaded flows in the VM (BENCH_SCALE=1,
# about 20 minutes more).
echo "bench: steady cost of the report ($N entries) ..."
tests/bench/steady.sh "$N" 30
echo "bench: churn (150000 long-lived entries, 10000 new connections a second) ..."
tests/bench/churn.sh 150000 10000 30
if [ "${BENCH_SCALE:-0}" = 1 ]; then
    echo "bench: 100k and 1M entries in the VM ..."
    tests/bench/scale.sh
fi
