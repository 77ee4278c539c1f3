#!/usr/bin/env bash
# Config bench (issue 26): wall time and peak RSS of `offloadd plan` (the release binary)
# on large and hostile configs: a 10k-exclusion TOML file, UCI files of 100k sections or
# options, and the expansion bombs the issue found. Each run is capped at 4 GiB of address
# space and 120 s, so an old build that expands a bomb fails instead of taking the host's
# memory. No root needed (plan reads links through rtnetlink, like `ip link`).
#   tests/bench/config.sh [BIN]      (default: builds and uses target/release/offloadd)
# Prints one line per case: name, wall seconds, peak RSS, exit code, first line of stderr.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-}
if [ -z "$BIN" ]; then
    cargo build --release --quiet --bin offloadd --manifest-path "$REPO/Cargo.toml"
    BIN=$REPO/target/release/offloadd
fi
T=$(mktemp -d /tmp/offloadd-config-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

python3 - "$T" <<'EOF'
import os, sys
t = sys.argv[1]
def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
head = '[offload]\ndevices = ["lo"]\nhardware = "off"\n'
def excl(body):
    return "[[offload.exclude]]\n" + body
def lst(key, items):
    return key + " = [" + ", ".join('"%s"' % i for i in items) + "]\n"
# 10k exclusions of one rule each.
write(t + "/toml-10k-excludes.toml", head + "".join(
    excl('l4proto = "tcp"\ndport = ["%d"]\n' % (1 + i % 65535)) for i in range(10000)))
# Bombs: 3k x 3k device names; four lists of 65,536 (product 2^64); 2,000 x 256 ports.
write(t + "/toml-3kx3k-devices.toml", head + excl(
    lst("iif", ["a%d" % i for i in range(3000)]) + lst("oif", ["b%d" % i for i in range(3000)])))
write(t + "/toml-4x65536-lists.toml", head + excl('l4proto = "tcp"\n' +
    lst("saddr", ["10.%d.%d.1" % (i >> 8, i & 255) for i in range(65536)]) +
    lst("daddr", ["10.%d.%d.2" % (i >> 8, i & 255) for i in range(65536)]) +
    lst("sport", ["1"] * 65536) + lst("dport", ["2"] * 65536)))
# The densest TOML file under the 1 MiB cap: entries of 256 ports (refused for its rules).
e = excl('l4proto = "tcp"\n' + lst("dport", [str(10000 + p) for p in range(256)]))
write(t + "/toml-1mib-ports.toml", head + e * ((1048576 - len(head)) // len(e)))
write(t + "/toml-2000x256-ports.toml", head + "".join(
    excl('l4proto = "tcp"\n' + lst("dport", [str(10000 + p) for p in range(256)]))
    for _ in range(2000)))
fw_min = "config defaults\n\toption flow_offloading '1'\n\nconfig zone\n\toption name 'lan'\n\tlist device 'lo'\n"
off_min = "config offload\n\toption mode 'manage'\n\tlist device 'lo'\n"
def uci(name, firewall, offloadd=None):
    write("%s/%s/firewall" % (t, name), firewall)
    if offloadd is not None:
        write("%s/%s/offloadd" % (t, name), offloadd)
# 100k named sections (exclusions of one rule each).
uci("uci-100k-named-sections", fw_min, off_min + "".join(
    "\nconfig exclude 'e%d'\n\toption proto 'tcp'\n\toption dport '%d'\n" % (i, 1 + i % 65535)
    for i in range(100000)))
# 100k options in one section (the firewall's defaults; offloadd ignores the unknown ones).
uci("uci-100k-options", "config defaults\n" + "".join(
    "\toption o%d '1'\n" % i for i in range(100000)) + fw_min, off_min)
# 100k zones, each with its own device; without an offloadd file every zone's devices count.
uci("uci-100k-zones", "config defaults\n\toption flow_offloading '1'\n" + "".join(
    "\nconfig zone\n\toption name 'z%d'\n\tlist device 'd%d'\n" % (i, i) for i in range(100000)))
# The most sections under the 8 MiB cap: the smallest named sections, in the firewall file.
secs, size, i = [], 0, 0
while size < (8 << 20) - 200:
    secs.append("config x 'n%d'\n" % i)
    size += len(secs[-1])
    i += 1
uci("uci-8mib-sections", fw_min + "".join(secs), off_min)
uci("uci-3kx3k-devices", fw_min, off_min + "\nconfig exclude\n" +
    "".join("\tlist src_device 'a%d'\n" % i for i in range(3000)) +
    "".join("\tlist dest_device 'b%d'\n" % i for i in range(3000)))
uci("uci-4x65536-lists", fw_min, off_min + "\nconfig exclude\n\toption proto 'tcp'\n" +
    "".join("\tlist saddr '10.%d.%d.1'\n" % (i >> 8, i & 255) for i in range(65536)) +
    "".join("\tlist daddr '10.%d.%d.2'\n" % (i >> 8, i & 255) for i in range(65536)) +
    "\tlist sport '1'\n" * 65536 + "\tlist dport '2'\n" * 65536)
uci("uci-2000x256-ports", fw_min, off_min + "".join(
    "\nconfig exclude\n\toption proto 'tcp'\n" +
    "".join("\tlist dport '%d'\n" % (10000 + p) for p in range(256)) for _ in range(2000)))
EOF

run() {
    local name=$1 rc=0
    shift
    (
        ulimit -v $((4 << 20))
        exec timeout 120 /usr/bin/time -f '%e %M' -o "$T/time" "$BIN" plan "$@"
    ) >"$T/out" 2>"$T/err" || rc=$?
    local wall kib
    read -r wall kib < <(tail -1 "$T/time")
    local first
    first=$(head -1 "$T/err" | sed "s|$T/||" | cut -c1-150)
    [ -n "$first" ] || first="$(wc -l <"$T/out") lines of plan"
    printf '%-26s %7s s %8s KiB  exit %-3s %s\n' "$name" "$wall" "$kib" "$rc" "$first"
}

echo "config bench: $BIN ($(nproc) CPUs)"
for f in "$T"/toml-*.toml; do
    run "$(basename "$f" .toml)" --config "$f"
done
for d in "$T"/uci-*/; do
    run "$(basename "$d")" --uci-dir "$d"
done
