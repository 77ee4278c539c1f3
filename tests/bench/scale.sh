#!/usr/bin/env bash
# Gateway scale (issue 16), in the VM (its kernel has flowtables and lets the guest raise
# nf_conntrack_max): the lab router's conntrack table filled to 100k and then 1M entries,
# 1 % of them real forwarded UDP flows offloaded by offloadd, the rest unreplied UDP.
# At each size: the daemon's CPU share and RSS, `status` p50/p99 (while a full dump
# runs too), `offloadd flows` (all, and --path offloaded) against `conntrack -L`, the
# client's peak RSS and the daemon's extra peak during it. Prints one line per figure
# with the 1M / 100k ratio. TCG makes every figure slower than real hardware; the
# ratios between sizes and against `conntrack -L` are what it shows.
#   sudo tests/bench/scale.sh        (about 20 minutes under TCG)
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (sudo $0)" >&2; exit 2; }
. tests/lab/env.sh
vm_sees "$REPO" || exit 2
tests/setup.sh >/dev/null
cargo build --release --quiet --bin offloadd
OUT=$(mktemp -d /tmp/offloadd-scale.XXXXXX)
chmod 777 "$OUT"
kernel=$(tests/vm/kernel.sh)
echo "bench: booting the VM with 4 GB (1M conntrack entries take about 350 MB of kernel memory) ..."
timeout 3600 vng --verbose --disable-kvm --cpus 2 --memory 4G --rwdir "$OUT" --run "$kernel" \
    --append softlockup_panic=1 --exec "$REPO/tests/bench/scale-guest.sh $OUT $REPO/target/release/offloadd" >"$OUT/vng.log" 2>&1 || true
[ -f "$OUT/done" ] || { echo "bench: the VM part did not finish (see $OUT/vng.log, $OUT/scale-guest.log)" >&2; exit 1; }
python3 - "$OUT/scale.txt" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    size, key, value = line.split(None, 2)
    rows.setdefault(key, {})[size] = value.strip()
sizes = sorted({s for r in rows.values() for s in r}, key=int)
print(f"{'':42}" + "".join(f"{s:>14}" for s in sizes) + "   1M / 100k")
for key, r in rows.items():
    vals = [r.get(s, "-") for s in sizes]
    try:
        ratio = f"{float(vals[-1]) / float(vals[0]):.2f}"
    except (ValueError, ZeroDivisionError):
        ratio = ""
    print(f"{key:42}" + "".join(f"{v:>14}" for v in vals) + f"   {ratio}")
PY
echo "(raw figures and logs in $OUT)"
