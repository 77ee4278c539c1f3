#!/usr/bin/env bash
# The main job, on its own: builds offloadd, makes a throwaway lab (lan host, router,
# wan host in network namespaces), runs offloadd in the router, drives TCP (iperf3) and
# a two-way UDP exchange through it, and shows which flows reached [OFFLOAD].
# On a kernel without flowtables it runs the same lab inside the test tier's VM kernel.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tests/lab/env.sh"
"$repo/tests/setup.sh"
echo "lab: building offloadd (release) ..."
(cd "$repo" && cargo build --release -q)
bin=$repo/target/release/offloadd
if kernel_has_flowtables; then
    "$repo/tests/lab/scenario.sh" "$bin"
else
    vm_sees "$repo" || exit 2
    kernel=$("$repo/tests/vm/kernel.sh")
    echo "lab: this kernel ($(uname -r)) lacks flowtables, so nothing could be offloaded here."
    echo "lab: running the same lab inside $(basename "$kernel") under virtme-ng (about a minute) ..."
    out=$(mktemp -d /tmp/offloadd-lab.XXXXXX)
    chmod 777 "$out"
    timeout 600 vng --disable-kvm --cpus 2 --memory 1G --rwdir "$out" --run "$kernel" \
        --append softlockup_panic=1 --exec "$repo/tests/lab/scenario.sh $bin $out/report" >"$out/vng.log" 2>&1 || true
    if [ ! -s "$out/report" ]; then
        echo "lab: the VM produced no report; see $out/vng.log" >&2
        exit 1
    fi
    cat "$out/report"
    grep -q '^RESULT: ok' "$out/report"
fi
