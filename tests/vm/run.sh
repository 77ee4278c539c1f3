#!/usr/bin/env bash
# VM tier: boots the Debian kernel (which has flowtables) with virtme-ng under TCG and
# runs tests/vm/guest.sh in it. Judges the guest's results on the host: vng's own exit
# code is not reliable under the console fallback. Usage: run.sh [OFFLOADD_BINARY]
# VM_ONLY=openwrt, policy, gateway, big, ha or fw4 runs that part alone (for work on it; CI runs everything).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/tests/lab/env.sh"
vm_sees "$repo" || exit 2
bin=${1:-$repo/target/release/offloadd}
[ -x "$bin" ] || { echo "vm: $bin is not built (cargo build --release)" >&2; exit 2; }
kernel=$("$repo/tests/vm/kernel.sh")
out=$(mktemp -d /tmp/offloadd-vm.XXXXXX)
chmod 777 "$out"
echo "vm: booting $(basename "$kernel") under TCG (about a minute) ..."
# softlockup_panic + timeout: a guest that locks up fails instead of hanging CI. The whole
# "all" run takes about 27 minutes on 2 CPUs; the budget leaves room for a slower machine.
budget=${VM_BUDGET_S:-2700}
t0=$(date +%s)
timeout "$budget" vng --verbose --disable-kvm --cpus 2 --memory 1G --rwdir "$out" --run "$kernel" \
    --append softlockup_panic=1 --exec "$repo/tests/vm/guest.sh $out $bin ${VM_ONLY:-all}" >"$out/vng.log" 2>&1 || true
if [ -f "$out/results" ]; then cat "$out/results"; fi
pass=$(grep -c '^ok ' "$out/results" 2>/dev/null || true)
failed=$(grep -c '^not ok ' "$out/results" 2>/dev/null || true)
secs=$(($(date +%s) - t0))
if [ ! -f "$out/done" ]; then
    # A "not ok" line, so tests/repeat.sh counts it like any failed check.
    if [ "$secs" -ge "$budget" ]; then
        echo "not ok vm_guest_finished: the guest ran out of its ${budget} s budget (VM_BUDGET_S)"
    else
        echo "not ok vm_guest_finished: the guest stopped after ${secs} s; last lines of its log:"
    fi
    grep -q 'error changing directory' "$out/vng.log" 2>/dev/null &&
        echo "vm: the guest could not enter $repo: the VM does not see that directory (see vm_sees in tests/lab/env.sh)"
    tail -20 "$out/guest.log" 2>/dev/null || tail -20 "$out/vng.log"
    failed=$((failed + 1))
fi
[ -f "$out/sections" ] && { echo "vm: time at the start of each part:"; sed 's/^/  /' "$out/sections"; }
echo "vm: $pass passed, $failed failed in $((secs / 60)) min $((secs % 60)) s (logs in $out)"
[ "$failed" -eq 0 ] && [ "$pass" -gt 0 ]
