#!/usr/bin/env bash
# Runs the whole suite N times, each from a fresh clone of this repository's HEAD (a warm
# tree hides missing install steps), and prints a table of failures per check and the
# time of each run. Usage: sudo tests/repeat.sh [N]   (default 5; ~40 minutes a run on 2 CPUs)
# The record is kept per commit in /var/tmp/offloadd-repeat-COMMIT: run again on the same
# commit (after a reboot, say) and it goes on from the runs already recorded there until
# there are N, so five runs of 40 minutes need not fit in one sitting. A failed run stays
# in the record. The clones live under /tmp: the VM cannot see /var/tmp (env.sh vm_sees).
set -uo pipefail
N=${1:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
head=$(git -C "$repo" rev-parse --short=12 HEAD)
out=${REPEAT_DIR:-/var/tmp/offloadd-repeat-$head}
mkdir -p "$out"
touch "$out/runs.txt" "$out/failures.txt"
done_runs=$(grep -c '^run ' "$out/runs.txt")
echo "repeat: $N runs of $head ($done_runs recorded already); logs in $out"
for i in $(seq $((done_runs + 1)) "$N"); do
    clone=$(mktemp -d /tmp/offloadd-repeat-clone.XXXXXX)/offloadd
    git clone -q "$repo" "$clone"
    git -C "$clone" checkout -q "$head"
    t0=$(date +%s)
    (cd "$clone" && CI=true bash .ci/run) >"$out/run-$i.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    total=$(grep '^total:' "$out/run-$i.log" | tail -1)
    echo "run $i: rc=$rc, $((secs / 60)) min $((secs % 60)) s, started $(date -d "@$t0" '+%F %T'), ${total:-no total line}" | tee -a "$out/runs.txt"
    # Failed checks of every tier: VM "not ok NAME: ...", cargo "test NAME ... FAILED".
    { grep -E '^not ok ' "$out/run-$i.log" | sed -E 's/^not ok ([^:]+):.*/\1/'
      grep -E '^test .* \.\.\. FAILED$' "$out/run-$i.log" | awk '{print $2}'
      [ "$rc" -ne 0 ] && ! grep -qE '^(not ok |test .* FAILED)' "$out/run-$i.log" && echo "(run failed without a failed check: see run-$i.log)"
    } | sed "s/^/$i /" >>"$out/failures.txt"
    rm -rf "$(dirname "$clone")"
done
echo
echo "runs of $head:"
cat "$out/runs.txt"
echo "failures per check over $N runs:"
if [ -s "$out/failures.txt" ]; then
    awk '{print $2}' "$out/failures.txt" | sort | uniq -c | sort -rn | awk -v n="$N" '{printf "  %-50s %d of %d\n", $2, $1, n}'
else
    echo "  none"
fi
! [ -s "$out/failures.txt" ]
