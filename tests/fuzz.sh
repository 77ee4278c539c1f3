#!/usr/bin/env bash
# Runs offloadd's fuzz targets (fuzz/fuzz_targets) with cargo-fuzz and libFuzzer.
#   tests/fuzz.sh [SECONDS] [TARGET...]   default: 600 s each, every target
#   RUNS=N tests/fuzz.sh 0 [TARGET...]    N executions each instead of a time
# Needs a nightly toolchain (cargo-fuzz builds with -Zsanitizer=address); installs
# cargo-fuzz if it is missing. Each target starts from its committed seeds in
# fuzz/seeds/TARGET plus the working corpus fuzz/corpus/TARGET (not committed), where
# libFuzzer keeps what it finds. A crash leaves its input in fuzz/artifacts/TARGET and
# fails the script: copy it to fuzz/regressions/TARGET/WHAT-IT-BROKE, where
# tests/fuzz_regressions.rs runs it on every `cargo test`, then fix it.
# With MINIMIZE=1, each target's seeds and corpus are then merged (libFuzzer -merge=1)
# into the smallest set that keeps their coverage, which replaces fuzz/seeds/TARGET (the
# form that is committed). docs/fuzzing.md says what each target checks.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(uci toml_plan ctnetlink control http monitor readback rtnetlink)

if ! rustup run nightly cargo --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# -max_len: 16 KiB holds the largest input the other parsers meet (a request head is cut
# at 8 KiB, a netlink datagram here is a page or a few). The config targets get 256 KiB:
# the expansion bombs (3k x 3k interface names: 52 KB) and the quadratic parsing (10k
# exclusions) of issue 26 need more than 16 KiB to be reached at all.
max_len() {
    case $1 in
        uci | toml_plan) echo 262144 ;;
        *) echo 16384 ;;
    esac
}

status=0
for t in "${TARGETS[@]}"; do
    log=fuzz/artifacts/$t.log
    mkdir -p "fuzz/artifacts/$t" "fuzz/corpus/$t"
    if [ -n "${RUNS:-}" ]; then
        limit=(-runs="$RUNS")
        echo "== $t: $RUNS executions"
    else
        limit=(-max_total_time="$SECONDS_EACH")
        echo "== $t: ${SECONDS_EACH}s"
    fi
    # -timeout: an input that takes 10 s is a bug (every parser here is meant to be
    # linear); libFuzzer's default would wait 20 minutes.
    if cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        "${limit[@]}" -max_len="$(max_len "$t")" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^Done' "$log" || true
    else
        echo "$t: FAILED, see $log and fuzz/artifacts/$t/" >&2
        tail -40 "$log" >&2
        status=1
        continue
    fi
    if [ "${MINIMIZE:-0}" = 1 ]; then
        # -merge=1 into an empty directory keeps the fewest inputs that reach all the
        # coverage of both; the seeds are replaced by them (smaller first).
        merged=fuzz/artifacts/$t.merged
        rm -rf "$merged" && mkdir -p "$merged"
        cargo +nightly fuzz run "$t" "$merged" "fuzz/seeds/$t" "fuzz/corpus/$t" -- \
            -merge=1 -max_len="$(max_len "$t")" -timeout=10 >"fuzz/artifacts/$t.merge.log" 2>&1
        rm -rf "fuzz/seeds/$t" && mv "$merged" "fuzz/seeds/$t"
        echo "$t: fuzz/seeds/$t has $(find "fuzz/seeds/$t" -type f | wc -l) inputs after merging"
    fi
done
exit $status
