#!/usr/bin/env bash
# Runs offloadd's fuzz targets (fuzz/fuzz_targets) with cargo-fuzz and libFuzzer.
#   tests/fuzz.sh [SECONDS] [TARGET...]   default: 600 s each, all four targets
# Needs a nightly toolchain (cargo-fuzz builds with -Zsanitizer=address); installs
# cargo-fuzz if it is missing. Each target starts from its committed seeds in
# fuzz/seeds/TARGET plus the working corpus fuzz/corpus/TARGET (not committed), where
# libFuzzer keeps what it finds. A crash leaves its input in fuzz/artifacts/TARGET and
# fails the script: copy it to fuzz/regressions/TARGET/WHAT-IT-BROKE, where
# tests/fuzz_regressions.rs runs it on every `cargo test`, then fix it.
# With MINIMIZE=1, each target's corpus is then minimized (libFuzzer -merge) into
# fuzz/seeds/TARGET, the form that is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(uci toml_plan ctnetlink control)

if ! rustup run nightly cargo --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

status=0
for t in "${TARGETS[@]}"; do
    log=fuzz/artifacts/$t.log
    mkdir -p "fuzz/artifacts/$t"
    echo "== $t: ${SECONDS_EACH}s"
    # -max_len: the largest input any of these parsers meets in real use is a config
    # file of a few KiB or one recv buffer of conntrack messages.
    mkdir -p "fuzz/corpus/$t"
    if cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECONDS_EACH" -max_len=16384 -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^Done' "$log" || true
    else
        echo "$t: FAILED, see $log and fuzz/artifacts/$t/" >&2
        tail -30 "$log" >&2
        status=1
        continue
    fi
    if [ "${MINIMIZE:-0}" = 1 ]; then
        # -merge=1 keeps the smallest set of inputs that reaches all the coverage.
        cargo +nightly fuzz cmin "$t" "fuzz/corpus/$t" -- -max_len=16384 >"fuzz/artifacts/$t.cmin.log" 2>&1
        cp -n "fuzz/corpus/$t"/* "fuzz/seeds/$t/"
        echo "$t: $(find "fuzz/corpus/$t" -type f | wc -l) inputs after minimizing; fuzz/seeds/$t has $(find "fuzz/seeds/$t" -type f | wc -l)"
    fi
done
exit $status
