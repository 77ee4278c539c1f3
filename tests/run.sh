#!/usr/bin/env bash
# Every test tier: unit (no root), netns (host kernel, namespaces the tests create),
# VM (a Debian kernel with flowtables under virtme-ng), cross (router CPUs under
# qemu-user). Installs what it needs.
# Root-only tests are #[ignore]d in cargo test and run here with --include-ignored; they
# fail, not skip, when they cannot run.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. tests/lab/env.sh
t_start=$(date +%s)
tests/setup.sh || exit 2
log=$(mktemp /tmp/offloadd-tests.XXXXXX)
since() { echo "$(($(date +%s) - $1)) s"; }

echo "== build"
cargo build --release --locked 2>&1 | tail -2 || exit 2

echo "== unit and netns tiers (cargo test)"
# Root-only tests are #[ignore]d (a plain `cargo test` lists them as ignored); here they run.
cargo test --locked -- --include-ignored 2>&1 | tee "$log"
cargo_rc=${PIPESTATUS[0]}

echo "== scripts: sh -n and shellcheck; cargo fmt --check"
script_fail=0
for f in tests/*.sh tests/lab/*.sh tests/vm/*.sh tests/bench/*.sh packaging/*.sh .ci/run; do
    bash -n "$f" || script_fail=$((script_fail + 1))
done
shellcheck -S error -s bash tests/*.sh tests/lab/*.sh tests/vm/*.sh tests/bench/*.sh packaging/*.sh .ci/run || script_fail=$((script_fail + 1))
# Formatting is part of the tree: a commit that skipped rustfmt fails here, not in review.
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --check >/dev/null || { echo "cargo fmt --check: the tree is not formatted (run cargo fmt)"; script_fail=$((script_fail + 1)); }
fi

echo "== sandbox: the shipped systemd unit, run by systemd in namespaces of its own"
tests/sandbox.sh "$repo/target/release/offloadd" 2>&1 | tee -a "$log"
sandbox_rc=${PIPESTATUS[0]}

t_vm=$(date +%s)
echo "== VM tier"
tests/vm/run.sh "$repo/target/release/offloadd" 2>&1 | tee -a "$log"
vm_rc=${PIPESTATUS[0]}

t_cross=$(date +%s)
echo "== cross tier (aarch64, armv7, s390x under qemu-user)"
tests/cross.sh 2>&1 | tee -a "$log"
cross_rc=${PIPESTATUS[0]}

passed=$(awk '/^test result:/ {gsub(";", ""); p += $4} /^(vm|sandbox): [0-9]+ passed/ {p += $2} END {print p + 0}' "$log")
failed=$(awk '/^test result:/ {gsub(";", ""); f += $6} /^(vm|sandbox): [0-9]+ passed/ {f += $4} END {print f + 0}' "$log")
failed=$((failed + script_fail))
[ "$cargo_rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
[ "$vm_rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
[ "$sandbox_rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
[ "$cross_rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
echo "times: setup, build and cargo tiers $((t_vm - t_start)) s; VM $((t_cross - t_vm)) s; cross $(since "$t_cross"); all $(since "$t_start")"
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
